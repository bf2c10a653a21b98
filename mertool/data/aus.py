"""Action Unit vocabulary and parsing of the AU strings dataset sheets use.

Sheets write AUs as ints (12), floats (12.0) or strings such as '4+L10', 'R6+R12', 'R12 + R15', 'R14A',
'1A+2B+L14C', '(R6 or R12)+R15', '10A/B', 'A/L12', 'ref(7B)+43'. Parsing rules:

- tokens are separated by '+', ',', ';', '&', 'or' and '/';
- a token's side prefix (L, R, B, T, A = asymmetric; combinations like 'A/L') and intensity suffix (A-E) are
  stripped, and so are 'AU' prefixes, parentheses, spaces and 'ref(...)' wrappers;
- alternatives ('R6 or R12', 'L12/L14') are all kept: the coder saw either, so every code mentioned counts;
- a '/' part with no digits ('B' in '10A/B', 'A' in 'A/L12') is a modifier of its neighbour, not a code;
- codes outside the 21-AU vocabulary ('38', '43E' -> '43') and free text ('soft focus') go to `outside`,
  so the report can count them instead of dropping them silently;
- '?', 'unknown', 'n/a', '', None and NaN mean unknown (a sample's `aus_known` is then false: never "no AU
  active").
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np

from mertool.errors import MertoolError

AU_VOCAB: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 18, 20, 23, 24, 25, 26, 28, 45)
_AU_INDEX = {au: i for i, au in enumerate(AU_VOCAB)}

_SPLIT = re.compile(r"\s*(?:\+|,|;|&|/|\bor\b)\s*", re.IGNORECASE)
# optional 'AU', optional side letters (L/R/B/T/A, possibly several), number, optional intensity A-E
_CODE = re.compile(r"^(?:AU)?\s*([LRBTA]*)\s*(?:AU)?\s*(\d+)(?:\.0+)?\s*([A-E]?)$", re.IGNORECASE)
_REF = re.compile(r"\bref\s*\(([^)]*)\)", re.IGNORECASE)


class AUParse(NamedTuple):
    """Parsed AU cell: codes inside the vocabulary, cleaned codes/text outside it, and the unknown flag."""

    codes: tuple[int, ...]
    outside: tuple[str, ...]
    unknown: bool


def _is_blank(raw) -> bool:
    if raw is None:
        return True
    if isinstance(raw, float) and math.isnan(raw):
        return True
    return isinstance(raw, str) and raw.strip().lower() in ("", "?", "/", "-", "nan", "unknown", "n/a")


def _raw_text(raw) -> str:
    """Cell value as text; 12.0 -> '12'."""
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def parse_aus(raw) -> AUParse:
    """Parse one AU cell of an annotation sheet (see the module docstring for the rules)."""
    if _is_blank(raw):
        return AUParse((), (), True)
    text = _REF.sub(r"\1", _raw_text(raw)).replace("(", " ").replace(")", " ")
    codes: set[int] = set()
    outside: list[str] = []
    for token in _SPLIT.split(text.strip()):
        token = token.strip()
        if not token or not any(ch.isdigit() for ch in token):
            # a bare modifier ('B' of '10A/B', 'A' of 'A/L12') is not a code; other text is kept as outside
            if len(token) > 1 and token != "?":
                outside.append(token.lower())
            continue
        m = _CODE.match(token)
        if m is None:
            outside.append(token)
            continue
        au = int(m.group(2))
        if au in _AU_INDEX:
            codes.add(au)
        elif str(au) not in outside:
            outside.append(str(au))
    if not codes and not outside:
        return AUParse((), (), True)
    return AUParse(tuple(sorted(codes)), tuple(outside), False)


def au_bits(codes: Iterable[int]) -> np.ndarray:
    """21-d uint8 multi-hot vector in AU_VOCAB order (codes outside the vocabulary are ignored)."""
    bits = np.zeros(len(AU_VOCAB), np.uint8)
    for au in codes:
        if au in _AU_INDEX:
            bits[_AU_INDEX[au]] = 1
    return bits


def bits_to_codes(bits) -> tuple[int, ...]:
    """Inverse of au_bits."""
    return tuple(au for au, b in zip(AU_VOCAB, np.asarray(bits).ravel()) if b)


def format_aus(codes: Iterable[int], sides: Mapping[int, str] | None = None) -> str:
    """Sheet-style text: (6, 12) with sides {6: 'R'} -> 'R6+12'; empty -> '?'."""
    sides = sides or {}
    parts = [f"{sides.get(au, '')}{au}" for au in sorted(set(codes))]
    return "+".join(parts) if parts else "?"


def normalize_emotion(s) -> str:
    """Case- and plural-insensitive emotion key: ' Others ' -> 'other', 'happiness' -> 'happiness'."""
    if _is_blank(s) and not (isinstance(s, str) and s.strip() == "?"):
        return ""
    s = " ".join(str(s).strip().lower().split())
    if s.endswith("s") and not s.endswith("ss") and len(s) > 3:
        s = s[:-1]
    return s


def parse_au_argument(text: str) -> tuple[int, ...]:
    """AUs given by a user on the command line ('6+12', '6,12', 'R6 12'); an AU outside the vocabulary is an error."""
    if text is None or not str(text).strip():
        return ()
    parsed = parse_aus(str(text).replace(" ", "+").strip("+"))
    if parsed.outside:
        raise MertoolError(f"--aus {text!r}: {', '.join(parsed.outside)} not in the AU vocabulary "
                           f"({', '.join(map(str, AU_VOCAB))})")
    if parsed.unknown:
        raise MertoolError(f"--aus {text!r}: expected AU numbers such as '6+12'")
    return parsed.codes


# What a classifier read as the test clips' AU vector, in the words every report prints.
AU_SOURCE_TEXT = {"oracle": "reads the test clips' hand-coded AUs (as the paper)",
                  "oracle-thresholded": "trained on hand-coded AUs, tested on thresholded estimates",
                  "estimated": "AUs estimated by the model",
                  "none": "images only"}


def au_source_text(model_aus: str, test_aus: str = "hand-coded") -> str:
    """model.aus (+ train.test_aus) -> the words reports use; an unknown source is said to be unknown."""
    key = "oracle-thresholded" if model_aus == "oracle" and test_aus == "thresholded" else str(model_aus)
    return AU_SOURCE_TEXT.get(key, f"AU source not recorded ({model_aus})")
