"""Spotting micro- and macro-expressions in long videos."""
