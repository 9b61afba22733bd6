"""The one error type users see: a single line that says what is wrong, where, and how to fix it."""

from __future__ import annotations


class TinyLMError(Exception):
    """A user-facing failure. The CLI prints ``error: <message>`` and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1):
        # Newlines would break the one-line contract; fold them.
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code


class Interrupted(TinyLMError):
    """SIGINT / SIGTERM: the step finished, a checkpoint was saved; exit 128 + signal number (130 / 143)."""
