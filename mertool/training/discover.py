"""The short form a user types after `mertool preprocess casme2/` (which writes casme2.h5 here):

    mertool train-loso --subjects all

With no --cache, the one mertool cache in the current folder is used; with no recipe, the recipe named after that
cache's dataset (casme2, samm, ...). Both choices are announced on the first line of output; none or several caches,
or a dataset without a recipe of its name, is a one-line error listing what was found and the flags that choose.
"""
from __future__ import annotations

from pathlib import Path

from mertool.errors import MertoolError

CHOOSE = "name them: mertool train-loso RECIPE --cache FILE"


def mertool_caches(folder: str | Path = ".") -> list[tuple[Path, str]]:
    """(path, dataset) of every *.h5 file in `folder` that opens as a mertool cache, sorted by name."""
    from mertool.cache.store import open_cache

    found = []
    for path in sorted(Path(folder).glob("*.h5")):
        try:
            with open_cache(path) as f:
                found.append((path, str(f.attrs.get("dataset", ""))))
        except MertoolError:  # another program's HDF5 file, a truncated cache: not a candidate
            continue
    return found


def cache_dataset(cache: str | Path) -> str:
    """The `dataset` attribute of a cache (casme2, samm, casme2+samm, ...)."""
    from mertool.cache.store import open_cache

    with open_cache(cache) as f:
        return str(f.attrs.get("dataset", ""))


def resolve_short_form(recipe: str | None, cache: str | Path | None,
                       folder: str | Path = ".") -> tuple[str, Path, str | None]:
    """(recipe, cache, note): what was given, with the blanks filled from `folder`; note says what was chosen."""
    from mertool.recipe import find_recipe

    chosen = []
    if cache is None:
        caches = mertool_caches(folder)
        where = Path(folder).resolve()
        if len(caches) != 1:
            listed = ", ".join(f"{p.name} ({d})" for p, d in caches) or "none"
            raise MertoolError(f"no --cache given and {len(caches)} mertool caches in {where} (found: {listed}); "
                               f"{CHOOSE}")
        cache, dataset = caches[0]
        chosen.append(f"cache {cache} (the only mertool cache in {where})")
    else:
        cache, dataset = Path(cache), None
    if recipe is None:
        dataset = dataset if dataset is not None else cache_dataset(cache)
        from mertool.datasets import composite_name

        dataset = composite_name(dataset) or dataset  # a merged casme2+samm+smic cache -> recipe megc2019
        try:
            find_recipe(dataset)
        except MertoolError:
            raise MertoolError(f"no recipe given and cache {cache} is dataset {dataset!r}, which has no recipe of "
                               f"that name; {CHOOSE}") from None
        recipe = dataset
        chosen.append(f"recipe {recipe} (the cache's dataset)")
    note = f"using {' and '.join(chosen)}; {CHOOSE} to choose others" if chosen else None
    return recipe, Path(cache), note
