"""The package layout (docs/design.md): folders by pipeline stage, every module importable, old paths still working.

- every module under mertool/ imports, and none of them through an old (deprecated) path;
- every old module path of 0.1.0 imports, with a DeprecationWarning, as the moved module itself; the packages that
  took an old module's path (mertool.cache, mertool.synth, mertool.predict) re-export all its names without one;
  the old mertool.data names resolve with one; CHANGELOG.md lists every moved path;
- nothing imports, at module level, from a later stage (the floors of docs/design.md), and the calls up a floor made
  inside a function are the ones docs/design.md lists;
- the top level holds only the shared helpers and the whole-pipeline tools.
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mertool._moved import MOVED

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mertool"

# old module path that is a package's path now -> the module its names live in
REEXPORTED = {"mertool.cache": "mertool.cache.store", "mertool.synth": "mertool.synth.faces",
              "mertool.predict": "mertool.predict.predictor"}
OLD_DATA = "mertool.training.dataset"   # the old mertool.data module

# docs/design.md's floors, bottom up: a module imports at module level only from its own floor or lower ones
FLOORS = [
    {"errors", "files", "text", "paths", "number_text", "facts_table", "_moved"},   # shared helpers
    {"data"},                                           # the sample's facts and vocabulary
    {"datasets", "face"},                               # sheets -> records; the face
    {"synth"},                                          # synthetic data with known truth
    {"cache"},                                          # the HDF5 cache
    {"models"},
    {"recipe"},
    {"training"},
    {"reports"},
    {"predict", "spotting"},
    {"bench", "demo"},
    {"cli"},
]
# the long-video adapters return spotting's Interval records (spotting/intervals.py imports only errors and files)
UPWARD_OK = {("datasets", "mertool.spotting.intervals")}
# calls up a floor made inside a function (docs/design.md lists them, with why): module -> the module it calls
LAZY_UP = {
    ("mertool.cache.preprocess", "mertool.training.estimate"),
    ("mertool.cache.preprocess", "mertool.training.parallel"),
    ("mertool.datasets.smic", "mertool.spotting.apex"), ("mertool.face.flow", "mertool.cache.store"),
    ("mertool.models.variants", "mertool.recipe"), ("mertool.training.train", "mertool.reports.evaluate"),
    ("mertool.training.train", "mertool.reports.calibration"), ("mertool.training.runs", "mertool.predict.reject"),
    ("mertool.training.estimate", "mertool.bench"), ("mertool.training.cluster", "mertool.bench"),
    ("mertool.spotting.speed", "mertool.bench"), ("mertool.reports.ablate", "mertool.bench"),
}
TOP_LEVEL = {"__init__", "_moved", "errors", "files", "text", "paths", "number_text", "facts_table", "recipe", "bench",
             "demo"}


def _modules() -> list[str]:
    names = []
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_without_an_old_path():
    """In a fresh interpreter: a DeprecationWarning raised by mertool's own code (an old path it still uses) fails."""
    code = ("import importlib, sys, warnings\n"
            "warnings.filterwarnings('error', category=DeprecationWarning, module=r'mertool(\\.|$)')\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n")
    r = subprocess.run([sys.executable, "-c", code, *_modules()], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_path_imports_the_moved_module(old):
    sys.modules.pop(old, None)   # imported earlier in this process: the alias entry only, the module stays
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old]   # the moved module keeps its own spec


def test_every_moved_module_exists_and_no_file_is_left_at_an_old_path():
    for old, new in MOVED.items():
        assert (ROOT / (new.replace(".", "/") + ".py")).is_file(), new
        assert not (ROOT / (old.replace(".", "/") + ".py")).exists(), f"{old}: a file at the old path again"


@pytest.mark.parametrize("package, module", sorted(REEXPORTED.items()))
def test_package_at_an_old_module_path_reexports_its_names(package, module):
    mod = importlib.import_module(module)
    tree = ast.parse(Path(mod.__file__).read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    public = sorted(n for n in defined if not n.startswith("_"))
    pkg = importlib.import_module(package)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the package's own path: no deprecation
        missing = [n for n in public if n not in pkg.__all__]
        assert not missing, f"{package}.__all__ lacks {missing} (run /work/r22tools/gen_init.py or add them)"
        for n in public:
            assert getattr(pkg, n) is getattr(mod, n), n
        private = next((n for n in sorted(defined) if n.startswith("_") and not n.startswith("__")), None)
        if private:   # forwarded too: an old script's private helper still resolves
            assert getattr(pkg, private) is getattr(mod, private)


def test_old_data_names_resolve_with_a_warning_and_submodules_without():
    import mertool.data as data
    dataset = importlib.import_module(OLD_DATA)
    data.__dict__.pop("load_dataset", None)   # resolved earlier in this process: warn again
    with pytest.warns(DeprecationWarning, match="mertool.data.load_dataset moved to mertool.training.dataset"):
        assert data.load_dataset is dataset.load_dataset
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for sub in ("aus", "classmap", "include", "openface", "records"):   # `from mertool.data import aus`
            assert getattr(__import__("mertool.data", fromlist=[sub]), sub).__name__ == f"mertool.data.{sub}"
    with pytest.raises(AttributeError):
        data.no_such_name


def test_changelog_lists_every_moved_path():
    text = (ROOT / "CHANGELOG.md").read_text()
    unreleased = text.split("## Unreleased", 1)[1].split("\n## ", 1)[0]
    for old, new in [*MOVED.items(), *REEXPORTED.items(), ("mertool.data", OLD_DATA)]:
        assert f"`{old}`" in unreleased and f"`{new}`" in unreleased, f"CHANGELOG.md (Unreleased) lacks {old} -> {new}"


def _floor(name: str) -> int:
    top = name.split(".")[1] if name.count(".") else "__init__"
    return next(i for i, f in enumerate(FLOORS) if top in f)


def _module_level_imports(path: Path, lazy: bool = False) -> list[str]:
    """mertool modules imported at module level (with lazy=True: also those inside functions)."""
    found = []

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if not lazy and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").startswith("mertool."):
                found.append(child.module)
            elif isinstance(child, ast.Import):
                found.extend(a.name for a in child.names if a.name.startswith("mertool."))
            walk(child)
    walk(ast.parse(path.read_text()))
    return found


def _source(name: str) -> Path:
    """The file of module `name` (a package's __init__.py)."""
    path = PKG.joinpath(*name.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_no_module_imports_from_a_later_stage():
    wrong = []
    for name in _modules():
        if name == "mertool":
            continue
        path, here = _source(name), name.split(".")[1]
        for target in _module_level_imports(path):
            if target.split(".")[1] != here and _floor(target) > _floor(name) and (here, target) not in UPWARD_OK:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "imports from a later stage (docs/design.md, the floors): " + "; ".join(wrong)


def test_every_call_up_a_floor_is_one_design_md_lists():
    found = set()
    for name in _modules():
        if name == "mertool":
            continue
        path, here = _source(name), name.split(".")[1]
        found |= {(name, target) for target in _module_level_imports(path, lazy=True)
                  if target.split(".")[1] != here and _floor(target) > _floor(name)
                  and (here, target) not in UPWARD_OK}
    assert found <= LAZY_UP, (f"new lazy imports from a later stage: {sorted(found - LAZY_UP)}; call the lower stage "
                              f"from the caller instead, or list it in docs/design.md and LAZY_UP with why")
    assert LAZY_UP <= found, f"LAZY_UP lists calls that are gone: {sorted(LAZY_UP - found)} (update docs/design.md)"


def test_top_level_holds_only_shared_helpers_and_whole_pipeline_tools():
    flat = {p.stem for p in PKG.glob("*.py")}
    assert flat <= TOP_LEVEL, (f"new module(s) at the top level: {sorted(flat - TOP_LEVEL)}; put each in the "
                               f"package of its stage (docs/design.md) or add it to TOP_LEVEL with a reason")
    every = {n.split(".")[1] for n in _modules() if n.count(".")}
    assert every <= set().union(*FLOORS), f"packages with no floor in docs/design.md: {every - set().union(*FLOORS)}"
