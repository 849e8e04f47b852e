"""Errors raised for bad user input (the bottom layer: any module may raise one).

A `UserError` message is one line that says what is wrong and what to do about it; the CLI prints it and
exits with status 2. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad user input (a model name, a folder, a flag value), reported in one line."""

    def __init__(self, message: str) -> None:
        # One line by contract: the CLI prints str(error) as is.
        super().__init__(" ".join(str(message).split()))
