"""Recipes: shipped files resolve, overrides, `extends`, and clear errors for bad keys, values and class maps."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from mertool.errors import MertoolError
from mertool.recipe import DEFAULTS, dump_recipe, load_recipe, parse_override, recipe_diff, resolve

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_paper_recipes_resolve_with_paper_settings():
    c = load_recipe(RECIPES / "casme2.yaml")
    assert list(c["data"]["classes"]) == ["happiness", "disgust", "repression", "surprise", "others"]
    t = c["train"]
    assert (t["lr"], t["weight_decay"], t["epochs"], t["decay_epochs"], t["batch_size"], t["accum_steps"]) == \
        (8e-4, 0.6, 75, 50, 16, 2)
    assert c["augment"] == {"hflip": 0.5, "crop_padding": 15, "rotation": 3.0}
    assert c["model"]["num_classes"] == 5 and c["model"]["image_size"] == 224
    s = load_recipe(RECIPES / "samm.yaml")  # extends casme2.yaml; the class map is replaced, not merged
    assert list(s["data"]["classes"]) == ["anger", "contempt", "happiness", "surprise", "other"]
    assert s["train"] == c["train"] and s["model"] == c["model"]
    d = load_recipe("demo")  # bare names are looked up in recipes/
    assert d["data"]["image_size"] == d["model"]["image_size"] <= 96


def test_every_key_has_a_default_and_resolved_recipe_round_trips():
    r = load_recipe(RECIPES / "casme2.yaml")
    assert set(r) == set(DEFAULTS)
    for section in ("data", "train", "augment"):
        assert set(r[section]) == set(DEFAULTS[section])
    again = resolve(yaml.safe_load(dump_recipe(r)), "saved")
    assert again == r and recipe_diff(again, r) == []


def test_run_folder_saved_before_new_model_keys_still_matches():
    new = load_recipe(RECIPES / "casme2.yaml")
    old = yaml.safe_load(dump_recipe(new))
    for key in ("swin_heads", "au_detach"):  # model options added after run folders were written
        del old["model"][key]
    assert recipe_diff(old, new) == []
    old["model"]["window"] = 8
    assert recipe_diff(old, new) == ["model.window: 8 != 7"]
    assert recipe_diff(old, load_recipe(RECIPES / "demo.yaml"))  # the demo's heads differ from the default


def test_overrides_are_yaml_values():
    r = load_recipe(RECIPES / "casme2.yaml", ["train.epochs=5", "train.lr=1e-3", "augment.hflip=0",
                                              "model.width=0.5", "data.classes={a: [happiness], b: [Disgust]}"])
    assert r["train"]["epochs"] == 5 and r["train"]["lr"] == pytest.approx(1e-3)
    assert r["augment"]["hflip"] == 0.0 and r["model"]["width"] == 0.5
    assert r["data"]["classes"] == {"a": ["happiness"], "b": ["Disgust"]} and r["model"]["num_classes"] == 2
    assert parse_override("a.b=[1, 2]") == (("a", "b"), [1, 2])
    assert recipe_diff(load_recipe(RECIPES / "casme2.yaml"), r)[0].startswith("augment.hflip")


@pytest.mark.parametrize("override,needle", [
    ("train.epoch=5", "unknown key train.epoch"),
    ("trian.epochs=5", "unknown key 'trian'"),
    ("model.colour=red", "unknown key model.colour"),
    ("train.epochs=abc", "train.epochs = 'abc': expected an integer >= 1"),
    ("train.epochs=0", "train.epochs = 0"),
    ("augment.hflip=2", "augment.hflip = 2.0: expected a number in [0.0, 1.0]"),
    ("train.lr=fast", "train.lr = 'fast'"),
    ("model.num_classes=7", "model.num_classes = 7 disagrees with the number of data.classes"),
    ("data.classes=[happiness]", "data.classes"),
    ("data.classes={a: [happiness], b: [Happiness]}", "listed under both"),
    ("train", "expected KEY=VALUE"),
])
def test_bad_overrides_name_the_key_and_file(override, needle):
    with pytest.raises(MertoolError) as err:
        load_recipe(RECIPES / "casme2.yaml", [override])
    assert needle in str(err.value)
    if "=" in override:
        assert "casme2.yaml" in str(err.value) or "--set" in str(err.value)


def test_bad_recipe_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: " + str(RECIPES / "casme2.yaml") + "\ntrain:\n  epocs: 3\n")
    with pytest.raises(MertoolError, match=r"bad\.yaml: unknown key train\.epocs"):
        load_recipe(bad)
    bad.write_text("data: {classes: {a: [x], b: [y]}}\nschedule: {}\n")
    with pytest.raises(MertoolError, match=r"bad\.yaml: unknown key 'schedule'"):
        load_recipe(bad)
    bad.write_text("data: {image_size: 64}\n")
    with pytest.raises(MertoolError, match="data.classes is required"):
        load_recipe(bad)
    bad.write_text("train: [1, 2\n")
    with pytest.raises(MertoolError, match=r"bad\.yaml: not valid YAML"):
        load_recipe(bad)
    bad.write_bytes(b"\x94\xff\x00binary")
    with pytest.raises(MertoolError, match=r"bad\.yaml: not a text file \(expected a YAML recipe\)"):
        load_recipe(bad)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\n")
    b.write_text("extends: a.yaml\n")
    with pytest.raises(MertoolError, match="extends. cycle"):
        load_recipe(a)
    with pytest.raises(MertoolError, match="no such recipe"):
        load_recipe(tmp_path / "missing.yaml")


def test_class_map_against_cache(tmp_path):
    from conftest import make_synthetic_cache
    from mertool.training.dataset import load_dataset

    cache = make_synthetic_cache(tmp_path / "c.h5", subjects=2, per_class=1, size=32,
                                 emotions=("Happiness", "disgust", "fear", "others"))
    data = load_dataset(cache, {"happy": ["happiness"], "other": ["other", "disgust"]}, 48)
    assert data.classes == ["happy", "other"] and data.dropped == {"fear": 2}
    assert data.class_counts() == {"happy": 2, "other": 4}  # 'others' matches 'other' (plural-insensitive)
    assert tuple(data.onset.shape) == (6, 3, 48, 48) and data.onset.dtype.is_floating_point is False
    assert np.array_equal(np.unique(data.subjects), ["01", "02"])
    with pytest.raises(MertoolError) as err:
        load_dataset(cache, {"happy": ["happiness"], "sad": ["sadness"]}, recipe_name="r.yaml")
    msg = str(err.value)
    assert "sad" in msg and "'sadness'" in msg and "'fear': 2" in msg and "'Happiness': 2" in msg
