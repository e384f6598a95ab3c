"""Datasets: corpora and questions (embedded generators, loaders, the N-objective composer)."""

from .schema import Passage, QADataset, QAItem

__all__ = ["Passage", "QADataset", "QAItem"]
