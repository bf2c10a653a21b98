"""AU sources in training: the AU head's masked loss, the held-out subject's codes hidden in its fold, AU columns
in predictions.csv, AU detection in evaluate, and recipes / run folders written with `aus: true/false`."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mertool.cli import main
from mertool.data.aus import AU_VOCAB
from mertool.recipe import flat_recipe, load_recipe, recipe_diff
from mertool.training.dataset import load_dataset
from mertool.training.train import au_bce, hide_test_aus, run_fold, split_fold, train_loso

ROOT = Path(__file__).resolve().parents[1]
FAST = ["data.image_size=64", "model.width=0.25", "train.epochs=2", "train.decay_epochs=1",
        "augment.crop_padding=4", "model.fpf=none"]


def recipe(*extra):
    return load_recipe(ROOT / "recipes" / "casme2.yaml", FAST + list(extra))


def data_of(cache, r):
    return load_dataset(cache, r["data"]["classes"], r["data"]["image_size"])


def test_au_bce_masks_samples_without_au_codes():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 3.0]])
    aus = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    known = torch.tensor([True, False, True])
    full = torch.nn.functional.binary_cross_entropy_with_logits(logits, aus, reduction="none").mean(1)
    assert torch.isclose(au_bce(logits, aus, known), (full[0] + full[2]) / 3)
    # an unknown sample's codes (here all zero, as caches store them) do not move the head at all
    logits.requires_grad_(True)
    au_bce(logits, aus, known).backward()
    assert torch.all(logits.grad[1] == 0) and torch.any(logits.grad[0] != 0)
    # a hidden (NaN) code is never silently dropped: it poisons the loss
    assert torch.isnan(au_bce(logits.detach(), torch.tensor([[float("nan"), 0.0]] * 3), known))


def test_held_out_codes_are_hidden_and_checked(synthetic_cache):
    r = recipe("model.aus=estimated")
    data = data_of(synthetic_cache, r)
    train_np, test_np = split_fold(data.subjects, "02")
    hidden = hide_test_aus(data, torch.as_tensor(test_np), torch.as_tensor(train_np), "02")
    assert torch.isnan(hidden.aus[test_np]).all() and not torch.isnan(hidden.aus[train_np]).any()
    assert not torch.isnan(data.aus).any()  # the caller's data is untouched
    leak = np.concatenate([train_np, test_np[:1]])  # a broken split that lets one test sample into training
    with pytest.raises(RuntimeError, match="held-out subject's AU codes are in the training rows"):
        hide_test_aus(data, torch.as_tensor(test_np), torch.as_tensor(leak), "02")


def folds_with_scrambled_test_aus(data, r, subject):
    """The fold of `subject` trained twice: on the cache as it is, and with that subject's AU codes inverted.
    Returns both results and the subject's sample mask."""
    a = run_fold(data, r, subject)
    mask = torch.as_tensor(data.subjects == subject)
    scrambled = data.aus.clone()
    scrambled[mask] = 1.0 - scrambled[mask]
    return a, run_fold(replace(data, aus=scrambled), r, subject), mask


@pytest.mark.parametrize("source", ["estimated", "none"])
def test_held_out_codes_do_not_change_a_fold(synthetic_cache, source, one_torch_thread):
    """Scrambling the test subject's AU codes in the cache changes nothing in its fold (estimated / none)."""
    r = recipe(f"model.aus={source}")
    data = data_of(synthetic_cache, r)
    a, b, _mask = folds_with_scrambled_test_aus(data, r, "03")
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(a.au_probs, b.au_probs)
    assert a.log[-1]["loss"] == b.log[-1]["loss"]


def test_oracle_tested_on_thresholded_estimates(synthetic_cache, one_torch_thread):
    """train.test_aus thresholded: the oracle model trains on hand codes, and each held-out clip reads the AU head's
    estimate thresholded at 0.5, never its own codes (scrambling them changes nothing); the probabilities are the
    classifier's on that 0/1 vector."""
    from mertool.errors import MertoolError

    r = recipe("model.aus=oracle", "train.test_aus=thresholded")
    data = data_of(synthetic_cache, r)
    a, b, mask = folds_with_scrambled_test_aus(data, r, "03")
    np.testing.assert_array_equal(a.probs, b.probs)
    test = torch.as_tensor(np.flatnonzero(mask.numpy()))
    with torch.no_grad():
        onset, apex = data.onset[test].float() / 255, data.apex[test].float() / 255
        bits = (torch.from_numpy(a.au_probs) >= 0.5).float()
        by_hand = torch.softmax(a.model.eval()(onset, apex, bits, estimate_aus=False), 1).numpy()
    np.testing.assert_allclose(a.probs, by_hand, atol=1e-5)
    assert not np.array_equal(a.probs, run_fold(data, recipe("model.aus=oracle"), "03").probs)
    for bad in (["model.aus=estimated", "train.test_aus=thresholded"], ["train.test_aus=maybe"]):
        with pytest.raises(MertoolError, match="train.test_aus"):
            recipe(*bad)


def test_oracle_reads_the_test_codes_and_masks_unknown_ones(synthetic_cache, one_torch_thread):
    """Oracle (the paper's setting) reads the held-out codes as input; samples whose codes are unknown take no part
    in the AU loss (their AU loss is 0 when every training sample is unknown)."""
    r = recipe("model.aus=oracle")
    data = data_of(synthetic_cache, r)
    a = run_fold(data, r, "03")
    mask = torch.as_tensor(data.subjects == "03")
    flipped = data.aus.clone()
    flipped[mask] = 1.0 - flipped[mask]
    assert not np.array_equal(a.probs, run_fold(replace(data, aus=flipped), r, "03").probs)
    unknown = run_fold(replace(data, au_known=torch.zeros(len(data), dtype=torch.bool)), r, "03")
    assert all(rec["au_loss"] == 0 for rec in unknown.log) and all(rec["au_loss"] > 0 for rec in a.log)


def test_predictions_carry_au_columns_and_evaluate_reports_au_detection(tmp_path, synthetic_cache, capsys,
                                                                        one_torch_thread):
    r = recipe("model.aus=estimated", "train.epochs=1")
    out = tmp_path / "run"
    train_loso(r, synthetic_cache, out, subjects="01,02", progress=False)
    capsys.readouterr()
    with open(out / "folds" / "01" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[-22:] == ["aus_true"] + [f"au{a}" for a in AU_VOCAB]
    happy = next(row for row in rows if row["true"] == "happiness")
    assert happy["aus_true"] == "6+12" and all(0 <= float(happy[f"au{a}"]) <= 1 for a in AU_VOCAB)
    code = main(["evaluate", str(out), "--partial", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    det = report["runs"][0]["au_detection"]
    assert det["n"] == 20 and det["min_support"] == 10 and det["threshold"] == 0.5
    by_au = {row["au"]: row for row in det["per_au"]}
    assert by_au[4]["support"] == 8 and by_au[6]["support"] == 4  # disgust + others carry AU4 in this cache
    assert det["aus_counted"] == [a for a in AU_VOCAB if by_au[a]["support"] >= 10]
    assert (out / "au_f1.png").is_file() and report["au_png"].endswith("au_f1.png")
    from mertool.reports.evaluate import au_f1_figure
    labels = {t.get_text() for t in au_f1_figure(report).axes[0].texts}  # rare AUs, an F1 of 0 included, say so
    assert labels == {f"n={row['support']}" for row in det["per_au"] if row["support"] < 10} and "n=0" in labels
    code = main(["evaluate", str(out), "--partial"])
    text = capsys.readouterr().out
    assert code == 0 and "AU detection by the AU head" in text and "mean AU F1 over the" in text


def test_old_recipes_and_run_folders_with_aus_true_false(tmp_path, synthetic_cache):
    """`aus: true/false` (recipes, run folders, checkpoints written before AU sources) read as oracle / none."""
    old = tmp_path / "old.yaml"  # a recipe written before AU sources
    old.write_text(f"extends: {ROOT / 'recipes' / 'casme2.yaml'}\nmodel: {{aus: false}}\n")
    assert yaml.safe_load(old.read_text())["model"]["aus"] is False
    assert load_recipe(old, FAST)["model"]["aus"] == "none"
    assert recipe("model.aus=false")["model"]["aus"] == "none"
    assert recipe("model.aus=true")["model"]["aus"] == "oracle"
    a, b = recipe("model.aus=true"), recipe("model.aus=oracle")
    assert recipe_diff(a, b) == []
    saved = dict(b, model=dict(b["model"], aus=True))  # what an older run folder's recipe.yaml says
    assert flat_recipe(saved)["model.aus"] == "oracle" and recipe_diff(saved, b) == []
