"""Spotting: where expressions are in time. In long videos: intervals (`intervals`), motion features, the
training-free and learned spotters, MEGC scoring and the STR score (`megc`); in one short clip: the apex and the onset
before it, and the clip reader (`apex`: `Spotter`, `FrameSource`) that predict and the spotting cache share.

Importing this package is cheap (no torch): the dataset adapters build `Interval`s from their sheets.
"""
