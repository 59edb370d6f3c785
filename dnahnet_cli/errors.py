"""Errors the CLI turns into one-line messages instead of tracebacks."""

from __future__ import annotations


class DnahnetError(Exception):
    """A problem the user can fix (bad input, bad option): exit code 2, no traceback.

    The message should name the file, the record or line, and what is wrong.
    """

    exit_code = 2


class DnahnetRuntimeError(DnahnetError):
    """A failure that is not the user's input (e.g. out of memory): exit code 1."""

    exit_code = 1
