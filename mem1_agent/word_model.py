"""A word-level tokenizer over a QA world and a small Llama trained from scratch on it.

The learning experiment (``benchmarks/learning.py``) needs a policy that reads the task and
trains in minutes on a CPU. SmolLM2-135M is too slow there, so the experiment builds:

* :func:`word_tokenizer`: one token per word of the world, and one per entity name (``The
  Kovlin Chronicle``, ``Mabrola Zorsap``: copying a name is copying one token) and per fixed
  instruction block of the prompt; the turn protocol's tags as whole tokens, ``[UNK]`` for
  anything else. Decoding joins tokens with
  spaces, which the turn parser and the answer scorer are insensitive to.
* :func:`small_llama`: a randomly initialised Llama (SmolLM2's architecture: RMSNorm, RoPE,
  grouped-query attention, tied embeddings) of a few hundred thousand to a few million
  parameters.
* :func:`build_word_model`: both, saved as a Hugging Face folder that
  :func:`~mem1_agent.models.load_policy` (and so ``mem1 train model.name=FOLDER``) loads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Sequence

#: Special tokens: padding, unknown word, begin and end of sequence.
SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
#: The pre-tokenizer's split: runs of word characters, or single other characters.
_WORD = re.compile(r"\w+|[^\w\s]")


def world_texts(dataset: Any, tags: Any = None, max_objectives: int = 32) -> list[str]:
    """Every text the QA environment can show or an oracle can write, for building the vocabulary.

    ``dataset`` is a :class:`~mem1_gym.data.QADataset` (passages, questions and answers of all
    splits); the prompt template, the info messages and the oracle's state phrases are added.
    """
    from mem1_gym.protocol import get_tag_set
    from mem1_gym.qa_env import PROMPT_TEMPLATE

    tags = get_tag_set(tags or "paper")
    texts = [f"{p.title} {p.contents}" for p in dataset.corpus]
    for split in dataset.splits.values():
        for item in split:
            texts.append(item.question)
            texts.extend(item.answers)
            texts.extend(item.gold_queries or ())
    texts.append(PROMPT_TEMPLATE.format(
        n=1, state=tags.state, info=tags.info, max_turns=1, questions="Question 1",
        search=tags.tag("search"), answer=tags.tag("answer"),
    ))
    texts += [
        "Found: nothing yet. Next: search All answers found. unknown",
        "Answers received: for question(s). No results. Doc",
        "Invalid turn: missing internal state action the query is empty The turn limit is reached; the episode ends.",
        " ".join(f"Q{i} Question {i} {i}" for i in range(1, max_objectives + 1)),
    ]
    return texts


def entity_phrases(dataset: Any) -> list[str]:
    """Every multi-word entity name (passage titles) and multi-word answer of ``dataset``.

    As single tokens they make every name the agent copies (from a question into a query,
    from a passage into its state and answer) a one-token copy, which a small model learns in
    far fewer steps than copying a run of tokens.
    """
    names: dict[str, None] = {}
    for p in dataset.corpus:
        if " " in p.title.strip():
            names.setdefault(p.title.strip(), None)
    for split in dataset.splits.values():
        for item in split:
            for answer in item.answers:
                if " " in answer.strip():
                    names.setdefault(answer.strip(), None)
    # Longest first, so a name is never cut by a shorter one it starts with.
    return sorted(names, key=lambda n: (-len(n), n))


def instruction_phrases(tags: Any = None) -> list[str]:
    """The QA prompt's instructions, which every prompt repeats word for word (one token each in
    :func:`word_tokenizer`, so a context spends its length on the questions, not on boilerplate)."""
    from mem1_gym.protocol import get_tag_set
    from mem1_gym.qa_env import PROMPT_TEMPLATE

    tags = get_tag_set(tags or "paper")
    text = PROMPT_TEMPLATE.format(
        n=1, state=tags.state, info=tags.info, max_turns=1, questions="",
        search=tags.tag("search"), answer=tags.tag("answer"),
    )
    start = text.index("Every turn")
    end = text.index("This ends the task.") + len("This ends the task.")
    return [text[start:end]]


def word_tokenizer(texts: Iterable[str], tags: Any = None, phrases: Sequence[str] = (), vocab_size: int | None = None) -> Any:
    """A ``PreTrainedTokenizerFast`` over the words of ``texts``: one token per word, or subwords.

    With ``vocab_size=None`` every word of ``texts`` is one token. With a ``vocab_size``, a
    WordPiece vocabulary of that size is trained on ``texts`` (Hugging Face ``tokenizers``):
    frequent words stay whole and rare ones, such as most invented names, split into pieces that
    recur across names. A model then copies a name it has never seen from pieces it has seen
    thousands of times, which is what lets it read held-out questions (whole-name tokens of rare
    names keep near-random embeddings and are copied unreliably).

    The opening and closing tags of the tag set are single (non-special) tokens, so the
    policy writes ``</query>`` as one token and its decoded text holds the tag verbatim.
    Each of ``phrases`` (e.g. :func:`instruction_phrases`) is one token too.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from mem1_gym.protocol import get_tag_set

    tags = get_tag_set(tags or "paper")
    names = [tags.state, tags.info, tags.tag("search"), tags.tag("answer")]
    tag_tokens = [t for n in names for t in (f"<{n}>", f"</{n}>")]
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_WORD.pattern), behavior="isolated")]
    )
    if vocab_size is None:
        words: dict[str, None] = {}
        for text in texts:
            for w in _WORD.findall(text):
                words.setdefault(w, None)
        vocab = {tok: i for i, tok in enumerate([*SPECIALS, *sorted(words)])}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizer
    else:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
        tok.pre_tokenizer = pre_tokenizer
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                            continuing_subword_prefix="##", show_progress=False)
        tok.train_from_iterator(list(texts), trainer)
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]",
    )
    fast.add_tokens([*tag_tokens, *phrases])
    return fast


def small_llama(
    vocab_size: int,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    max_positions: int = 4096,
    seed: int = 0,
    attn_implementation: str = "sdpa",
) -> Any:
    """A randomly initialised Llama (Hugging Face's default initialisation), tied embeddings, fp32."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from .models import check_attn_implementation

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        pad_token_id=SPECIALS.index("[PAD]"),
        bos_token_id=SPECIALS.index("[BOS]"),
        eos_token_id=SPECIALS.index("[EOS]"),
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation=check_attn_implementation(attn_implementation)
    )


def build_word_model(
    path: str | Path,
    dataset: Any = "fictional",
    dataset_seed: int = 0,
    dataset_size: int | None = None,
    seed: int = 0,
    tags: Any = None,
    vocab_size: int | None = None,
    **model_kwargs: Any,
) -> Path:
    """Save a word tokenizer over ``dataset`` and a fresh :func:`small_llama` for it to ``path``.

    ``dataset`` is anything :func:`mem1_gym.data.load_dataset` accepts; ``vocab_size`` selects
    subwords (see :func:`word_tokenizer`; ``None``: a token per word and per multi-word entity
    name); ``model_kwargs`` go to :func:`small_llama`. Returns ``path``, loadable with
    ``load_policy(str(path))``.
    """
    from mem1_gym.data import load_dataset

    path = Path(path)
    world = load_dataset(dataset, seed=dataset_seed, size=dataset_size)
    phrases = instruction_phrases(tags) if vocab_size else [*instruction_phrases(tags), *entity_phrases(world)]
    tokenizer = word_tokenizer(world_texts(world, tags), tags, phrases=phrases, vocab_size=vocab_size)
    model = small_llama(len(tokenizer), seed=seed, **model_kwargs)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
