"""Action Unit vocabulary and parsing of the AU strings dataset sheets use."""
from __future__ import annotations

AU_VOCAB: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 18, 20, 23, 24, 25, 26, 28, 45)
