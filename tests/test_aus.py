"""AU string parsing, AU bit vectors, emotion normalisation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mertool.data.aus import (AU_VOCAB, au_bits, bits_to_codes, format_aus, normalize_emotion, parse_au_argument,
                         parse_aus)
from mertool.errors import MertoolError


@pytest.mark.parametrize("raw, codes, outside", [
    (12, (12,), ()),
    (12.0, (12,), ()),
    ("12.0", (12,), ()),                    # a CSV written from a float column
    ("4+L10", (4, 10), ()),
    ("R6+R12", (6, 12), ()),
    ("AU1+R2", (1, 2), ()),
    ("au1 + au2", (1, 2), ()),
    ("R12 + R15", (12, 15), ()),
    ("L14", (14,), ()),
    ("R14A", (14,), ()),
    ("1,2", (1, 2), ()),
    ("1A+2B+L14C", (1, 2, 14), ()),
    ("4+7+6", (4, 6, 7), ()),               # sorted
    ("4+4", (4,), ()),                      # unique
    ("B23", (23,), ()),                     # bottom lip
    ("T28+14", (14, 28), ()),               # top lip
    ("A12+A7", (7, 12), ()),                # asymmetric
    ("A/L12", (12,), ()),                   # 'asymmetric or left': a modifier, not a code
    ("10A/B", (10,), ()),                   # intensity A or B
    ("L12 or L14", (12, 14), ()),           # alternatives: both were possible, both kept
    ("R14A or 17A or 24A", (14, 17, 24), ()),
    ("(R6 or R12) + R15", (6, 12, 15), ()),
    ("12A+ref(24)", (12, 24), ()),
    ("12+15 ", (12, 15), ()),
    ("4+38", (4,), ("38",)),
    ("L2+26+38", (2, 26), ("38",)),
    ("4B+7B+43E", (4, 7), ("43",)),        # outside codes lose side/intensity too
    ("L12 + 61", (12,), ("61",)),
    ("R14+17+soft focus", (14, 17), ("soft focus",)),
    ("22", (), ("22",)),
])
def test_parse_aus(raw, codes, outside):
    p = parse_aus(raw)
    assert p.codes == codes
    assert p.outside == outside
    assert p.unknown is False
    assert all(c in AU_VOCAB for c in p.codes)


@pytest.mark.parametrize("raw", ["?", "", "  ", None, math.nan, "/"])
def test_parse_aus_unknown(raw):
    assert parse_aus(raw) == ((), (), True)


def test_au_bits_order_and_roundtrip():
    bits = au_bits((12, 1, 45, 38))  # 38 is outside the vocabulary: ignored
    assert bits.dtype == np.uint8 and bits.shape == (21,)
    assert bits.sum() == 3
    assert bits[0] == 1 and bits[AU_VOCAB.index(12)] == 1 and bits[-1] == 1
    assert bits_to_codes(bits) == (1, 12, 45)
    assert au_bits(()).sum() == 0


def test_format_aus():
    assert format_aus((12, 6), {6: "R"}) == "R6+12"
    assert format_aus([4, 10, 4]) == "4+10"
    assert format_aus(()) == "?"
    assert parse_aus(format_aus((12, 6), {6: "R", 12: "L"})).codes == (6, 12)


@pytest.mark.parametrize("raw, key", [
    ("Others", "other"), ("other", "other"), (" others ", "other"), ("OTHER", "other"),
    ("happiness", "happiness"), ("Happiness", "happiness"), ("sadness", "sadness"), ("Surprise", "surprise"),
    ("disgust", "disgust"), ("repression", "repression"), (None, ""),
])
def test_normalize_emotion(raw, key):
    assert normalize_emotion(raw) == key


def test_parse_au_argument():
    assert parse_au_argument("6+12") == (6, 12)
    assert parse_au_argument("R6 12") == (6, 12)
    assert parse_au_argument("1,2,4") == (1, 2, 4)
    assert parse_au_argument("") == ()
    with pytest.raises(MertoolError, match=r"38.*not in the AU vocabulary"):
        parse_au_argument("6+38")
    with pytest.raises(MertoolError, match="expected AU numbers"):
        parse_au_argument("?")
