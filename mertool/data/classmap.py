"""The recipe's class map: which raw emotions, optionally of one dataset only, make up each class.

    classes:
      negative: [casme2:disgust, casme2:repression, samm:anger, smic:negative]
      positive: [happiness, positive]

A name is matched case- and plural-insensitively (`aus.normalize_emotion`: 'Others' = 'other'). `dataset:emotion`
matches only samples of that dataset (every cache sample knows its dataset, merged caches included), which composite
benchmarks need: MEGC 2019 counts CASME II's fear and sadness out but SAMM's in. A bare name matches any dataset.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from mertool.data.aus import normalize_emotion


def split_name(raw) -> tuple[str | None, str]:
    """'samm:Anger' -> ('samm', 'anger'); 'Others' -> (None, 'other')."""
    text = str(raw)
    dataset, sep, emotion = text.partition(":")
    if not sep:
        return None, normalize_emotion(text)
    return dataset.strip().lower(), normalize_emotion(emotion)


class ClassMap:
    """Class number of a (dataset, raw emotion) pair under a recipe's `data.classes`, -1 when outside the map."""

    def __init__(self, classes: Mapping[str, Sequence[str]]):
        self.classes = list(classes)
        self._index: dict[tuple[str | None, str], int] = {}
        for i, raws in enumerate(classes.values()):
            for raw in raws:
                self._index[split_name(raw)] = i

    def index(self, dataset: str | None, emotion) -> int:
        """A dataset-qualified name wins over a bare one."""
        key = normalize_emotion(emotion)
        found = self._index.get((str(dataset).lower() if dataset else None, key))
        return found if found is not None else self._index.get((None, key), -1)

    def datasets(self) -> set[str]:
        """Datasets named by qualified entries."""
        return {d for d, _ in self._index if d is not None}

    def counts(self, pairs) -> dict[str, int]:
        """Samples per class of (dataset, emotion) pairs."""
        out = dict.fromkeys(self.classes, 0)
        for dataset, emotion in pairs:
            i = self.index(dataset, emotion)
            if i >= 0:
                out[self.classes[i]] += 1
        return out
