"""Errors that mean "the user asked for something that cannot work": the CLI prints them as one line.

Every ``mem1`` command catches :class:`UserError` at the top (``mem1_agent.cli.main``), prints
``mem1 <command>: <message>`` and exits with status 2, without a traceback. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in a command's arguments, config or inputs, explained in its message."""


class BadArgument(UserError, ValueError):
    """A command-line value outside what the option accepts."""


class ModelLoadError(UserError, ValueError):
    """A model name or path that cannot be loaded (missing folder, unknown id while offline, bad files)."""
