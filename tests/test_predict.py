"""`mertool predict`: pairs, CSV batches, JSON, clips (video and frame folder), explain pictures, bad inputs."""
from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest
import torch

from mertool.cli import main
from mertool.errors import MertoolError
from mertool.predict.predictor import Predictor, parse_aus_input, sparkline
from test_spot import smile_clip, write_folder, write_video

SMALL = ["data.image_size=64", "model.width=0.25"]


def save_model(path, *overrides):
    """A small untrained model saved in the checkpoint format `train-loso` writes (nothing heavy to train)."""
    from mertool.models import build_model
    from mertool.recipe import load_recipe
    from mertool.training.runs import make_checkpoint, save_checkpoint

    from mertool.face.align import describe

    recipe = load_recipe("casme2", SMALL + list(overrides))
    torch.manual_seed(0)
    model = build_model(recipe["model"]).eval()
    pairs = describe(224, 0.25, 1, 640)  # what preprocess's defaults record (consensus registration)
    return save_checkpoint(make_checkpoint(model, recipe, list(recipe["data"]["classes"]), pairs), path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoints (with / without AUs, a run folder), an onset/apex pair, a clip as video and as frame folder."""
    d = tmp_path_factory.mktemp("predict")
    run = d / "run"
    (run / "final").mkdir(parents=True)
    f = {"model": save_model(d / "model.pt"), "noau": save_model(d / "noau.pt", "model.aus=false"), "run": run,
         "dir": d}
    save_model(run / "final" / "model.pt")
    frames = smile_clip(n=30, apex=18)
    f["onset"], f["apex"] = d / "onset.png", d / "apex.png"
    for key, i in (("onset", 0), ("apex", 18)):
        cv2.imwrite(str(f[key]), cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR))
    f["video"] = write_video(frames, d / "clip.mp4")
    f["frames"] = write_folder(frames, d / "frames")
    return f


def run(capsys, *args):
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# -------------------------------------------------------------------------------------------------- pairs

def test_pair_table_and_json_agree_with_the_library(files, capsys):
    code, out, err = run(capsys, files["onset"], files["apex"], "--aus", "6+12", "--model", files["model"])
    assert code == 0, err
    pred = Predictor(files["model"]).predict_pair(files["onset"], files["apex"], "6+12")
    for name, p in pred.probabilities.items():
        assert name in out and f"{p:.3f}" in out
    assert f"predicted: {pred.emotion}" in out and "AUs: 6+12" in out

    code, out, err = run(capsys, files["onset"], files["apex"], "--aus", "6+12", "--model", files["model"], "--json")
    assert code == 0, err
    assert out.count("\n") == 1  # one JSON object and nothing else on stdout
    obj = json.loads(out)
    assert obj["emotion"] == pred.emotion == max(obj["probabilities"], key=obj["probabilities"].get)
    assert list(obj["probabilities"]) == ["happiness", "disgust", "repression", "surprise", "others"]
    assert abs(sum(obj["probabilities"].values()) - 1) < 1e-4
    assert np.allclose(list(obj["probabilities"].values()), list(pred.probabilities.values()), atol=1e-6)
    assert obj["aus"] == [6, 12] and obj["au_vector_empty"] is False and obj["faces_found"] == 1


def test_prediction_equals_the_cached_pipeline(files, tmp_path):
    """predict aligns and resizes exactly as preprocess + training do: same probabilities as the model on the
    cache entry of the same pair."""
    from mertool.cache.preprocess import preprocess
    from mertool.training.dataset import load_dataset
    from mertool.training.runs import load_checkpoint
    from mertool.training.train import predict_probs

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject,sample_id,onset_path,apex_path,emotion,aus\n"
                        f"s1,ep1,{files['onset']},{files['apex']},happiness,6+12\n")
    preprocess(manifest, kind="manifest", out=tmp_path / "c.h5", workers=0, progress=False)
    model, ckpt = load_checkpoint(files["model"])
    ds = load_dataset(tmp_path / "c.h5", {"happiness": ["happiness"]}, ckpt["image_size"])  # labels unused here
    cached = predict_probs(model, ds, torch.tensor([0])).numpy()[0]
    pred = Predictor(files["model"]).predict_pair(files["onset"], files["apex"], "6+12")
    assert np.allclose(cached, list(pred.probabilities.values()), atol=1e-5)


def test_au_forms_and_rules():
    assert parse_aus_input("1,2", True).codes == (1, 2)
    assert parse_aus_input("AU1+R2", True).codes == (1, 2)
    assert parse_aus_input("4+L10", True).codes == (4, 10)
    assert parse_aus_input("none", True).empty and parse_aus_input("None", True).codes == ()
    with pytest.raises(MertoolError, match=r"--aus '4\+3': 3 not in the AU vocabulary"):
        parse_aus_input("4+3", True)
    with pytest.raises(MertoolError, match="trained on hand-coded AUs.*--aus-from.*--aus none") as exc:
        parse_aus_input(None, True)  # a model with hand-coded AU input and no AU head (an old checkpoint)
    assert "auto" not in str(exc.value)  # it has no head to estimate them with
    no_au = parse_aus_input(None, False)
    assert no_au.codes == () and not no_au.empty and parse_aus_input("6+12", False).ignored
    # an estimated model's AU head estimates them when none are given, or with 'auto'
    for text in (None, "auto"):
        est = parse_aus_input(text, True, has_head=True, source="estimated")
        assert est.auto and not est.thresholded and not est.warning
    # an oracle model learnt from 0/1 hand codes: none given is an error naming --aus and --aus-from; 'auto' feeds
    # the head's estimate thresholded at 0.5
    with pytest.raises(MertoolError, match="--aus .*--aus-from.*--aus auto"):
        parse_aus_input(None, True, has_head=True, source="oracle")
    with pytest.raises(MertoolError, match="row 3: aus: empty.*aus_from.*'auto'"):
        parse_aus_input("", True, "pairs.csv: row 3: aus", has_head=True, source="oracle")
    thr = parse_aus_input("auto", True, has_head=True, source="oracle")
    assert thr.auto and thr.thresholded
    assert parse_aus_input("6+12", True, has_head=True, source="oracle").codes == (6, 12)
    assert not parse_aus_input("6+12", True, has_head=True, source="oracle").warning
    # hand codes into a model that learnt from its head's probabilities: used, with a warning naming the mismatch
    warned = parse_aus_input("6+12", True, has_head=True, source="estimated")
    assert warned.codes == (6, 12) and "hand-coded AUs (0/1)" in warned.warning and "estimated" in warned.warning
    with pytest.raises(MertoolError, match="--aus auto: this model has no AU head"):
        parse_aus_input("auto", True)
    only_images = parse_aus_input(None, False, has_head=True)  # aus: none, with an AU head
    assert not only_images.auto and only_images.codes == () and not only_images.empty


def test_aus_none_and_model_without_aus(files, capsys):
    code, out, err = run(capsys, files["onset"], files["apex"], "--aus", "none", "--model", files["model"])
    assert code == 0, err
    assert "AU vector: empty (--aus none)" in out
    code, out, _ = run(capsys, files["onset"], files["apex"], "--aus", "none", "--model", files["model"], "--json")
    assert json.loads(out)["au_vector_empty"] is True
    code, out, err = run(capsys, files["onset"], files["apex"], "--model", files["noau"], "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["aus"] == [] and obj["au_vector_empty"] is False
    # the AU vector really reaches a model with AUs: different AUs, different probabilities
    p = Predictor(files["model"])
    a = p.predict_pair(files["onset"], files["apex"], "none").probabilities
    b = p.predict_pair(files["onset"], files["apex"], "1+2+4+6+12").probabilities
    assert not np.allclose(list(a.values()), list(b.values()))


def test_run_folder_resolves_to_final_model(files, capsys, tmp_path):
    code, out, err = run(capsys, files["onset"], files["apex"], "--aus", "12", "--model", files["run"], "--json")
    assert code == 0, err
    assert json.loads(out)["model"].endswith("final/model.pt")
    (tmp_path / "folds" / "01").mkdir(parents=True)
    code, _, err = run(capsys, files["onset"], files["apex"], "--aus", "12", "--model", tmp_path)
    one_error_line(code, err, "no final/model.pt", "--final", "checkpoint.pt")


# -------------------------------------------------------------------------------------------------- batch

def test_pairs_csv_to_csv_and_jsonl(files, capsys, tmp_path):
    pairs = files["dir"] / "pairs.csv"
    pairs.write_text(f"onset,apex,aus\n{files['onset'].name},{files['apex'].name},6+12\n"
                     f"{files['onset']},{files['apex']},none\n"
                     f"{files['onset'].name},missing.png,4\n"
                     f"{files['onset'].name},{files['apex'].name},4+3\n"
                     f"{files['onset'].name},{files['apex'].name},\n")
    code, out, err = run(capsys, "--pairs", pairs, "--model", files["model"])
    assert code == 1  # two rows failed; the others were still predicted
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 5 and list(rows[0])[:4] == ["onset", "apex", "aus", "emotion"]
    assert list(rows[0])[-1] == "error" and "p_happiness" in rows[0]
    single = Predictor(files["model"]).predict_pair(files["onset"], files["apex"], "6+12")
    assert rows[0]["emotion"] == single.emotion and rows[0]["error"] == ""
    assert abs(float(rows[0]["p_surprise"]) - single.probabilities["surprise"]) < 1e-6
    assert rows[1]["emotion"] and rows[1]["error"] == ""
    assert rows[2]["emotion"] == "" and "missing.png: no such file" in rows[2]["error"]
    assert "row 5: aus" in rows[3]["error"] and "3 not in the AU vocabulary" in rows[3]["error"]
    # an empty cell for a model trained on hand-coded AUs: that row's error names the choices
    assert "row 6: aus: empty" in rows[4]["error"] and "aus_from" in rows[4]["error"] and rows[4]["emotion"] == ""
    assert "2 of 5 pairs predicted, 3 failed" in err and "row 4:" in err

    code, out, err = run(capsys, "--pairs", pairs, "--model", files["model"], "--json")  # --json = jsonl
    objs = [json.loads(line) for line in out.splitlines()]
    assert len(objs) == 5 and objs[0]["emotion"] == single.emotion and objs[0]["row"] == 2
    assert objs[1]["au_vector_empty"] is True and objs[2]["error"]

    good = tmp_path / "good.csv"
    good.write_text(f"onset,apex,aus\n{files['onset']},{files['apex']},1+2\n")
    code, out, _ = run(capsys, "--pairs", good, "--model", files["model"])
    assert code == 0 and len(out.splitlines()) == 2


def test_pairs_csv_structure_errors(files, capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("first,second\na.png,b.png\n")
    code, _, err = run(capsys, "--pairs", bad, "--model", files["model"])
    one_error_line(code, err, "bad.csv", "no 'onset' column")
    code, _, err = run(capsys, "--pairs", tmp_path / "nope.csv", "--model", files["model"])
    one_error_line(code, err, "nope.csv", "no such pairs file")
    code, _, err = run(capsys, "--pairs", bad, "--model", files["model"], "--format", "xml")
    assert code == 2 and "Invalid value for '--format'" in err and "Traceback" not in err  # Typer's usage box


# -------------------------------------------------------------------------------------------------- clips

def test_video_is_spotted_plotted_and_classified(files, capsys, tmp_path):
    plot, why = tmp_path / "motion.png", tmp_path / "why.png"
    code, out, err = run(capsys, files["video"], "--aus", "12", "--model", files["model"], "--json",
                         "--plot", plot, "--explain", why)
    assert code == 0, err
    obj = json.loads(out)
    assert obj["spotted"] is True and abs(obj["apex_frame"] - 19) <= 1 and obj["onset_frame"] < obj["apex_frame"]
    assert obj["apex"].endswith(f"clip.mp4 frame {obj['apex_frame']}") and len(obj["spotting"]["motion"]) == 30
    assert plot.read_bytes()[:4] == b"\x89PNG" and why.read_bytes()[:4] == b"\x89PNG"

    code, out, err = run(capsys, files["video"], "--aus", "12", "--model", files["model"])
    assert code == 0, err
    assert f"spotted: onset frame {obj['onset_frame']}, apex frame {obj['apex_frame']}" in out
    assert "motion " in out and f"predicted: {obj['emotion']}" in out


def test_frame_folder_spotting_and_override(files, capsys):
    code, out, err = run(capsys, files["frames"], "--aus", "12", "--model", files["model"], "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert abs(obj["apex_frame"] - 19) <= 1 and obj["apex"].endswith(f"img{obj['apex_frame']}.jpg")
    code, out, err = run(capsys, files["frames"], "--aus", "12", "--model", files["model"], "--json",
                         "--onset", "1", "--apex", "19")
    obj = json.loads(out)
    assert obj["spotted"] is False and (obj["onset_frame"], obj["apex_frame"]) == (1, 19)
    assert obj["onset"].endswith("img1.jpg") and "spotting" not in obj
    # the override classifies exactly the pair given as images
    pair = Predictor(files["model"]).predict_pair(files["frames"] / "img1.jpg", files["frames"] / "img19.jpg", "12")
    assert np.allclose(list(obj["probabilities"].values()), list(pair.probabilities.values()), atol=1e-6)
    code, _, err = run(capsys, files["frames"], "--aus", "12", "--model", files["model"], "--onset", "1",
                       "--apex", "99")
    one_error_line(code, err, "frame 99 is not in the clip (frames 1..30)")


# ------------------------------------------------------------------------------------------------ explain

def test_explain_uses_the_models_own_cva_maps(files, tmp_path):
    from mertool.predict.explain import attention_image, explain_figure

    pred = Predictor(files["model"]).predict_pair(files["onset"], files["apex"], "6+12")
    assert len(pred.cva_maps) == 4
    model = Predictor(files["model"]).model
    from mertool.training.dataset import resize_frames, to_float
    x = to_float(resize_frames(torch.from_numpy(np.stack([pred.onset_crop, pred.apex_crop])).permute(0, 3, 1, 2), 64))
    aus = torch.zeros(1, 21)
    aus[0, [4, 8]] = 1  # AU6, AU12
    with torch.no_grad():
        _, maps = model(x[:1], x[1:], aus, return_maps=True)
    for mine, ref in zip(pred.cva_maps, maps["cva"]):
        assert mine.shape == ref[0].shape and mine.shape[-1] == 1 and torch.allclose(mine, ref[0], atol=1e-6)
    att = attention_image(pred.cva_maps[-1], 224)
    assert att.shape == (224, 224) and np.allclose(att, att[:, :1])  # vertical attention: one weight per row
    png = explain_figure(pred.onset_crop, pred.apex_crop, pred.cva_maps, tmp_path / "e.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob("*.tmp"))
    assert explain_figure(pred.onset_crop, pred.apex_crop, None, tmp_path / "none.png").is_file()


def test_sparkline():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█" and sparkline([1, 1]) == "▁▁"
    assert len(sparkline(np.arange(500), width=40)) == 40


# ---------------------------------------------------------------------------------------------- bad inputs

def test_bad_inputs_are_one_line_errors(files, capsys, tmp_path):
    m = ["--model", str(files["model"])]
    code, _, err = run(capsys, tmp_path / "nope.jpg", files["apex"], "--aus", "12", *m)
    one_error_line(code, err, "nope.jpg", "no such file")

    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    code, out, err = run(capsys, noise, noise, "--aus", "12", *m)  # the reject option answers, with its reason
    assert code == 0 and "cannot judge: face not found" in out and "noise.png" in out
    code, out, _ = run(capsys, noise, noise, "--aus", "12", "--json", "--force", *m)  # --force needs a face
    rec = json.loads(out)
    assert rec["judged"] is False and rec["cannot_judge_code"] == "no-face" and rec["emotion"] is None

    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    code, _, err = run(capsys, text, files["apex"], "--aus", "12", *m)
    one_error_line(code, err, "notes.jpg", "cannot decode")

    for name, content in (("weights.pt", None), ("junk.pt", b"\x00garbage" * 10)):
        path = tmp_path / name
        if content is None:
            torch.save({"state_dict": {"w": torch.zeros(2)}}, path)  # a torch file, but not a mertool checkpoint
        else:
            path.write_bytes(content)
        code, _, err = run(capsys, files["onset"], files["apex"], "--aus", "12", "--model", path)
        one_error_line(code, err, name, "not a mertool checkpoint")

    code, _, err = run(capsys, files["onset"], files["apex"], "--aus", "AU1+R2+L99", *m)
    one_error_line(code, err, "99 not in the AU vocabulary")
    code, _, err = run(capsys, files["onset"], files["apex"], *m)
    one_error_line(code, err, "trained on hand-coded AUs", "--aus", "--aus-from", "--aus auto")
    code, _, err = run(capsys, files["onset"], *m)
    one_error_line(code, err, "one image given")
    code, _, err = run(capsys, files["onset"], files["apex"], "--aus", "12", "--plot", tmp_path / "p.png", *m)
    one_error_line(code, err, "--plot")
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video")
    code, _, err = run(capsys, fake, "--aus", "12", *m)
    one_error_line(code, err, "fake.mp4", "cannot be read as a video")


def test_alignment_follows_the_checkpoint_when_recorded():
    a = Predictor._aligner({"method": "dlib-chip", "size": 112, "padding": 0.3, "upsample": 0, "anchor": "onset"})
    assert (a.size, a.padding, a.upsample) == (112, 0.3, 0)
    b = Predictor._aligner(None)
    assert (b.size, b.padding, b.upsample) == (224, 0.25, 1)  # preprocess's defaults


# ---------------------------------------------------------------------------------------------- AU sources

def test_estimated_aus_are_the_default_and_printed(files, capsys, tmp_path):
    """No --aus on an estimated model: the head's estimate feeds the classifier and is printed with probabilities
    (table and JSON); --aus still overrides it, with a warning. An oracle model with --aus auto reads the estimate
    thresholded at 0.5."""
    from mertool.training.dataset import resize_frames

    est_model = save_model(tmp_path / "est.pt", "model.aus=estimated")
    code, out, err = run(capsys, files["onset"], files["apex"], "--model", est_model, "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["aus_source"] == "estimated" and len(obj["aus_estimated"]) == 21
    assert obj["aus_source_text"] == "AUs estimated by the model" and obj["model_au_source"] == "estimated"
    assert all(0 <= p <= 1 for p in obj["aus_estimated"].values()) and "AU45" in obj["aus_estimated"]
    p = Predictor(est_model)
    auto = p.predict_pair(files["onset"], files["apex"], "auto")
    assert np.allclose(list(obj["probabilities"].values()), list(auto.probabilities.values()), atol=1e-6)

    def by_hand(model, pred, vector):
        with torch.no_grad():
            onset, apex = (resize_frames(torch.from_numpy(c).permute(2, 0, 1)[None], 64).float() / 255
                           for c in (pred.onset_crop, pred.apex_crop))
            return torch.softmax(model(onset, apex, vector, estimate_aus=False), 1)[0].numpy()

    # the estimate reaches the classifier: the same probabilities as feeding the head's output by hand
    est = torch.tensor([[auto.aus_estimated[a] for a in sorted(auto.aus_estimated)]])
    assert np.allclose(by_hand(p.model, auto, est), list(auto.probabilities.values()), atol=1e-4)
    code, out, err = run(capsys, files["onset"], files["apex"], "--model", est_model)
    assert code == 0 and "AUs: estimated by the model's AU head" in out and "AU head estimate" in out
    given = p.predict_pair(files["onset"], files["apex"], "1+2")
    assert given.to_dict()["aus_source"] == "given" and given.aus_estimated is not None
    assert "hand-coded AUs (0/1) given to a model trained on its AU head's estimates" in given.to_dict()["aus_warning"]
    code, out, err = run(capsys, files["onset"], files["apex"], "--aus", "1+2", "--model", est_model)
    assert code == 0 and "warning: hand-coded AUs (0/1)" in out

    # an oracle model with --aus auto: the head's estimate thresholded at 0.5, the 0/1 kind it learnt from
    o = Predictor(files["model"])
    thr = o.predict_pair(files["onset"], files["apex"], "auto")
    bits = (torch.tensor([[thr.aus_estimated[a] for a in sorted(thr.aus_estimated)]]) >= 0.5).float()
    assert np.allclose(by_hand(o.model, thr, bits), list(thr.probabilities.values()), atol=1e-5)
    assert np.array_equal(thr.au_vector, bits[0].numpy())
    d = thr.to_dict()
    assert d["aus_source"] == "estimated-thresholded" and "thresholded at 0.5" in d["aus_source_text"]
    code, out, err = run(capsys, files["onset"], files["apex"], "--aus", "auto", "--model", files["model"])
    assert code == 0 and "thresholded at 0.5 (0/1, like the hand codes it was trained on)" in out


def test_estimated_model_checkpoint_runs_without_aus(files, capsys, tmp_path):
    est = save_model(tmp_path / "est.pt", "model.aus=estimated")
    code, out, err = run(capsys, files["onset"], files["apex"], "--model", est, "--json")
    assert code == 0, err
    assert json.loads(out)["aus_source"] == "estimated"


def test_old_checkpoints_with_aus_true_false_still_load(files, tmp_path, capsys):
    """Checkpoints written before AU sources: model_config aus true/false and no AU head weights."""
    for flag, needs in ((True, True), (False, False)):
        ckpt = torch.load(files["model"] if flag else files["noau"], weights_only=True)
        ckpt["model_config"] = {**ckpt["model_config"], "aus": flag}
        for key in ("au_head", "au_detach"):
            ckpt["model_config"].pop(key, None)
        ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("au_head.")}
        path = tmp_path / f"old_{flag}.pt"
        torch.save(ckpt, path)
        p = Predictor(path)
        assert p.has_au_head is False and p.model.config.aus == ("oracle" if flag else "none")
        if needs:
            code, _, err = run(capsys, files["onset"], files["apex"], "--model", path)
            one_error_line(code, err, "--aus", "trained on hand-coded AUs")
        pred = p.predict_pair(files["onset"], files["apex"], "6+12")
        assert pred.aus_estimated is None and pred.to_dict().get("aus_estimated") is None


def _openface(path, rows: dict[int, set[int]]):
    from test_openface import openface_csv
    return openface_csv(path, rows)


def test_aus_from_openface_for_pairs_and_batches(files, capsys, tmp_path):
    of = _openface(tmp_path / "of.csv", {1: set(), 17: {6}, 18: {6, 12}, 19: set()})
    p = Predictor(files["model"])
    code, out, err = run(capsys, files["onset"], files["apex"], "--model", files["model"], "--aus-from", of,
                         "--apex-frame", "18", "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["aus"] == [6, 12] and obj["aus_source"] == "openface" and obj["aus_not_coded"] == [16, 18, 24]
    ref = p.predict_pair(files["onset"], files["apex"], "6+12")
    assert np.allclose(list(obj["probabilities"].values()), list(ref.probabilities.values()), atol=1e-6)
    assert p.predict_pair(files["onset"], files["apex"], aus_from=of).aus.codes == ()  # last row: nothing active
    code, _, err = run(capsys, files["onset"], files["apex"], "--model", files["model"], "--aus-from", of,
                       "--apex-frame", "40")
    one_error_line(code, err, "of.csv", "frame 40 is not in the CSV")
    code, _, err = run(capsys, files["onset"], files["apex"], "--model", files["model"], "--aus-from", of,
                       "--aus", "1")
    one_error_line(code, err, "one source of AUs")
    bad = tmp_path / "bad.csv"
    bad.write_text("frame, success\n1, 1\n")
    code, _, err = run(capsys, files["onset"], files["apex"], "--model", files["model"], "--aus-from", bad)
    one_error_line(code, err, "bad.csv: line 1", "AU01_c")

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("onset,apex,aus,aus_from,apex_frame\n"
                     f"{files['onset']},{files['apex']},,of.csv,18\n"
                     f"{files['onset']},{files['apex']},,bad.csv,\n"
                     f"{files['onset']},{files['apex']},4,of.csv,18\n")
    code, out, err = run(capsys, "--pairs", pairs, "--model", files["model"], "--json")
    objs = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and objs[0]["aus"] == [6, 12] and objs[0]["error"] == ""
    assert "bad.csv: line 1" in objs[1]["error"] and "aus or aus_from, not both" in objs[2]["error"]


def test_aus_from_openface_for_a_clip(files, capsys, tmp_path):
    """A clip: AUs active in any frame from onset to apex (the frames given or spotted)."""
    of = _openface(tmp_path / "of.csv", {n: ({4} if n == 3 else {12} if n == 10 else set()) for n in range(1, 31)})
    code, out, err = run(capsys, files["frames"], "--onset", "5", "--apex", "18", "--model", files["model"],
                         "--aus-from", of, "--json")
    assert code == 0, err
    assert json.loads(out)["aus"] == [12]  # AU4 at frame 3 lies before the onset


# ---------------------------------------------------------------------------------------------- reject option

def test_still_pair_cannot_be_judged_unless_forced(files, capsys):
    m = ["--model", str(files["model"]), "--aus", "12"]
    code, out, _ = run(capsys, files["onset"], files["onset"], *m)
    assert code == 0 and "cannot judge: no expression detected" in out and "predicted:" not in out
    assert "trained on" in out
    code, out, _ = run(capsys, files["onset"], files["onset"], "--json", *m)
    rec = json.loads(out)
    assert rec["judged"] is False and rec["cannot_judge_code"] == "no-motion" and rec["probabilities"] == {}
    code, out, _ = run(capsys, files["onset"], files["onset"], "--json", "--force", *m)
    rec = json.loads(out)
    assert rec["forced"] and rec["emotion"] in rec["probabilities"] and rec["cannot_judge_code"] == "no-motion"
    assert rec["calibration"].startswith("uncalibrated (T = 1)")  # a checkpoint without a temperature


def test_clip_reports_the_class_stability_around_the_apex(files, capsys):
    code, out, _ = run(capsys, files["frames"], "--model", str(files["model"]), "--aus", "12", "--json",
                       "--onset", "1", "--apex", "19", "--force")
    st = json.loads(out)["stability"]
    assert code == 0 and [r["apex"] for r in st["frames"]] == [17, 18, 19, 20, 21]
    assert st["of"] == 5 and 1 <= st["agree"] <= 5 and st["stable"] == (st["agree"] == 5)


def test_refused_registration_is_flagged_in_every_output(files, capsys, tmp_path):
    """An apex turned 10 deg from its onset (no head motion within a micro-expression): align refuses the
    registration, and the pair text, its --json, a --pairs CSV and JSONL, and a clip all say so with the flag (and
    the JSON's residual); predict cannot judge such a pair unless forced."""
    from skimage import data

    face = data.astronaut()
    turn = cv2.getRotationMatrix2D((256.0, 256.0), 10.0, 1.0)
    turned = cv2.warpAffine(face, turn, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    onset, apex, clip = tmp_path / "onset.png", tmp_path / "apex.png", tmp_path / "clip"
    clip.mkdir()
    for rgb, paths in ((face, (onset, clip / "img1.png")), (turned, (apex, clip / "img2.png"))):
        for p in paths:
            cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    m = ["--model", str(files["model"]), "--aus", "12"]

    code, out, _ = run(capsys, onset, apex, "--json", *m)
    rec = json.loads(out)
    reg = rec["registration"]
    assert code == 0 and reg["flag"].startswith("registration refused") and reg["applied"] is False
    assert "rotation" in reg["flag"] and isinstance(reg["residual"], float)
    assert rec["judged"] is False and rec["cannot_judge_code"] == "registration" and reg["flag"] in rec["cannot_judge"]
    code, out, _ = run(capsys, onset, apex, *m)
    assert code == 0 and "cannot judge: implausible registration: registration refused" in out
    code, out, _ = run(capsys, onset, apex, "--force", *m)
    assert code == 0 and "warning: pair: registration refused" in out and "predicted:" in out

    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"onset,apex,aus\n{onset.name},{apex.name},12\n{files['onset']},{files['apex']},12\n")
    code, out, err = run(capsys, "--pairs", pairs, "--model", files["model"])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and list(rows[0])[-3:] == ["registration_flag", "registration_residual", "error"]
    assert rows[0]["registration_flag"] == reg["flag"] and float(rows[0]["registration_residual"]) == reg["residual"]
    assert rows[0]["cannot_judge"].endswith(reg["flag"]) and rows[0]["emotion"] == ""
    assert rows[1]["registration_flag"] == "" and float(rows[1]["registration_residual"]) < 1.5  # the smile pair
    assert "warning: row 2: registration refused" in err
    code, out, _ = run(capsys, "--pairs", pairs, "--model", files["model"], "--json")
    assert json.loads(out.splitlines()[0])["registration"] == reg

    code, out, _ = run(capsys, clip, "--onset", "1", "--apex", "2", "--json", *m)
    assert code == 0 and json.loads(out)["registration"] == reg
    code, out, _ = run(capsys, clip, "--onset", "1", "--apex", "2", *m)
    assert code == 0 and "implausible registration: registration refused" in out
