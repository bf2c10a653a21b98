"""Numbers as users type them in sheets and CSVs: one parse, so that every reader agrees on what a number is.

Each reader keeps its own message for a value it refuses (they name the file, row and column, and what that
column expects); this module only says whether the text is a number.
"""
from __future__ import annotations


def parse_number(text: str) -> float | None:
    """float(text), or None when the text is not a number. Python's float syntax: '566.4', ' 7 ', '1e3' are numbers,
    and so are 'nan' and 'inf' (a reader that needs a finite value checks math.isfinite)."""
    try:
        return float(text)
    except ValueError:
        return None
