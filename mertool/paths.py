"""Where mertool's bundled recipes live: the one function every module asks (recipe names, model variants, tables).

In a checkout (and an editable install) that is the top-level recipes/ folder; a wheel or an sdist install carries a
copy as mertool/recipes/ (setup.py's build step copies it there), so `casme2`, `demo` and `ablations/table2` resolve
after `pip install .` too."""
from __future__ import annotations

from pathlib import Path

from mertool.errors import MertoolError

_PACKAGE = Path(__file__).resolve().parent


def recipes_dir() -> Path:
    """The recipes folder: <checkout>/recipes next to the package, else mertool/recipes in an installed wheel."""
    for candidate in (_PACKAGE.parent / "recipes", _PACKAGE / "recipes"):
        if candidate.is_dir():
            return candidate
    raise MertoolError(f"recipes folder not found (looked in {_PACKAGE.parent / 'recipes'} and "
                       f"{_PACKAGE / 'recipes'}); run mertool from a repository checkout or reinstall it")
