"""Spotting in long videos: intervals (`intervals`), MEGC scoring and the STR score (`megc`).

Importing this package is cheap (no torch): the dataset adapters build `Interval`s from their sheets.
"""
