"""One error type for bad user input, so the CLI can print one line and exit 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from a user file or flag: names the file, the key and the reason."""

    def __init__(self, file: str | None, key: str | None, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        super().__init__(self.line())

    def line(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        return _printable(": ".join(parts + [self.reason]))


def _printable(text: str) -> str:
    """One line whatever the user wrote: control characters (a newline in a key, an escape in a
    path) are shown escaped, as repr() would, instead of breaking the line or the terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
