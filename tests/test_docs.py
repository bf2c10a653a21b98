"""Tested documentation: every `$ mertool ...` line of a console block in README.md and docs/*.md runs here.

Each console block runs in order in its own copy of one small synthetic sandbox (a CASME II-layout data set made by
`mertool synth`, its cache, tiny trained runs, a face pair, a clip), so a block reads like a user's session: a command
may use what an earlier command of its block wrote. Every documented command is either

- in RUN: run as shown (plus, for training, the small settings in SMALL appended: a 32-px model and one epoch — later
  `--set`s win), its exit code and its key output lines checked; output lines the guide shows right under the command
  are checked too (numbers and `…` match anything); or
- in LISTED, with the reason it cannot run here: licensed data, a GPU, a Slurm cluster, or minutes of CPU time, then
  with the name of the test that covers it.

A documented command in neither list fails `test_every_documented_command_is_run_or_listed`, and an entry that no
longer matches a documented command fails too: rename an option in the code, and the docs' command stops working
here; rename it in the docs, and the list must follow.

Adding a command to the docs: write it as `$ mertool ...` in a ```console block, then add its text (comments and
extra spaces dropped, as `documented()` gives it) to RUN with the output lines that prove it worked, or to LISTED
with a reason. If it needs a file the sandbox lacks, add the file in `sandbox()`.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Appended to every training command that runs here: the documented recipes at a size that trains in seconds.
SMALL = ("--set", "data.image_size=32", "--set", "model.width=0.125", "--set", "model.window=2",
         "--set", "model.swin_heads=[1,1,1]", "--set", "model.mlp_hidden=16", "--set", "train.epochs=1",
         "--set", "train.decay_epochs=1", "--set", "train.batch_size=4", "--set", "train.accum_steps=1",
         "--quiet")


@dataclass(frozen=True)
class Run:
    expect: tuple[str, ...] = ()          # substrings of stdout + stderr that show the command did its work
    rc: int = 0
    small: bool = False                   # append SMALL (training commands)
    extra: tuple[str, ...] = ()           # other smaller settings appended
    subst: dict = field(default_factory=dict)  # documented text -> sandbox text (a real sample id, a local folder)
    files: tuple[str, ...] = ()           # files the command must have written
    hide: tuple[str, ...] = ()            # sandbox files moved away while it runs (the short form wants one cache)
    remove: tuple[str, ...] = ()          # sandbox files removed first (a run folder, to train it afresh)


ONE_CACHE = ("demo.h5", "samm.h5", "smic.h5")  # the short form finds casme2.h5 alone
LICENSED = "needs a licensed data set"
GPU = "needs CUDA GPUs"
SLURM = "needs a Slurm cluster"

RUN: dict[str, Run] = {
    # README: three paths
    "mertool preprocess CASME2/": Run(expect=("casme2.h5",), files=("casme2.h5",)),
    "mertool train-loso --subjects all": Run(small=True, expect=("recipe casme2", "runs/casme2-seed0"),
                                             hide=ONE_CACHE, files=("runs/casme2-seed0/folds/02/predictions.csv",)),
    "mertool evaluate runs/casme2-seed0": Run(expect=("UF1", "UAR", "confusion matrix picture")),
    "mertool train-loso casme2 --cache casme2.h5 --final": Run(small=True, files=("runs/casme2-seed0/final/model.pt",)),
    "mertool predict clip.mp4 --aus auto --model runs/casme2-seed0 --plot motion.png": Run(
        expect=("spotted: onset frame", "happiness", "thresholded at 0.5"), files=("motion.png",)),
    "mertool predict onset.jpg apex.jpg --aus 6+12 --model runs/casme2-seed0 --json": Run(
        expect=('"emotion"', '"aus_source_text"')),
    # training
    "mertool train-loso recipes/casme2.yaml --cache casme2.h5 --out runs/casme2-seed0 --final": Run(
        small=True, files=("runs/casme2-seed0/final/model.pt", "runs/casme2-seed0/recipe.yaml")),
    "mertool train-loso demo --cache demo.h5 --set train.epochs=5 --subjects 01,02": Run(
        small=True, files=("runs/demo-seed0/folds/01/predictions.csv", "runs/demo-seed0/folds/02/predictions.csv")),
    "mertool train-loso casme2 --cache casme2.h5 --select best-on-test": Run(
        small=True, expect=("BEST EPOCH CHOSEN ON THE TEST SUBJECT",), remove=("runs/casme2-seed0",)),
    # preprocessing and caches
    "mertool preprocess CASME2/ --out casme2.h5 --workers 2": Run(expect=("casme2.h5",), files=("casme2.h5.json",)),
    "mertool preprocess CASME2/ --no-align --out casme2-cropped.h5": Run(files=("casme2-cropped.h5",)),
    "mertool preprocess CASME2/ --register none --out casme2-unregistered.h5": Run(
        files=("casme2-unregistered.h5",)),
    "mertool cache info casme2.h5": Run(expect=("casme2",)),
    "mertool cache verify casme2.h5": Run(),
    "mertool cache show casme2.h5 01/EP02_01f --png ep.png": Run(subst={"01/EP02_01f": "0"}, files=("ep.png",)),
    "mertool cache merge casme2.h5 samm.h5 --out composite.h5": Run(files=("composite.h5",)),
    "mertool preprocess CASME2/ --out casme2-flow.h5 --flow tvl1": Run(
        expect=("flow: tvl1 (scikit-image", "on 10 pairs"), files=("casme2-flow.h5",)),
    "mertool cache add-flow casme2.h5 --flow tvl1": Run(expect=("tvl1 flow and strain for 10 pairs",)),
    "mertool preprocess demo_data --out demo-flow.h5 --flow tvl1": Run(  # after the block's `synth demo_data`
        expect=("flow: tvl1 (scikit-image", "on 10 pairs"), files=("demo-flow.h5",)),
    "mertool cache add-flow casme2.h5 --flow dis --replace": Run(expect=("(replacing tvl1 flow)",)),
    # evaluation and MEGC 2019 (samm.h5 and smic.h5 in the sandbox are synthetic caches of those data sets)
    "mertool evaluate runs/casme2-seed0 runs/casme2-seed1 runs/casme2-seed2 --json > results.json": Run(
        files=("results.json",)),
    "mertool evaluate runs/megc2019-seed0 --by-dataset": Run(expect=("casme2", "samm", "smic")),
    "mertool preprocess CASME2/ --out casme2.h5": Run(files=("casme2.h5.json",)),
    "mertool cache merge casme2.h5 samm.h5 smic.h5 --out megc2019.h5": Run(files=("megc2019.h5",)),
    "mertool train-loso megc2019 --cache megc2019.h5": Run(  # synthetic clips are not on the official list
        small=True, extra=("--set", "data.include="), files=("runs/megc2019-seed0/recipe.yaml",)),
    # ablations
    "mertool ablate recipes/ablations/table3.yaml --list": Run(expect=("94.35",)),
    "mertool ablate recipes/ablations/table2.yaml --cache casme2.h5 --out runs/": Run(
        small=True, extra=("--subjects", "01"), expect=("paper",)),
    # predict
    "mertool predict onset.jpg apex.jpg --aus auto --model runs/casme2-seed0": Run(
        expect=("happiness", "thresholded at 0.5")),
    "mertool predict onset.jpg apex.jpg --aus 6+12 --model runs/casme2-seed0": Run(expect=("happiness",)),
    "mertool predict onset.jpg apex.jpg --aus-from openface.csv --apex-frame 32 --model runs/casme2-seed0": Run(
        expect=("happiness",)),
    "mertool predict onset.jpg apex.jpg --aus none --model runs/casme2-seed0/final/model.pt --json": Run(
        expect=('"au_vector_empty": true',)),
    "mertool predict --pairs pairs.csv --model runs/casme2-seed0 --format jsonl": Run(expect=('"emotion"',)),
    "mertool predict clip.mp4 --aus none --model runs/casme2-seed0 --plot motion.png --explain why.png": Run(
        files=("motion.png", "why.png"), expect=("spotted: onset frame",)),
    "mertool predict frames_dir/ --onset 12 --apex 30 --aus 12 --model runs/casme2-seed0": Run(
        expect=("onset frame 12", "apex frame 30")),
    # synthetic data
    "mertool synth demo_data --subjects 8 --per-subject 20 --seed 0": Run(
        extra=("--subjects", "2", "--per-subject", "5", "--workers", "1", "--quiet"),
        files=("demo_data/synth.json",)),
    # spotting (intervals.csv and gt.csv in the sandbox: one TP, one FP, one FN)
    "mertool evaluate-spot intervals.csv --gt gt.csv --fps 30 --log megc_log.txt": Run(
        expect=("overall 1 2 2 0.5000 0.5000 0.5000", "MEGC log: megc_log.txt"), files=("megc_log.txt",)),
    # cluster: what --dry-run prints needs no cluster
    "mertool train-loso casme2 --cache /shared/casme2.h5 --executor slurm --dry-run": Run(
        small=True, subst={"/shared/casme2.h5": "casme2.h5"}, expect=("#SBATCH",), remove=("runs/casme2-seed0",)),
}

LISTED: dict[str, str] = {
    'mertool spot interview.mp4':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_s'
        'pot_command_timeline_csv_png_and_json runs it on a synthetic video',
    'mertool predict interview.mp4 --model runs/casme2-seed0':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_p'
        'redict_long_video_and_str',
    'mertool synth long_demo --long --subjects 4 --seconds 30':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py renders'
        ' 2 x 8 s in its fixture',
    'mertool spot-cache long_demo --out long_demo.spot.h5':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_c'
        'ache_holds_every_frame_the_truth_and_info',
    'mertool train-loso spot_demo --cache long_demo.spot.h5 --out runs/spot_demo --final':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_l'
        'earned_spotter_trains_loso_and_evaluates_the_megc_way',
    'mertool evaluate runs/spot_demo':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_l'
        'earned_spotter_trains_loso_and_evaluates_the_megc_way',
    'mertool evaluate runs/spot_demo --json':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_l'
        'earned_spotter_trains_loso_and_evaluates_the_megc_way',
    'mertool spot-cache /data/CASME_sq --out casme_sq.spot.h5 --workers 2':
        'needs a licensed data set (CAS(ME)^2)',
    'mertool spot-cache long_demo --out long_demo.spot.h5 --resume':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_a'
        'n_interrupted_cache_resumes_and_loses_nothing',
    'mertool cache info long_demo.spot.h5':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_c'
        'ache_holds_every_frame_the_truth_and_info',
    'mertool spot frames/ --fps 200 --out intervals.csv --json':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_s'
        'pot_command_timeline_csv_png_and_json',
    'mertool spot interview.mp4 --spotter runs/spot_demo --plot timeline.png':
        'minutes of CPU on long videos (every frame is tracked); tests/test_spotting_pipeline.py::test_s'
        'pot_command_timeline_csv_png_and_json',
    'mertool predict interview.mp4 --model runs/casme2-seed0 [--spotter runs/spot_demo] [--json] [--plot timeline.png]':
        'a synopsis, not a command; tests/test_spotting_pipeline.py::test_predict_long_video_and_str',
    "mertool preprocess SAMM/ --out samm.h5": LICENSED + " (SAMM); the sandbox's samm.h5 is a synthetic cache",
    "mertool preprocess SMIC/ --out smic.h5": LICENSED + " (SMIC-HS); the sandbox's smic.h5 is a synthetic cache",
    "mertool preprocess SAMM/ --dataset samm --sheet SAMM_Micro_FACS_Codes_v2.xlsx --resume": LICENSED + " (SAMM)",
    "mertool preprocess SMIC/ --smic-part HS --smic-apex spot --out smic.h5":
        LICENSED + " (SMIC); tests/test_megc.py::test_smic_preprocess_spots_the_apex runs it on a SMIC-layout tree",
    "mertool evaluate-spot intervals.csv --gt /data/CASME_sq": LICENSED + " (CAS(ME)^2); tests/test_longvideo.py reads "
                                                                "the real sheet where ../shared/realdata has it",
    "mertool evaluate-spot intervals.csv --gt SAMM_LongVideos_V2_Release.xlsx --json": LICENSED + " (SAMM Long Videos)",
    "mertool bench --device cpu": "about a minute at the paper's 224-px model on a CPU; "
                                  "tests/test_bench.py::test_bench_cli_json_only_on_stdout runs it on a small cache",
    "mertool bench --device cuda --loso --folds-per-device 4": GPU + " (tests/test_cuda.py, benchmarks/gpu_check.sh)",
    "mertool train-loso casme2 --cache casme2.h5 --devices cuda:0,cuda:1 --folds-per-device 4": GPU,
    "mertool demo --out demo_out": "4-5 minutes on 2 CPU cores; tests/test_synth.py::test_demo_end_to_end_small runs "
                                   "it on 3 subjects with a 1-epoch recipe",
    "mertool train-loso casme2 --cache /shared/casme2.h5 --executor slurm --slurm-partition gpu --slurm-time 60":
        SLURM + "; tests/test_slurm.py::test_train_loso_on_slurm_survives_a_killed_and_a_preempted_job",
    "mertool train-loso casme2 --cache /shared/casme2.h5 --out /shared/runs/casme2-seed0 --executor slurm "
    "--slurm-partition gpu --slurm-time 60 --slurm-opt account=mylab --slurm-opt mem=32G":
        SLURM + "; tests/test_cluster.py::test_folds_are_chunked_into_one_array",
    "mertool ablate ablations/table2 --cache /shared/casme2.h5 --out /shared/runs --seeds 0,1,2 --executor slurm "
    "--slurm-partition gpu --folds-per-device 4":
        SLURM + "; tests/test_cluster.py::test_ablation_grid_with_seeds_in_one_array_then_collect",
    "mertool ablate ablations/megc2019_baselines --cache demo-flow.h5 --out runs/ --folds-per-device 2":
        "about 20 minutes on 2 CPU cores (800 epochs a fold for STSTNet and OFF-ApexNet); tests/test_baselines.py::"
        "test_baselines_table_runs_through_ablate_on_a_flow_cache runs the table for one fold of one epoch",
    "mertool ablate ablations/table2 --out /shared/runs --collect":
        SLURM + " run to collect; tests/test_cluster.py::test_ablation_grid_with_seeds_in_one_array_then_collect",
}


# ------------------------------------------------------------------------------------------------ the documents

@dataclass
class Doc:
    where: str          # file:line
    command: str        # as `documented()` normalises it
    shown: list[str]    # output lines the guide shows under it
    block: int          # console block number across all documents


def _normalise(cmd: str) -> str:
    """Drop a trailing `# comment` and collapse spaces: the key under which RUN and LISTED name a command."""
    cmd = re.sub(r"\s+#\s.*$", "", cmd.strip())
    return " ".join(cmd.split())


def documented() -> list[Doc]:
    """Every `$ mertool ...` line of every ```console block (continuation lines joined), with its shown output."""
    docs: list[Doc] = []
    block = 0
    for path in DOCS:
        in_block = console = False
        pending: Doc | None = None
        cont: list[str] | None = None
        for n, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith("```"):
                if not in_block:
                    in_block, console = True, s == "```console"
                    block += 1
                else:
                    in_block = console = False
                pending = None
                continue
            if not (in_block and console):
                continue
            if cont is not None:
                cont.append(s.rstrip("\\").strip())
                if not s.endswith("\\"):
                    pending.command = _normalise(" ".join(cont))
                    docs.append(pending)
                    cont = None
                continue
            if s.startswith("$ "):
                pending = Doc(f"{path.relative_to(ROOT)}:{n}", "", [], block)
                if not s[2:].startswith("mertool "):
                    pending = None  # another program (make, python): not mertool's to test
                    continue
                if s.endswith("\\"):
                    cont = [s[2:].rstrip("\\").strip()]
                else:
                    pending.command = _normalise(s[2:])
                    docs.append(pending)
            elif pending is not None and s and not s.startswith("#"):
                pending.shown.append(s)
    return docs


def test_every_documented_command_is_run_or_listed():
    docs = documented()
    assert len(docs) > 20, "no console blocks found: did the docs move?"
    seen = {d.command for d in docs}
    missing = [f"{d.where}: {d.command}" for d in docs if d.command not in RUN and d.command not in LISTED]
    assert not missing, ("documented commands that tests/test_docs.py neither runs nor lists (add each to RUN or "
                         "LISTED):\n" + "\n".join(missing))
    stale = sorted((set(RUN) | set(LISTED)) - seen)
    assert not stale, "RUN/LISTED entries no documented command matches any more:\n" + "\n".join(stale)
    both = sorted(set(RUN) & set(LISTED))
    assert not both, f"in RUN and LISTED at once: {both}"
    assert all(reason.strip() for reason in LISTED.values())
    named = set()
    for reason in LISTED.values():  # "covered by tests/x.py::test_y" must name a test that exists
        named |= set(re.findall(r"tests/(\w+\.py)::(\w+)", reason.replace("' '", "")))
    gone = [f"tests/{f}::{name}" for f, name in sorted(named)
            if not (ROOT / "tests" / f).is_file() or f"def {name}(" not in (ROOT / "tests" / f).read_text()]
    assert not gone, f"LISTED names tests that do not exist: {gone}"


# -------------------------------------------------------------------------------------------------- the sandbox

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """What the documented commands name: a synthetic CASME II copy (CASME2/), its cache (casme2.h5, also as
    demo.h5), synthetic SAMM and SMIC caches, tiny trained runs (runs/casme2-seed0 with its final model, seeds 1
    and 2), a face pair, a clip as video and frame folder, an OpenFace CSV, a pairs CSV."""
    import cv2
    from conftest import make_synthetic_cache
    from mertool.cli import main
    from test_spot import smile_clip, write_folder, write_video

    d = tmp_path_factory.mktemp("docs_sandbox")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        def run(*argv):
            assert main(list(argv)) == 0, argv
        run("synth", "CASME2", "--subjects", "2", "--per-subject", "5", "--workers", "1", "--quiet")
        run("preprocess", "CASME2", "--out", "casme2.h5", "--workers", "1")
        shutil.copy2("casme2.h5", "demo.h5")
        make_synthetic_cache(d / "samm.h5", subjects=1, per_class=1, size=224, dataset="samm",
                             emotions=("anger", "contempt", "happiness", "surprise", "other"))
        make_synthetic_cache(d / "smic.h5", subjects=1, per_class=1, size=224, dataset="smic",
                             emotions=("positive", "negative", "surprise"))
        run("train-loso", "casme2", "--cache", "casme2.h5", "--final", *SMALL)
        for seed in ("1", "2"):
            run("train-loso", "casme2", "--cache", "casme2.h5", "--seed", seed, *SMALL)
        frames = smile_clip(n=36, apex=20)
        for name, i in (("onset.jpg", 0), ("apex.jpg", 20)):
            cv2.imwrite(name, cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR))
        write_video(frames, d / "clip.mp4")
        write_folder(frames, d / "frames_dir")
        aus = ["01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25", "26", "28",
               "45"]
        header = ["frame", "face_id", "timestamp", "confidence", "success"] + [f"AU{a}_r" for a in aus] + \
                 [f"AU{a}_c" for a in aus]
        rows = [",".join(header)]
        for f in range(1, 41):
            c = ["1" if a in ("06", "12") and f >= 25 else "0" for a in aus]
            rows.append(",".join([str(f), "0", f"{f / 30:.3f}", "0.98", "1"] + ["0.0"] * len(aus) + c))
        Path("openface.csv").write_text("\n".join(rows) + "\n")
        os.symlink(ROOT / "recipes", "recipes")  # a checkout's recipes/, for the commands that name recipe files
        Path("gt.csv").write_text("video,onset,offset,type\nv1,10,19,micro\nv1,100,180,macro\n")
        Path("intervals.csv").write_text("video,onset,offset,score\nv1,11,19,0.9\nv1,300,305,0.2\n")
        Path("pairs.csv").write_text("onset,apex,aus\nonset.jpg,apex.jpg,auto\nonset.jpg,apex.jpg,6+12\n")
    finally:
        os.chdir(cwd)
    return d


def _copy(src: Path, dst: Path) -> None:
    """A block's own copy of the sandbox: frames hard-linked (read only), everything mertool may rewrite copied."""
    def link_or_copy(a, b):
        if a.endswith((".jpg", ".png", ".mp4")):
            os.link(a, b)
        else:
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link_or_copy, symlinks=True)


def _shown_pattern(line: str) -> re.Pattern:
    """A shown output line as a pattern: numbers match any number, a sparkline any sparkline, `…` anything, spaces
    any spacing."""
    parts = re.split(r"(\d+(?:\.\d+)?|…|\s+|[▁▂▃▄▅▆▇█]+)", line)
    rx = ""
    for p in parts:
        if not p:
            continue
        if p == "…":
            rx += ".*"
        elif p[0] in "▁▂▃▄▅▆▇█":  # a sparkline: its shape is the data's
            rx += "[▁▂▃▄▅▆▇█]+"
        elif p.isspace():
            rx += r"\s+"
        elif re.fullmatch(r"\d+(?:\.\d+)?", p):
            rx += r"-?\d+(?:\.\d+)?"
        else:
            rx += re.escape(p)
    return re.compile(rx)


def _run_documented(doc: Doc, spec: Run, capsys) -> list[str]:
    """Run one documented command in the current folder; return what went wrong (empty when it worked)."""
    from mertool.cli import main

    cmd = doc.command
    for a, b in spec.subst.items():
        assert a in cmd, f"{doc.where}: substitution {a!r} not in the command"
        cmd = cmd.replace(a, b)
    for f in spec.remove:
        p = Path(f)
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    hidden = Path(".hidden")
    for f in spec.hide:
        hidden.mkdir(exist_ok=True)
        Path(f).rename(hidden / f)
    argv = shlex.split(cmd)
    target = None
    if ">" in argv:
        i = argv.index(">")
        argv, target = argv[:i], argv[i + 1]
    argv = argv[1:] + (list(SMALL) if spec.small else []) + list(spec.extra)
    capsys.readouterr()
    try:
        rc = main(argv)
    finally:
        for f in spec.hide:
            (hidden / f).rename(f)
    out, err = capsys.readouterr()
    if target:
        Path(target).write_text(out)
    text = out + err
    problems = []
    if rc != spec.rc:
        problems.append(f"exit code {rc}, expected {spec.rc}")
    flat = " ".join(text.split())
    for e in spec.expect:
        if e not in text and " ".join(e.split()) not in flat:
            problems.append(f"output lacks {e!r}")
    for line in doc.shown:
        if not _shown_pattern(line).search(flat):
            problems.append(f"output lacks the shown line {line!r}")
    for f in spec.files:
        if not Path(f).exists():
            problems.append(f"did not write {f}")
    if problems:
        return [f"{doc.where}: {doc.command}\n    " + "\n    ".join(problems) + "\n    output (end): "
                + text[-1500:].replace("\n", "\n      ")]
    return []


def test_documented_commands_run(sandbox, tmp_path, capsys):
    """Each console block in order, in its own copy of the sandbox; every RUN command must do what RUN says."""
    blocks: dict[int, list[Doc]] = {}
    for doc in documented():
        if doc.command in RUN:
            blocks.setdefault(doc.block, []).append(doc)
    failures: list[str] = []
    cwd = os.getcwd()
    try:
        for b, docs in blocks.items():
            work = tmp_path / f"block{b}"
            _copy(sandbox, work)
            os.chdir(work)
            for doc in docs:
                failures += _run_documented(doc, RUN[doc.command], capsys)
            os.chdir(cwd)
            shutil.rmtree(work)
    finally:
        os.chdir(cwd)
    assert not failures, "documented commands that do not work as shown:\n" + "\n".join(failures)


# ------------------------------------------------------------------------------------------------ the Python API

def test_api_examples_run(tmp_path, monkeypatch, capsys):
    """docs/api.md's ```python blocks, top to bottom in one namespace and one empty folder, as a reader runs them."""
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 4, "docs/api.md lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_example"}
    for i, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"docs/api.md example {i}", "exec"), namespace)
        except Exception as exc:  # name the example, not this line
            pytest.fail(f"docs/api.md example {i} failed: {type(exc).__name__}: {exc}\n{code}")
    printed = capsys.readouterr().out
    assert "10 clips" in printed and "casme2 10 of 10" in printed and "over 10 samples" in printed


# ------------------------------------------------------------------------------------------------ troubleshooting

def test_troubleshooting_covers_every_error_message():
    """docs/troubleshooting.md lists every MertoolError message the code can raise (tools/troubleshooting.py)."""
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import troubleshooting
    finally:
        sys.path.remove(str(ROOT / "tools"))
    found = troubleshooting.messages()
    assert len(found) > 100, "the message scan found too few MertoolError messages: did the code move?"
    missing = troubleshooting.missing()
    assert not missing, ("error messages docs/troubleshooting.md does not cover (add each with its cause and fix; "
                         "`python tools/troubleshooting.py --missing` lists them):\n"
                         + "\n".join(f"{m.where} ({m.function}): {m.template}" for m in missing))


# ------------------------------------------------------------------------------------------------------- links

def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, `-`, `_` kept), spaces -> -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = _slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


def test_links_between_the_guides_resolve():
    """Every relative link in README.md, CHANGELOG.md, CONTRIBUTING.md and docs/ names a file that exists and, with
    `#anchor`, a heading of that file: a renamed guide or heading fails here, not in a reader's browser."""
    bad = []
    for doc in [*DOCS, ROOT / "CHANGELOG.md", ROOT / "CONTRIBUTING.md"]:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
                continue
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            if not dest.exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{doc.relative_to(ROOT)}: {target}: no heading with that anchor in {dest.name}")
    assert not bad, "broken links:\n" + "\n".join(bad)


# ------------------------------------------------------------------------------------------------- command table

def test_every_command_is_in_the_readme_table():
    """The README's table of commands names every command the CLI has (enumerated from the Typer app), so a new
    command is found from the first page: a top-level command as `mertool NAME`, a subcommand in its group's row
    (`mertool cache info/verify/...`)."""
    import typer.main

    from mertool.cli import app

    table = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `mertool ")]
    assert table, "README.md has no table of commands"
    missing = []
    for name, cmd in sorted(typer.main.get_command(app).commands.items()):
        rows = [r for r in table if r.startswith(f"| `mertool {name} ") or r.startswith(f"| `mertool {name}`")]
        if not rows:
            missing.append(name)
            continue
        for sub in getattr(cmd, "commands", {}):
            first = rows[0].split("|")[1]
            if not re.search(rf"[ /]{re.escape(sub)}\b", first):
                missing.append(f"{name} {sub}")
    assert not missing, "commands missing from README.md's table of commands: " + ", ".join(missing)


def test_readme_stays_a_first_page():
    """Issue #22: the README is read in five minutes (about 200 lines); the manual lives in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; move detail into a guide under docs/"
    first_screen = "\n".join(lines[:40])
    assert "make demo" in first_screen and "your own video" in first_screen.lower(), \
        "the first screen should say how to see mertool work and how to run it on your own data"
