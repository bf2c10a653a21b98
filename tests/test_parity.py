"""Train/predict parity: a model's checkpoint records how its cache made pairs, and `predict` on a cached sample's
source frames gives the cached arrays and the model's probabilities on the cached pair, for every preprocess option.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from mertool.cli import main
from test_spot import smile_clip

OPTIONS = {  # name -> preprocess keyword arguments
    "register-none": {"register": "none"},
    "register-landmarks": {"register": "landmarks"},
    "register-ecc": {"register": "ecc"},
    "padding-0.3": {"padding": 0.3},
    "no-align": {"align": False},
}
TINY = ["train.epochs=1", "train.batch_size=2", "data.classes={happiness: [happiness], surprise: [surprise]}"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Two subjects' onset/apex pairs (lossless PNG) and a manifest naming them."""
    d = tmp_path_factory.mktemp("parity")
    rows = ["subject,sample_id,onset_path,apex_path,emotion,aus"]
    for subject, seed, emotion, aus in (("s1", 0, "happiness", "6+12"), ("s2", 1, "surprise", "1+2")):
        clip = smile_clip(n=20, apex=12, seed=seed)
        for name, i in (("onset", 0), ("apex", 12)):
            cv2.imwrite(str(d / f"{subject}_{name}.png"), cv2.cvtColor(clip[i], cv2.COLOR_RGB2BGR))
        rows.append(f"{subject},ep1,{subject}_onset.png,{subject}_apex.png,{emotion},{aus}")
    (d / "manifest.csv").write_text("\n".join(rows) + "\n")
    return d


def _train_final(cache, out):
    """A 1-epoch final model of the demo recipe on the cache, through run_fold (what train-loso --final runs)."""
    from mertool.recipe import load_recipe
    from mertool.training.dataset import load_for_recipe
    from mertool.training.runs import final_path
    from mertool.training.train import run_fold

    recipe = load_recipe("demo", TINY)
    data = load_for_recipe(cache, recipe)
    torch.manual_seed(0)
    run_fold(data, recipe, None, final_path(out), device="cpu")
    return final_path(out) / "model.pt", data


@pytest.mark.parametrize("option", list(OPTIONS))
def test_predict_on_source_frames_reproduces_the_cache(option, frames, tmp_path, one_torch_thread):
    from mertool.cache.preprocess import preprocess
    from mertool.cache.store import load_cache
    from mertool.predict.predictor import Predictor
    from mertool.training.runs import load_checkpoint
    from mertool.training.train import predict_outputs

    cache = tmp_path / "c.h5"
    preprocess(frames / "manifest.csv", kind="manifest", out=cache, workers=0, progress=False, **OPTIONS[option])
    model_path, data = _train_final(cache, tmp_path / "run")
    ckpt = load_checkpoint(model_path)[1]
    cached = load_cache(cache)
    record = ckpt["alignment"]
    stored = json.loads(cached.attrs["alignment"])
    assert {k: record[k] for k in stored} == stored  # every alignment setting of the cache, as it is
    assert record["cache_fingerprint"] and record["cache_dataset"] == "manifest"

    predictor = Predictor(model_path)
    if option != "no-align":
        assert predictor.notes == []  # the checkpoint's record is followed: nothing assumed
    model, _ = load_checkpoint(model_path)
    cached_probs, _ = predict_outputs(model, data, torch.arange(len(data)))
    for i in range(len(cached)):
        src = frames / cached.meta["source_onset"][i], frames / cached.meta["source_apex"][i]
        pred = predictor.predict_pair(*src, aus=cached.meta["aus_raw"][i])
        for name, crop in (("onset", pred.onset_crop), ("apex", pred.apex_crop)):
            stored_frame = getattr(cached, name)[i]
            assert crop.shape == stored_frame.shape and crop.dtype == np.uint8
            diff = np.abs(crop.astype(np.float32) - stored_frame.astype(np.float32)).mean()
            assert diff <= 1.0, (option, name, diff)
        j = list(zip(data.subjects, data.sample_ids)).index((cached.subjects[i], cached.sample_ids[i]))
        assert np.abs(np.array(list(pred.probabilities.values())) - cached_probs[j].numpy()).max() <= 1e-4, option
    if option == "no-align":
        assert any("--no-align" in n and "resized" in n for n in predictor.notes)


def test_save_inputs_and_old_checkpoint_note(frames, tmp_path, capsys, one_torch_thread):
    """--save-inputs writes the cache's form of the pair and the AU vector read; a checkpoint without the record
    says in one line what predict assumes, and carries on."""
    from mertool.cache.preprocess import preprocess
    from mertool.cache.store import load_cache

    cache = tmp_path / "c.h5"
    preprocess(frames / "manifest.csv", kind="manifest", out=cache, workers=0, progress=False, register="landmarks")
    model_path, _ = _train_final(cache, tmp_path / "run")
    npz = tmp_path / "inputs.npz"
    onset, apex = frames / "s1_onset.png", frames / "s1_apex.png"
    code = main(["predict", str(onset), str(apex), "--aus", "6+12", "--model", str(model_path), "--json",
                 "--save-inputs", str(npz)])
    out, err = capsys.readouterr()
    assert code == 0, err
    obj = json.loads(out)
    assert obj["pairs_made"]["register"] == "landmarks" and obj["notes"] == []
    saved = np.load(npz)
    c = load_cache(cache)
    assert saved["onset"].dtype == np.uint8 and saved["onset"].shape == c.onset[0].shape == (224, 224, 3)
    assert np.abs(saved["apex"].astype(float) - c.apex[0].astype(float)).mean() <= 1.0
    assert saved["aus"].dtype == np.float32 and saved["aus"].shape == (21,)
    from mertool.data.aus import au_bits
    assert np.array_equal(saved["aus"], au_bits((6, 12)).astype(np.float32))

    old = torch.load(model_path, weights_only=True)
    del old["alignment"]
    torch.save(old, tmp_path / "old.pt")
    code = main(["predict", str(onset), str(apex), "--aus", "6+12", "--model", str(tmp_path / "old.pt")])
    out, err = capsys.readouterr()
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "records no alignment" in notes[0] and "ECC registration" in notes[0]
    code = main(["predict", str(onset), str(apex), "--model", str(model_path), "--save-inputs", str(tmp_path / "x")])
    out, err = capsys.readouterr()
    assert code == 2 and "--save-inputs" in err and ".npz" in err
