"""Small wording helpers for messages."""
from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 fold', '3 folds' ('1 try', '2 tries' with many='tries')."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
