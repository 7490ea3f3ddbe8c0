"""One-line error messages: every user-facing refusal in the project is a single line."""

from __future__ import annotations


def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first non-blank line of an error (or text), cut to `limit` characters; the exception's type
    name when it says nothing. Library errors (MLflow, Optuna, zipfile) can run to pages: a user
    needs the first line, beside the fix we name."""
    text = exc if isinstance(exc, str) else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    line = lines[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def collapsed(text: object, limit: int | None = None) -> str:
    """All of `text` on one line (white space folded), optionally cut to `limit` characters."""
    line = " ".join(str(text).split())
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."
