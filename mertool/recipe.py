"""Recipes: YAML files that hold every choice of a run (class map, model variant, schedule, augmentation).

A recipe has four sections (defaults for every key are in DEFAULTS below):

  data:    classes: {class: [raw emotion names]}   (matched with aus.normalize_emotion)
           image_size: 224                           (frames are resized on load when the cache differs)
  model:   any ModelConfig key (mertool.models); num_classes and image_size come from `data`
  train:   epochs, decay_epochs, gamma, lr, weight_decay, batch_size, accum_steps, seed, ...
  augment: hflip, crop_padding, rotation

`extends: other.yaml` (path relative to the file) starts from another recipe; sections merge key by key, except
`data.classes`, which a child replaces whole. Command-line overrides `--set train.epochs=5` are parsed as YAML
values. Unknown keys and bad values are errors naming the key and the recipe file. The resolved recipe (defaults
filled in, model section complete) is what runs use and save, so a run folder's recipe.yaml reproduces the run.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import yaml

from mertool import files
from mertool.errors import MertoolError
from mertool.files import write_text as atomic_write_text  # noqa: F401  (the old name of files.write_text)
from mertool.paths import recipes_dir

# Every recipe key and its default. `None` under data.classes means "required".
DEFAULTS: dict = {
    "name": "",
    "description": "",
    "data": {
        "classes": None,
        "image_size": 224,
        "include": "",          # optional sample list, one dataset/subject/sample a line (e.g. an official list)
        "unknown_aus": "refuse",  # samples whose AU codes are unknown (SMIC) under model.aus oracle: refuse|drop|empty
        "official_counts": {},  # {dataset: {class: n}} published counts, printed beside the counts read
    },
    "model": {},  # filled from mertool.models.ModelConfig defaults
    "train": {
        "epochs": 75,
        "decay_epochs": 50,     # exponential decay during the first decay_epochs epochs, then constant
        "gamma": 0.987,         # per-epoch decay factor (the paper gives none; public FaceSleuth code uses 0.987)
        "lr": 8.0e-4,
        "weight_decay": 0.6,
        "batch_size": 16,
        "accum_steps": 2,       # optimizer step every accum_steps batches (effective batch 32)
        "seed": 0,
        "label_smoothing": 0.0,
        "eval_batch_size": 64,
        "au_loss_weight": 1.0,  # AU head's BCE beside the class loss (demo: 0.3 / 1 / 3 within noise; 1 best AU F1)
        "test_aus": "hand-coded",  # model.aus oracle: the held-out clips' AU input, hand-coded (the sheet's codes,
        #                            as the paper) or thresholded (the AU head's estimate >= 0.5, what `predict
        #                            --aus auto` feeds such a model)
    },
    "augment": {
        "hflip": 0.5,           # probability
        "crop_padding": 15,     # pixels at the recipe's image_size: pad-and-random-crop = shift in [-P, P]
        "rotation": 3.0,        # degrees: angle uniform in [-R, R] (the paper's "0-3 deg" is the magnitude)
    },
}

# Keys whose value is a mapping the user owns as a whole: merged by replacement, free keys inside.
_WHOLE = {("data", "classes"), ("data", "official_counts")}
UNKNOWN_AUS = ("refuse", "drop", "empty")
TEST_AUS = ("hand-coded", "thresholded")

# (section, key) -> (kind, minimum, maximum); kinds: int, float, bool, str
_SPECS = {
    ("data", "image_size"): ("int", 16, 4096),
    ("train", "epochs"): ("int", 1, None),
    ("train", "decay_epochs"): ("int", 0, None),
    ("train", "gamma"): ("float", 1e-9, 1.0),
    ("train", "lr"): ("float", 1e-12, None),  # no upper bound: a diverging lr stops its fold with a clear error
    ("train", "weight_decay"): ("float", 0.0, None),
    ("train", "batch_size"): ("int", 2, None),
    ("train", "accum_steps"): ("int", 1, None),
    ("train", "seed"): ("int", 0, 2**63 - 1),
    ("train", "label_smoothing"): ("float", 0.0, 0.99),
    ("train", "eval_batch_size"): ("int", 1, None),
    ("train", "au_loss_weight"): ("float", 0.0, None),
    ("augment", "hflip"): ("float", 0.0, 1.0),
    ("augment", "crop_padding"): ("int", 0, None),
    ("augment", "rotation"): ("float", 0.0, 180.0),
    ("data", "include"): ("str", None, None),
    ("name",): ("str", None, None),
    ("description",): ("str", None, None),
}


def find_recipe(path: str | Path) -> Path:
    """A recipe path as given, or a bare name ('demo', 'ablations/table2') looked up in mertool's recipes folder."""
    p = Path(path)
    if p.is_file():
        return p
    root = recipes_dir()
    for candidate in (root / p, root / p.with_suffix(".yaml")):
        if not p.is_absolute() and candidate.is_file():
            return candidate
    raise MertoolError(f"{path}: no such recipe file")


def read_yaml(path: str | Path) -> dict:
    """One YAML mapping from a file, with errors naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MertoolError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:  # as openface.read_openface_csv: a binary file is a user error, not a traceback
        raise MertoolError(f"{path}: not a text file (expected a YAML recipe)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MertoolError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MertoolError(f"{path}: expected a YAML mapping (key: value), got {type(data).__name__}")
    return data


def merge(base: dict, child: dict, _path: tuple = ()) -> dict:
    """Deep merge of child into a copy of base; `data.classes` is replaced, not merged."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        path = _path + (key,)
        if isinstance(value, dict) and isinstance(out.get(key), dict) and path not in _WHOLE:
            out[key] = merge(out[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_raw(path: Path, seen: tuple = ()) -> dict:
    """A recipe file with its `extends:` chain merged (no defaults, no validation)."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in seen + (path,))
        raise MertoolError(f"{path}: `extends` cycle ({chain})")
    raw = read_yaml(path)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise MertoolError(f"{path}: extends = {parent!r}: expected a recipe file path")
    parent_path = (path.parent / parent)
    if not parent_path.is_file():
        raise MertoolError(f"{path}: extends {parent!r}: no such file {parent_path}")
    return merge(_load_raw(parent_path, seen + (path,)), raw)


def parse_override(text: str) -> tuple[tuple[str, ...], object]:
    """'train.epochs=5' -> (('train', 'epochs'), 5); the value is parsed as YAML ('[a, b]', 'true', '1e-3')."""
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise MertoolError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=5")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return tuple(key.split(".")), parsed


def apply_overrides(raw: dict, overrides, source: str = "--set") -> dict:
    """Set dotted keys in a copy of a raw recipe; each override is 'a.b=c' text or a (path, value) pair."""
    out = copy.deepcopy(raw)
    for item in overrides or ():
        path, value = parse_override(item) if isinstance(item, str) else (tuple(item[0]), item[1])
        node = out
        for part in path[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise MertoolError(f"{source} {'.'.join(path)}: {part!r} is not a section")
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _model_fields() -> dict:
    """ModelConfig field name -> default (the model builder owns the model's keys)."""
    from mertool.models import ModelConfig

    out = {}
    for f in dataclasses.fields(ModelConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
        else:
            out[f.name] = None
    return out


def _plain(value):
    """Tuples -> lists (recursively), so a resolved recipe dumps as plain YAML and compares equal after reload."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _check_value(value, kind: str, lo, hi, where: str):
    """Coerce and range-check one scalar; YAML reads '8e-4' as text, so numeric text is accepted for floats."""
    if kind == "float" and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {"int": isinstance(value, int) and numeric, "float": numeric,
          "bool": isinstance(value, bool), "str": isinstance(value, str)}[kind]
    if ok and kind == "float":
        value = float(value)
    if ok and kind in ("int", "float"):
        ok = (lo is None or value >= lo) and (hi is None or value <= hi)
    if not ok:
        expected = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text"}[kind]
        if kind in ("int", "float"):
            expected += f" in [{lo}, {hi}]" if hi is not None else f" >= {lo}"
        raise MertoolError(f"{where} = {value!r}: expected {expected}")
    return value


def _check_classes(classes, source: str) -> dict[str, list[str]]:
    """data.classes as {class: [raw names]}; a list of names means each class matches its own name."""
    where = f"{source}: data.classes"
    if classes is None:
        raise MertoolError(f"{where} is required (e.g. {{happiness: [happiness], others: [others]}})")
    if isinstance(classes, list):
        classes = {str(c): [str(c)] for c in classes}
    if not isinstance(classes, dict) or len(classes) < 2:
        raise MertoolError(f"{where} = {classes!r}: expected a mapping of at least 2 classes to raw emotion names")
    from mertool.data.classmap import split_name
    from mertool.datasets import KINDS

    out: dict[str, list[str]] = {}
    owner: dict[tuple, str] = {}
    for name, raws in classes.items():
        if isinstance(raws, str):
            raws = [raws]
        if not isinstance(raws, list) or not raws or not all(isinstance(r, (str, int)) for r in raws):
            raise MertoolError(f"{where}.{name} = {raws!r}: expected a list of raw emotion names")
        for r in raws:
            key = split_name(r)
            if key[0] is not None and key[0] not in KINDS:
                raise MertoolError(f"{where}.{name}: {r!r} names dataset {key[0]!r}; expected one of "
                                   f"{', '.join(KINDS)} before the ':'")
            if key in owner and owner[key] != str(name):
                raise MertoolError(f"{where}: emotion {r!r} is listed under both {owner[key]!r} and {str(name)!r}")
            owner[key] = str(name)
        out[str(name)] = [str(r) for r in raws]
    return out


def _check_official(counts, classes: dict, source: str) -> dict:
    """data.official_counts as {dataset: {class: count}} over the recipe's classes."""
    where = f"{source}: data.official_counts"
    if counts is None:
        return {}
    if not isinstance(counts, dict):
        raise MertoolError(f"{where} = {counts!r}: expected {{dataset: {{class: count}}}}")
    for dataset, per_class in counts.items():
        if not isinstance(per_class, dict):
            raise MertoolError(f"{where}.{dataset} = {per_class!r}: expected {{class: count}}")
        for name, n in per_class.items():
            if name not in classes:
                raise MertoolError(f"{where}.{dataset}.{name}: not a class of data.classes ({', '.join(classes)})")
            _check_value(n, "int", 0, None, f"{where}.{dataset}.{name}")
    return {str(d): {str(c): int(n) for c, n in v.items()} for d, v in counts.items()}


def resolve(raw: dict, source: str = "recipe") -> dict:
    """Defaults + raw recipe, validated; returns the complete recipe every run saves."""
    raw = dict(raw)
    raw.pop("extends", None)
    for key, value in list(raw.items()):
        if key not in DEFAULTS:
            raise MertoolError(f"{source}: unknown key {key!r}; expected one of {', '.join(DEFAULTS)}")
        if isinstance(DEFAULTS[key], dict) and value is None:  # an empty section ("model:") means defaults
            raw[key] = value = {}
        if isinstance(DEFAULTS[key], dict) and not isinstance(value, dict):
            raise MertoolError(f"{source}: {key} = {value!r}: expected a section (key: value mapping)")
    model_defaults = _model_fields()
    for section in ("data", "train", "augment", "model"):
        known = model_defaults if section == "model" else DEFAULTS[section]
        for key in raw.get(section, {}) or {}:
            if key not in known:
                raise MertoolError(f"{source}: unknown key {section}.{key}; expected one of {', '.join(known)}")
    recipe = merge(DEFAULTS, raw)
    recipe["data"]["classes"] = _check_classes(recipe["data"]["classes"], source)
    recipe["data"]["official_counts"] = _check_official(recipe["data"]["official_counts"], recipe["data"]["classes"],
                                                        source)
    if recipe["data"]["unknown_aus"] not in UNKNOWN_AUS:
        raise MertoolError(f"{source}: data.unknown_aus = {recipe['data']['unknown_aus']!r}: expected one of "
                           f"{', '.join(UNKNOWN_AUS)}")
    for path, (kind, lo, hi) in _SPECS.items():
        node = recipe
        for part in path[:-1]:
            node = node[part]
        if node.get(path[-1]) is None and kind == "str":
            node[path[-1]] = ""
        node[path[-1]] = _check_value(node[path[-1]], kind, lo, hi, f"{source}: {'.'.join(path)}")
    recipe["model"] = _resolve_model(recipe, model_defaults, source)
    test_aus = recipe["train"]["test_aus"]
    if test_aus not in TEST_AUS:
        raise MertoolError(f"{source}: train.test_aus = {test_aus!r}: expected one of {', '.join(TEST_AUS)}")
    if test_aus == "thresholded" and (recipe["model"]["aus"] != "oracle" or not recipe["model"]["au_head"]):
        raise MertoolError(f"{source}: train.test_aus = thresholded feeds the AU head's thresholded estimate to a "
                           f"model trained on hand-coded AUs: it needs model.aus = oracle and model.au_head = true "
                           f"(model.aus is {recipe['model']['aus']!r})")
    return _plain(recipe)


def _resolve_model(recipe: dict, model_defaults: dict, source: str) -> dict:
    """Complete model section; num_classes and image_size follow the data section (a conflicting value is an error)."""
    given = recipe["model"]
    derived = {"num_classes": len(recipe["data"]["classes"]), "image_size": recipe["data"]["image_size"]}
    for key, value in derived.items():
        if key in given and given[key] != value and key in model_defaults:
            what = "the number of data.classes" if key == "num_classes" else "data.image_size"
            raise MertoolError(f"{source}: model.{key} = {given[key]!r} disagrees with {what} ({value}); "
                               f"remove model.{key}")
    model = {**model_defaults, **given}
    for key, value in derived.items():
        if key in model_defaults:
            model[key] = value
    from mertool.models import model_config_dict

    try:
        return model_config_dict(model)  # validated by the model builder, in its plain form
    except MertoolError as exc:
        raise MertoolError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise MertoolError(f"{source}: model: {exc}") from None


def load_recipe(path: str | Path, overrides=(), extra: dict | None = None) -> dict:
    """Read a recipe (with `extends`), merge `extra` (a raw mapping) and `--set` overrides; resolve and validate."""
    path = find_recipe(path)
    raw = _load_raw(path)
    if extra:
        raw = merge(raw, extra)
    raw = apply_overrides(raw, overrides)
    source = str(path) + (" (with --set overrides)" if overrides else "")
    recipe = resolve(raw, source)
    include = recipe["data"]["include"]
    if include and not Path(include).expanduser().exists():
        # a list kept beside the recipe, else one shipped with mertool's recipes (lists/megc2019_...csv), so a
        # recipe elsewhere that extends megc2019.yaml finds the official list too
        for folder in (path.parent, recipes_dir()):
            if (folder / include).is_file():
                recipe["data"]["include"] = str((folder / include).resolve())
                break
    return recipe


def dump_recipe(recipe: dict) -> str:
    """The YAML text saved in run folders (keys in recipe order)."""
    return yaml.safe_dump(_plain(recipe), sort_keys=False, default_flow_style=False, allow_unicode=True)


def save_recipe(recipe: dict, path: str | Path) -> Path:
    """Write the resolved recipe atomically."""
    return files.write_text(path, dump_recipe(recipe))


def flat_recipe(recipe: dict, _prefix: str = "") -> dict:
    """A recipe as {dotted key: plain value}; the class map (data.classes) stays one value."""
    out = {}
    for key, value in recipe.items():
        name = f"{_prefix}{key}"
        if isinstance(value, dict) and value and name != "data.classes":
            out.update(flat_recipe(value, name + "."))
        elif name == "model.aus" and isinstance(value, bool):
            from mertool.models.config import au_source

            out[name] = au_source(value)  # run folders written before AU sources say true / false
        else:
            out[name] = _plain(value)
    return out


def recipe_diff(a: dict, b: dict) -> list[str]:
    """Dotted keys whose values differ between two resolved recipes ('train.epochs: 75 != 5').

    A key that one recipe lacks and the other holds at its default is no difference: a run folder saved before the
    key existed (say data.include, model.swin_heads) still resumes.
    """
    fa, fb = flat_recipe(a), flat_recipe(b)
    defaults = flat_recipe({**DEFAULTS, "model": _model_fields()})
    missing = object()

    def same(k: str) -> bool:
        va, vb = fa.get(k, missing), fb.get(k, missing)
        if va is missing or vb is missing:
            return (vb if va is missing else va) == defaults.get(k, missing)
        return va == vb

    return [f"{k}: {fa.get(k)!r} != {fb.get(k)!r}" for k in sorted(set(fa) | set(fb)) if not same(k)]


def predates_hint(old: dict, new: dict) -> str:
    """For a run folder saved before some keys existed: the --set values that resume it as it was made.

    Its recipe lacks those keys, so they held their defaults of the time (say model.stem light); a recipe that now
    names another value (the paper recipes' stem mmnet) is a different model, refused, and this says how to resume.
    """
    fa, fb = flat_recipe(old), flat_recipe(new)
    defaults = flat_recipe({**DEFAULTS, "model": _model_fields()})
    keys = [k for k in sorted(fb) if k not in fa and k in defaults and fb[k] != defaults[k]]
    if not keys:
        return ""
    sets = " ".join(f"--set {k}={defaults[k]}" for k in keys)
    return f"; the run folder's recipe predates {', '.join(keys)}: resume it with {sets}"
