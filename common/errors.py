"""One base class for every error a user can fix.

The CLI turns a ``UserError`` into one line (and exit code 2) that says what is wrong and what to do;
anything else is a bug or an environment failure (out of memory, a programming error) and keeps its
traceback. Subclasses also derive from the built-in error they used to be, so ``except ValueError``
written against earlier versions still catches them.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad input, a wrong path, a setting out of range, an unreachable server."""


class ConfigError(UserError, ValueError):
    """A setting that cannot be right (a CLI flag, a recipe value, a package option)."""


class OutputExistsError(UserError, FileExistsError):
    """The output would overwrite something that is already there."""


class MissingInputError(UserError, FileNotFoundError):
    """An input the command needs is not there."""
