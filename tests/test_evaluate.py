"""evaluate on hand-made run folders (metrics checked by hand), partial runs, seeds, oracle; ablation tables."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mertool.cli import main
from mertool.errors import MertoolError
from mertool.reports.ablate import NOT_IN_PAPER, load_table, variant_recipe
from mertool.reports.evaluate import ORACLE_LABEL, SELECT_LABEL, evaluate_run, evaluate_runs
from mertool.training.runs import write_predictions

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["a", "b", "c"]
# pooled: true 0 0 1 | 1 2 | 2 2 0, predicted 0 1 1 | 1 2 | 2 0 0
FOLDS = {"s1": ([0, 0, 1], [0, 1, 1]), "s2": ([1, 2], [1, 2]), "s3": ([2, 2, 0], [2, 0, 0])}


def make_run(path: Path, folds=FOLDS, oracle=None, classes=CLASSES, cache=None) -> Path:
    """A run folder as train-loso writes it, with chosen predictions (best-on-test ones under the previous
    release's name, predictions_oracle.csv: still read)."""
    (path / "folds").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({
        "format": "mertool-run", "version": 1, "classes": classes, "folds": list(folds),
        "fold_dirs": {s: s for s in folds}, "skipped_subjects": ["s9"],
        "cache": cache or {"path": "/data/c.h5", "fingerprint": "0000abcd", "dataset": "test"}}))
    k = len(classes)
    for s, (y, p) in folds.items():
        (path / "folds" / s).mkdir()
        probs = np.eye(k)[p] * 0.8 + 0.2 / k
        ids = [f"{s}_{i}" for i in range(len(y))]
        write_predictions(path / "folds" / s / "predictions.csv", ids, [s] * len(y), y, probs, classes)
        if oracle is not None and s in oracle:
            write_predictions(path / "folds" / s / "predictions_oracle.csv", ids, [s] * len(y), y,
                              np.eye(3)[oracle[s]], CLASSES)
    return path


def test_pooled_metrics_match_hand_computed(tmp_path):
    rep = evaluate_run(make_run(tmp_path / "r"))
    m = rep["metrics"]
    assert m["accuracy"] == pytest.approx(6 / 8)
    # class a: TP 2 FP 1 FN 1 -> 2/3; b: TP 2 FP 1 FN 0 -> 4/5; c: TP 2 FP 0 FN 1 -> 4/5
    assert m["uf1"] == pytest.approx((2 / 3 + 4 / 5 + 4 / 5) / 3)
    assert m["uar"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m["mean_subject_accuracy"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert [(f["subject"], f["n"], round(f["accuracy"], 4)) for f in rep["folds"]] == \
        [("s1", 3, 0.6667), ("s2", 2, 1.0), ("s3", 3, 0.6667)]
    assert rep["best_on_test"] is None and rep["skipped_subjects"] == ["s9"]
    assert rep["au_source"]["text"] == "AU source not recorded (unknown)"  # this folder has no recipe.yaml


def test_missing_folds_refused_unless_partial(tmp_path, capsys):
    run = make_run(tmp_path / "r")
    (run / "folds" / "s2" / "predictions.csv").unlink()
    with pytest.raises(MertoolError, match=r"1 of 3 folds have no predictions.csv: s2"):
        evaluate_run(run)
    assert main(["evaluate", str(run)]) == 2
    assert "s2" in capsys.readouterr().err
    rep = evaluate_run(run, partial=True)
    assert rep["missing"] == ["s2"] and rep["metrics"]["n"] == 6
    assert main(["evaluate", str(run), "--partial"]) == 0
    assert "PARTIAL: missing folds s2" in capsys.readouterr().out


def test_several_runs_mean_std_and_json(tmp_path, capsys):
    a = make_run(tmp_path / "seed0")
    b = make_run(tmp_path / "seed1", folds={s: (y, y) for s, (y, _) in FOLDS.items()})
    rep = evaluate_runs([a, b])
    acc = rep["aggregate"]["accuracy"]
    assert acc["mean"] == pytest.approx(0.875) and acc["std"] == pytest.approx(np.std([0.75, 1.0], ddof=1))
    png = tmp_path / "cm.png"
    assert main(["evaluate", str(a), str(b), "--json", "--png", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout holds the JSON and nothing else
    assert out["aggregate"]["uar"]["n"] == 2 and out["png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["evaluate", str(a), str(b)]) == 0
    assert "0.875 ± 0.177" in capsys.readouterr().out


def test_runs_of_different_recipes_are_compared_not_averaged(tmp_path, capsys):
    a, b, c = (make_run(tmp_path / n) for n in ("seed0", "seed1", "no_au"))
    a_recipe = "name: x\nmodel:\n  aus: true\ntrain:\n  seed: 0\n"
    (a / "recipe.yaml").write_text(a_recipe)
    (b / "recipe.yaml").write_text(a_recipe.replace("seed: 0", "seed: 1"))
    (c / "recipe.yaml").write_text(a_recipe.replace("aus: true", "aus: false"))
    assert evaluate_runs([a, b])["aggregate"]["accuracy"]["n"] == 2        # seeds only: mean ± std
    rep = evaluate_runs([a, c])
    # true/false, the spelling of older run folders, read as oracle/none
    assert rep["aggregate"] is None and rep["recipe_differences"] == {"model.aus": ["oracle", "none"]}
    assert main(["evaluate", str(a), str(c)]) == 0
    out = capsys.readouterr().out
    assert "recipes differ in model.aus: seed0=oracle, no_au=none" in out and "mean ± std (n=" not in out


def test_runs_on_different_caches_are_not_averaged(tmp_path, capsys):
    a = make_run(tmp_path / "seed0")
    b = make_run(tmp_path / "seed1", cache={"path": "/data/other.h5", "fingerprint": "ffff0000"})
    with pytest.raises(MertoolError, match=r"seed1 was trained on cache /data/other.h5 .*ffff0000.*seed0 .*0000abcd"):
        evaluate_runs([a, b])
    assert main(["evaluate", str(a), str(b)]) == 2
    c = make_run(tmp_path / "seed2")
    assert evaluate_runs([a, c])["aggregate"] is not None  # same cache content: averaged


CASME2 = ["happiness", "disgust", "repression", "surprise", "others"]


def test_casme2_run_is_placed_among_the_published_table1(tmp_path, capsys):
    folds = {"01": ([0, 1, 2, 3, 4], [0, 1, 2, 3, 3]), "02": ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])}  # 90 %
    run = make_run(tmp_path / "casme2", folds, classes=CASME2,
                   cache={"path": "/x.h5", "fingerprint": "1", "dataset": "casme2"})
    rep = evaluate_runs([run])
    pub = rep["published"]
    assert pub["of"] == 13 and pub["rank"] == 2  # below the paper's 94.35, above MMNet's 88.35
    names = [r["method"] for r in pub["rows"]]
    assert names[0].startswith("the paper") and names[2] == "MMNet"
    ours = pub["rows"][1]
    assert ours["ours"] and ours["accuracy"] == pytest.approx(0.9)
    assert ours["f1"] == pytest.approx(rep["runs"][0]["metrics"]["macro_f1"])
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "MMNet" in out and "as published; most with test-fold epoch selection" in out and "ours ranks 2 of 13" in out
    samm = make_run(tmp_path / "samm", folds, classes=CASME2, cache={"path": "/y.h5", "fingerprint": "2",
                                                                    "dataset": "samm"})
    assert evaluate_runs([samm])["published"] is None  # Table 1 is CASME II only


def test_best_on_test_only_when_every_fold_has_it(tmp_path, capsys):
    perfect = {s: y for s, (y, _) in FOLDS.items()}
    full = evaluate_run(make_run(tmp_path / "o", oracle=perfect))
    assert full["best_on_test"]["accuracy"] == 1.0 and full["best_on_test"]["label"] == SELECT_LABEL
    assert SELECT_LABEL == "best epoch chosen on the test subject" == ORACLE_LABEL  # the old name still imports
    assert full["metrics"]["accuracy"] == pytest.approx(0.75)  # never mixed into the main figure
    some = evaluate_run(make_run(tmp_path / "p", oracle={"s1": perfect["s1"]}))
    assert some["best_on_test"] is None and "1 of 3 folds" in some["best_on_test_note"]
    assert main(["evaluate", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert out.index("Pooled leave-one-subject-out results") < out.index("BEST EPOCH CHOSEN ON THE TEST") \
        < out.index("NOT AN ESTIMATE")  # the title wraps on a narrow table
    assert (tmp_path / "o" / "confusion.png").is_file()


def test_bad_run_folders(tmp_path):
    with pytest.raises(MertoolError, match="not a mertool run folder"):
        evaluate_run(tmp_path)
    run = make_run(tmp_path / "r")
    path = run / "folds" / "s1" / "predictions.csv"
    rows = list(csv.reader(path.open()))
    rows[2][3] = "zebra"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(MertoolError, match=r"s1/predictions.csv: row 3: predicted = 'zebra'"):
        evaluate_run(run)


# ------------------------------------------------------------------------------------------------ ablate


def test_every_table_variant_resolves_to_a_distinct_recipe():
    for n in range(2, 8):
        table = load_table(ROOT / "recipes" / "ablations" / f"table{n}.yaml")
        assert set(table.base) == {"casme2", "samm", "megc2019"} and len(table.variants) >= 2
        models = []
        for v in table.variants:
            r = variant_recipe(table, v, table.base["casme2"])
            for ds in ("casme2", "samm"):  # the paper's numbers, or none where the paper has no such row
                assert set(v.paper[ds]) == {"accuracy", "f1"}
                assert all(value is None or 0 < value <= 100 for value in v.paper[ds].values())
            models.append(r["model"])
        assert len({json.dumps(m, sort_keys=True) for m in models}) == len(models), table.path


def test_ablation_tables_hold_the_papers_numbers(capsys):
    """Spot checks against the paper: the full model's row, Table 2's missing row, Table 7's own F1."""
    def paper(n, name):
        return next(v.paper for v in load_table(ROOT / "recipes" / "ablations" / f"table{n}.yaml").variants
                    if v.name == name)

    for n, name in ((3, "vertical"), (4, "continuous"), (5, "swin"), (6, "dual"), (2, "full")):
        assert paper(n, name) == {"casme2": {"accuracy": 94.35, "f1": 0.9402}, "samm": {"accuracy": 86.73, "f1": 0.8171}}
    assert paper(7, "au")["casme2"] == {"accuracy": 94.35, "f1": 0.9112}  # what Table 7 prints
    assert paper(2, "baseline")["samm"] == {"accuracy": 73.53, "f1": 0.6345}
    assert paper(4, "independent")["casme2"] == {"accuracy": 91.94, "f1": 0.921}
    assert paper(2, "cva-fpf")["casme2"] == {"accuracy": None, "f1": None}
    assert main(["ablate", "ablations/table2", "--list"]) == 0
    out = capsys.readouterr().out
    assert "81.12" in out and "0.7582" in out and "73.53" in out and NOT_IN_PAPER in out


def test_table_file_errors(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("title: x\nbase: {casme2: x.yaml}\nvariants:\n  - {name: a, modle: {aus: false}}\n")
    with pytest.raises(MertoolError, match=r"variants\[0\]: unknown key\(s\) modle"):
        load_table(bad)
    bad.write_text("title: x\nvariants: []\nrows: 3\n")
    with pytest.raises(MertoolError, match="unknown key 'rows'"):
        load_table(bad)


@pytest.mark.slow
def test_ablate_runs_variants_and_writes_the_table(tmp_path, synthetic_cache, capsys):
    small = ["data.image_size=64", "model.width=0.25", "model.fpf=none", "train.epochs=1", "augment.crop_padding=4"]
    sets = [a for s in small for a in ("--set", s)]
    assert main(["ablate", "ablations/table7", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "Without AU" in listed and "With AU" in listed
    args = ["ablate", "ablations/table7", "--cache", str(synthetic_cache), "--out", str(tmp_path), "--device",
            "cpu", "--quiet"] + sets
    assert main(args + ["--subjects", "01,02"]) == 0
    assert "2/4 (partial)" in (tmp_path / "table7" / "table.md").read_text()
    assert main(args) == 0  # the rest of the folds; the finished ones are skipped
    md = (tmp_path / "table7" / "table.md").read_text()
    assert "Without AU" in md and "With AU" in md and "89.52" in md and "0.9014" in md and "partial" not in md
    rows = list(csv.DictReader((tmp_path / "table7" / "table.csv").open()))
    assert [r["variant"] for r in rows] == ["no-au", "au"] and all(r["folds"] == "4/4" for r in rows)
    # each row says what its runs read as the test clips' AUs, in words
    assert " AU input |" in md.splitlines()[2]
    assert [r["au_input"] for r in rows] == ["images only", "reads the test clips' hand-coded AUs (as the paper)"]
    for r in rows:
        run = evaluate_run(tmp_path / "table7" / r["variant"])
        assert float(r["accuracy"]) == pytest.approx(run["metrics"]["accuracy"])
    assert (tmp_path / "table7" / "no-au" / "folds" / "01" / "checkpoint.pt").is_file()
    assert main(["ablate", "ablations/table7"]) == 2
    assert "--cache FILE is required" in capsys.readouterr().err


def test_no_standing_for_synthetic_data_and_reports_name_the_au_source(tmp_path, capsys):
    """A cache made from `mertool synth` data in CASME II's layout is not ranked against the paper's CASME II table;
    every report names the run's AU input in words (evaluate text and JSON)."""
    from mertool.recipe import dump_recipe, load_recipe

    five = ["happiness", "disgust", "repression", "surprise", "others"]
    folds = {"s1": ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]), "s2": ([0, 1], [0, 0])}
    real = make_run(tmp_path / "real", folds, classes=five,
                    cache={"path": "/x.h5", "fingerprint": "1", "dataset": "casme2"})
    synth = make_run(tmp_path / "synth", folds, classes=five,
                     cache={"path": "/y.h5", "fingerprint": "2", "dataset": "casme2", "synthetic": True})
    for run, extra in ((real, ["model.aus=estimated"]), (synth, ["train.test_aus=thresholded"])):
        (run / "recipe.yaml").write_text(dump_recipe(load_recipe("casme2", extra)))
    assert evaluate_runs([real])["published"]["au_source"] == "AUs estimated by the model"
    assert evaluate_runs([synth])["published"] is None
    assert main(["evaluate", str(synth)]) == 0
    out = capsys.readouterr().out
    assert "ours ranks" not in out and "AU input: trained on hand-coded AUs, tested on thresholded estimates" in out
    assert main(["evaluate", str(real), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"][0]["au_source"] == {"model_aus": "estimated", "test_aus": "hand-coded",
                                              "text": "AUs estimated by the model"}
    assert report["published"]["rows"][-1]["method"].endswith("AUs estimated by the model)") or any(
        r["ours"] and "AUs estimated by the model" in r["method"] for r in report["published"]["rows"])
