"""The sample's facts and their vocabulary: what an annotation sheet says, before any face is cut.

    records.py   SampleRecord, what every dataset adapter (mertool.datasets) makes of a sheet's row
    aus.py       the 21-AU vocabulary, the parser of the sheets' AU strings, emotion names and AU-source wording
    classmap.py  the recipe's class map: which raw emotions (`dataset:emotion`) make up each class
    include.py   `data.include` sample lists (mertool's own format and the MEGC 2019 composite list)
    openface.py  AUs from OpenFace 2.x CSVs, in the 21-AU vocabulary (predict --aus-from)

Until 0.1.0 `mertool.data` was the module that turns a cache into tensors; that is mertool.training.dataset now. Its
names (`from mertool.data import MERData`, `load_dataset`, ...) still resolve here for this release, with a
DeprecationWarning. Importing this package stays cheap (no torch): every later stage imports it.
"""
from mertool._moved import warn_moved

# the old module's names, now in mertool.training.dataset
_OLD_DATA = frozenset({"MERData", "augment_pair", "augment_theta", "count_lines", "load_dataset", "load_for_recipe",
                       "make_batches", "recipe_selection", "resize_flow", "resize_frames", "to_float", "warp_flow",
                       "warp_pair"})


def __getattr__(name: str):
    if name not in _OLD_DATA:   # never a submodule's name: `from mertool.data import aus` must import it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warn_moved(f"mertool.data.{name}", f"mertool.training.dataset.{name}")
    import importlib
    value = globals()[name] = getattr(importlib.import_module("mertool.training.dataset"), name)  # warned once
    return value
