"""Where mertool's bundled files live: the repository's recipes/ folder, or a copy packaged inside mertool/."""
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
