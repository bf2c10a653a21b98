"""Old import paths of the modules that moved into subpackages (issue #22): they keep working for one release.

    import mertool.train                  # DeprecationWarning: mertool.train moved to mertool.training.train
    mertool.train is mertool.training.train    # True: the old name is the module itself, not a copy

An old path is an alias of the moved module (one entry in `sys.modules` under each name), made by a finder that
`mertool/__init__.py` installs, so the package's folders show only the new layout while `from mertool.evaluate
import evaluate_run`, `monkeypatch.setattr("mertool.train.x", ...)` and objects pickled under an old module path
(submitit's job files) still resolve to the same objects. Where an old module path is now a package's path
(`mertool.cache`, `mertool.synth`, `mertool.predict`), that package re-exports the old module's names; the old
`mertool.data` (cache -> tensors) is `mertool.training.dataset`, and `mertool/data/__init__.py` forwards its names.
CHANGELOG.md lists every moved path; tests/test_layout.py checks that each old path still imports.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings

# old module path -> new module path (old paths that are a package's path now are not here: see the docstring)
MOVED = {
    "mertool.records": "mertool.data.records",
    "mertool.aus": "mertool.data.aus",
    "mertool.classmap": "mertool.data.classmap",
    "mertool.include": "mertool.data.include",
    "mertool.openface": "mertool.data.openface",
    "mertool.align": "mertool.face.align",
    "mertool.flow": "mertool.face.flow",
    "mertool.motion_truth": "mertool.synth.motion_truth",
    "mertool.provenance": "mertool.cache.provenance",
    "mertool.preprocess": "mertool.cache.preprocess",
    "mertool.runs": "mertool.training.runs",
    "mertool.train": "mertool.training.train",
    "mertool.parallel": "mertool.training.parallel",
    "mertool.cluster": "mertool.training.cluster",
    "mertool.estimate": "mertool.training.estimate",
    "mertool.discover": "mertool.training.discover",
    "mertool.metrics": "mertool.reports.metrics",
    "mertool.evaluate": "mertool.reports.evaluate",
    "mertool.ablate": "mertool.reports.ablate",
    "mertool.published": "mertool.reports.published",
    "mertool.calibration": "mertool.reports.calibration",
    "mertool.reject": "mertool.predict.reject",
    "mertool.explain": "mertool.predict.explain",
    "mertool.spot": "mertool.spotting.apex",
}


def warn_moved(old: str, new: str) -> None:
    # stacklevel 3: past this function and its caller, to the user's import line (the warnings module skips
    # importlib's own frames), so Python's default filter shows it for a script's own imports
    warnings.warn(f"{old} moved to {new} (see CHANGELOG.md); the old path works for this release only",
                  DeprecationWarning, stacklevel=3)


class _OldPaths:
    """A meta path finder and loader: an old module path imports the moved module itself."""

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        warn_moved(spec.name, MOVED[spec.name])
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__   # the import system sets module.__spec__ to this alias spec next
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state   # the moved module keeps its own spec


def forward_names(package: str, module: str):
    """A package's module-level `__getattr__` that answers a name its re-export list lacks (a private helper, or one
    added since) from `module`, the module the package's path used to be: the same object, not a copy."""
    def __getattr__(name: str):
        if not name.startswith("__"):
            try:
                return getattr(importlib.import_module(module), name)
            except AttributeError:
                pass
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__


def install() -> None:
    """Put the finder first on sys.meta_path (once). It answers only the old paths, where no file is any more; first,
    so that another finder (an editable install of an older checkout) cannot answer them with an old file."""
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.insert(0, _OldPaths())
