"""The run folder: its layout, plan, fold-done checks, checkpoints, predictions and records. Train, parallel,
evaluate, predict and the cluster executor read and write run folders only through this module.

Layout (every file written through a temporary name and renamed, mertool.files):
  RUN/recipe.yaml                 the resolved recipe (a re-run with a different recipe is refused)
  RUN/run.json                    classes, planned folds, skipped subjects, dropped emotions, cache fingerprint
  RUN/env.json                    versions, device, seed, git commit, command line (first invocation), and
                                  under "hosts" each host that wrote folds (its device, versions, command line)
  RUN/folds/<subject>/log.jsonl   one line per epoch: loss, train accuracy, lr, seconds (rewritten every few seconds)
  RUN/folds/<subject>/checkpoint.pt, fold.json, [predictions_best_on_test.csv], predictions.csv
                                  (--select best-on-test adds the epoch chosen on the test subject apart; runs of
                                  the previous release wrote it as predictions_oracle.csv, still read)
  RUN/final/model.pt, fold.json   with --final: one model trained on every subject (what `predict` loads)
A fold is done when its predictions.csv exists; it is written last, so kill -9 loses only the fold in progress,
and shards (`--subjects`, worker processes, cluster jobs) fill one run folder without sharing a fold's files.
One writer per fold: before a fold is trained it is claimed by exclusive creation of `folds/<subject>/claim.json`
(host, pid, start time, heartbeat, refreshed every HEARTBEAT_S by a thread of the claiming process). Another process
that finds a live claim moves on ("fold 03: being trained by host:pid"); a stale one (a dead pid on this host, or a
heartbeat older than STALE_AFTER_S) is taken over. clear_fold never touches a fold another writer holds.

Checkpoint format (`checkpoint.pt`, `model.pt`): a dict of tensors and plain values, readable with
`torch.load(path, weights_only=True)`:
  format "mertool-checkpoint", version 1,
  model_config   the model options (mertool.models.model_config_dict) that rebuild the network,
  classes        class names in output order,        recipe      the resolved recipe of the run,
  state_dict     the weights (on the CPU),           image_size  the input size in pixels,
  uses_aus       whether the model reads a given AU vector (model.aus = oracle),
  au_source      model.aus: oracle (AU codes are an input), estimated (its AU head predicts them) or none,
  alignment      how the training cache made its pairs (cache.pair_settings: method, size, padding, detector and
                 registration settings, every alignment attribute of the cache as it is) and the cache's
                 fingerprint; `predict` makes its pairs the same way. Checkpoints written before it have none.
  trained_on     (newer) datasets, subjects, samples per class, provenance (synthetic or not), AU source and the
                 training pairs' motion statistics (runs.training_record); older checkpoints lack it,
  calibration    (newer, final model) its temperature and how it was fitted (mertool.reports.calibration).

Predictions CSV: sample_id, subject, true, predicted, p_<class> (one probability column per class, 6 decimals);
a model with an AU head adds aus_true (the coded AUs, '?' where the dataset codes none) and au<N> (the head's
probability for each AU of the 21-AU vocabulary, 4 decimals).
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from mertool import __version__, files
from mertool.data.aus import AU_VOCAB
from mertool.errors import MertoolError

RECIPE = "recipe.yaml"
RUN = "run.json"
ENV = "env.json"
FOLDS = "folds"
FINAL_DIR = "final"
PREDICTIONS = "predictions.csv"
BEST_PREDICTIONS = "predictions_best_on_test.csv"
OLD_BEST_PREDICTIONS = "predictions_oracle.csv"   # the same file as the previous release named it (--select oracle)
FOLD_SUMMARY = "fold.json"
CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.pt"
LOG = "log.jsonl"
FOLD_FILES = (PREDICTIONS, BEST_PREDICTIONS, OLD_BEST_PREDICTIONS, FOLD_SUMMARY, CHECKPOINT, FINAL_MODEL,
              LOG)  # done-marker first
RUN_FORMAT = "mertool-run"
CHECKPOINT_FORMAT = "mertool-checkpoint"
CHECKPOINT_VERSION = 1
FINAL = "__final__"  # the subject name of the final model (trained on every subject)

# Test-fold epoch selection: besides the fixed schedule's last epoch, each fold's best epoch on its own test subject
# (what published MER code reports), recorded apart. The previous release spelt it `--select oracle`, which also
# named an AU source; "oracle" now means only the AU source.
SELECT_LAST = "last"
SELECT_BEST = "best-on-test"
SELECT_LABEL = "best epoch chosen on the test subject"
SELECT_CHOICES = (SELECT_LAST, SELECT_BEST)
OLD_SELECT = {"oracle": SELECT_BEST}
SELECT_DEPRECATION = ("--select oracle is deprecated (\"oracle\" now names only the AU source): it means --select "
                      "best-on-test, which the next release alone will accept")


def check_select(select: str) -> str:
    """--select value -> last | best-on-test; the previous release's `oracle` is read as best-on-test."""
    value = OLD_SELECT.get(str(select), str(select))
    if value not in SELECT_CHOICES:
        raise MertoolError(f"--select {select!r}: expected {' or '.join(SELECT_CHOICES)}")
    return value


def best_predictions_path(fold_dir: Path) -> Path | None:
    """The fold's best-on-test predictions file (either release's name), or None."""
    for name in (BEST_PREDICTIONS, OLD_BEST_PREDICTIONS):
        if (Path(fold_dir) / name).is_file():
            return Path(fold_dir) / name
    return None


def fold_best_on_test(summary: dict) -> dict | None:
    """fold.json's record of the best-on-test epoch (the previous release stored it under "oracle")."""
    return summary.get("best_on_test") or summary.get("oracle")


def run_au_source(run_dir: Path) -> dict:
    """What a run's classifier read as the test clips' AU input: model.aus and train.test_aus of its recipe.yaml,
    and the words reports print (aus.au_source_text); a run folder without its recipe reads as unknown."""
    import yaml

    from mertool.data.aus import au_source_text
    from mertool.models.config import au_source

    try:
        recipe = yaml.safe_load((Path(run_dir) / RECIPE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        recipe = {}
    aus = au_source((recipe.get("model") or {}).get("aus", "unknown"))
    test = (recipe.get("train") or {}).get("test_aus", "hand-coded")
    return {"model_aus": aus, "test_aus": test, "text": au_source_text(aus, test)}


# ---------------------------------------------------------------------------------------------------- layout

def fold_path(run_dir: str | Path, fold_dir: str) -> Path:
    """RUN/folds/<fold_dir>; fold_dir is the subject's folder name (LosoPlan.fold_dirs)."""
    return Path(run_dir) / FOLDS / fold_dir


def final_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / FINAL_DIR


def fold_done(run_dir: str | Path, fold_dir: str) -> bool:
    """A fold is done when its predictions.csv exists."""
    return (fold_path(run_dir, fold_dir) / PREDICTIONS).is_file()


def fold_folder_done(fold_dir: str | Path, final: bool = False) -> bool:
    """fold_done / final_done for a fold folder itself (predictions.csv; model.pt for the final model)."""
    return (Path(fold_dir) / (FINAL_MODEL if final else PREDICTIONS)).is_file()


def final_done(run_dir: str | Path) -> bool:
    return (final_path(run_dir) / FINAL_MODEL).is_file()


def is_run(path: str | Path) -> bool:
    return (Path(path) / RUN).is_file()


def fold_dirname(subject: str) -> str:
    """A subject name as a folder name (characters other than letters, digits, '.', '-', '_' become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(subject)) or "_"


def natural_key(s: str):
    """Sort key that orders '2' before '10'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


# ------------------------------------------------------------------------------------------------------ plans

@dataclass
class LosoPlan:
    """Which folds a cache gives under a recipe."""

    folds: list[str]                    # subjects with at least one sample of the recipe's classes
    skipped: list[str]                  # subjects in the cache with none
    fold_dirs: dict[str, str]


def plan_folds(data, cache_subjects) -> LosoPlan:
    """One fold per subject with samples; subjects whose samples all fall outside the class map are skipped."""
    folds = sorted(set(data.subjects), key=natural_key)
    skipped = sorted(set(map(str, cache_subjects)) - set(folds), key=natural_key)
    dirs = {s: fold_dirname(s) for s in folds}
    if len(set(dirs.values())) != len(dirs):
        raise MertoolError("subject names collide as folder names: " + ", ".join(sorted(dirs)))
    if len(folds) < 2:
        raise MertoolError(f"{data.source}: {len(folds)} subject(s) with samples of the recipe's classes; "
                           f"leave-one-subject-out needs at least 2")
    return LosoPlan(folds, skipped, dirs)


def subject_key(name: str) -> str:
    """A subject name as users and datasets spell it, reduced to one form: CASME II's folder `sub01` and its sheet's
    `01`, SAMM's `006` and `6`, SMIC's `s3` and `03` (a merged cache's `casme2_` prefix is kept)."""
    m = re.fullmatch(r"(?P<prefix>[^_]*_)?(?:sub|s)?0*(?P<n>\d+)", str(name).strip().lower())
    return f"{m['prefix'] or ''}{int(m['n'])}" if m else str(name).strip().lower()


def select_subjects(plan: LosoPlan, subjects: str | list[str] | None) -> list[str]:
    """--subjects all|01,02 -> the folds to run here; a dataset's folder spelling (sub01, 6 for 006) names the same
    subject. Unknown, ambiguous or skipped subjects are errors."""
    if subjects is None or subjects == "all" or subjects == ["all"]:
        return list(plan.folds)
    wanted = [s.strip() for s in (subjects.split(",") if isinstance(subjects, str) else subjects) if s.strip()]
    chosen = set()
    for s in wanted:
        matches = [s] if s in plan.folds or s in plan.skipped else \
            [x for x in plan.folds + plan.skipped if subject_key(x) == subject_key(s)]
        if len(matches) > 1:
            raise MertoolError(f"--subjects {s}: matches several subjects ({', '.join(matches)}); name one exactly")
        if not matches:
            raise MertoolError(f"--subjects {s}: no such subject; the cache has {', '.join(plan.folds)}")
        if matches[0] in plan.skipped:
            raise MertoolError(f"--subjects {s}: this subject has no sample of the recipe's classes (skipped)")
        chosen.add(matches[0])
    return [s for s in plan.folds if s in chosen]


def open_run(recipe: dict, cache, out: Path, subjects, device: torch.device, console, write: bool = True) -> tuple:
    """Load the data under the recipe's class map, plan the folds, create or check the run folder, report skips.

    Returns (data on CPU, plan, subjects to run here); shared by train_loso, the parallel and cluster runners.
    write=False (a dry run) checks an existing run folder and creates nothing.
    """
    from mertool.cache.store import CacheData, load_cache
    from mertool.training.dataset import count_lines, load_for_recipe

    cache_data = cache if isinstance(cache, CacheData) else load_cache(cache)
    data = load_for_recipe(cache_data, recipe)
    plan = plan_folds(data, cache_data.subjects)
    todo = select_subjects(plan, subjects)
    prepare_run(Path(out), recipe, data, plan, device, write=write)
    from mertool.cache.provenance import words

    console.print(f"data: {words(data.provenance)}" + (f" ({data.provenance['detected']})"
                                                       if data.provenance.get("detected") else ""))
    if plan.skipped:
        console.print(f"skipped subjects (no sample of {', '.join(data.classes)}): {', '.join(plan.skipped)}")
    if data.dropped:
        console.print("dropped samples outside the class map: "
                      + ", ".join(f"{e!r} x{n}" for e, n in data.dropped.items()))
    for reason, n in data.excluded.items():
        if n:
            console.print(f"left out: {n} samples, {reason}")
    from mertool.data.include import report_lines

    for line in report_lines(data.include):  # which official clips the cache lacks, which extra ones were left out
        console.print(line, soft_wrap=True)
    for line in count_lines(data, recipe["data"].get("official_counts") or {}):  # beside the published counts
        console.print(line)
    return data, plan, todo


def prepare_run(out: Path, recipe: dict, data, plan: LosoPlan, device: torch.device, write: bool = True) -> dict:
    """Create or reopen a run folder; refuse one made with another recipe, class map or cache content.
    write=False only checks a folder that exists (a dry run writes nothing)."""
    import yaml

    from mertool.recipe import dump_recipe, predates_hint, recipe_diff

    out = Path(out)
    if write:
        (out / FOLDS).mkdir(parents=True, exist_ok=True)
    normalised = yaml.safe_load(dump_recipe(recipe))
    run_info = {"format": RUN_FORMAT, "version": 1, "classes": data.classes, "folds": plan.folds,
                "fold_dirs": plan.fold_dirs, "skipped_subjects": plan.skipped, "dropped_emotions": data.dropped,
                "class_counts": data.class_counts(), "n_samples": len(data),
                "cache": {"path": str(Path(data.source).resolve()), "fingerprint": _fingerprint(data),
                          "dataset": data.dataset, "synthetic": data.provenance.get("synthetic")},
                "provenance": data.provenance,
                "subject_datasets": {str(s): str(d) for s, d in zip(data.subjects, data.datasets)},
                "excluded": data.excluded, "include": data.include}
    # Written once, by whichever of several shards starting at once gets there first; the others check theirs.
    recipe_path, run_path = out / RECIPE, out / RUN

    def create(path: Path, text: str) -> bool:
        return files.create_text(path, text) if write else not path.is_file()

    if not create(recipe_path, dump_recipe(recipe)):
        old = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
        diffs = recipe_diff(old or {}, normalised)
        if diffs:
            raise MertoolError(f"{out}: run folder was made with a different recipe ({'; '.join(diffs[:4])}); "
                               f"use another --out, or the same recipe and --set values"
                               f"{predates_hint(old or {}, normalised)}")
    if not create(run_path, json.dumps(run_info, indent=2, default=str) + "\n"):
        old = json.loads(run_path.read_text(encoding="utf-8"))
        if old.get("cache", {}).get("fingerprint") != run_info["cache"]["fingerprint"]:
            raise MertoolError(f"{out}: run folder was made from different cache content "
                               f"({old.get('cache', {}).get('path')}); use another --out")
    if write:
        record_env(out, device, int(recipe["train"]["seed"]))
    return run_info


def record_env(out: Path, device: torch.device, seed: int) -> dict:
    """env.json: the first invocation's environment, and under "hosts" one entry per host that wrote folds."""
    path = Path(out) / ENV
    env = env_info(device, seed)
    host = env["host"]
    with files.locked(path):
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else dict(env, hosts={})
        hosts = record.setdefault("hosts", {})
        if host not in hosts:
            hosts[host] = {k: env[k] for k in ("created", "device", "python", "torch", "git_commit", "argv")}
            files.write_json(path, record)
    return record


def read_run_info(run_dir: Path) -> dict:
    """RUN/run.json, checked to be a mertool run description."""
    path = Path(run_dir) / RUN
    if not path.is_file():
        raise MertoolError(f"{run_dir}: not a mertool run folder (no run.json; made by `mertool train-loso`)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MertoolError(f"{path}: unreadable run description ({exc})") from None
    if info.get("format") != RUN_FORMAT:
        raise MertoolError(f"{path}: not a mertool run description")
    return info


# ------------------------------------------------------------------------------------------------ fold claims

CLAIM = "claim.json"
HEARTBEAT_S = 30.0
# A claim whose heartbeat is this old is stale even on another host (a Slurm job killed with its node): 20 missed
# heartbeats, far beyond a loaded machine's or a shared filesystem's delays.
STALE_AFTER_S = 600.0


class FoldBusy(MertoolError):
    """The fold is held by another writer (`holder`, host:pid), or was finished by one meanwhile (`done`)."""

    def __init__(self, message: str, holder: str = "", done: bool = False):
        super().__init__(message)
        self.holder, self.done = holder, done


class FoldClaim:
    """This process's claim on one fold folder; a daemon thread refreshes its heartbeat until release()."""

    def __init__(self, fold_dir: Path, record: dict, heartbeat_s: float):
        self.fold_dir, self.record = Path(fold_dir), record
        self.path = self.fold_dir / CLAIM
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), name=f"claim {fold_dir.name}",
                                        daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if not self.held():
                return  # taken over as stale (we were paused past STALE_AFTER_S): the new holder's file stays
            self.record["heartbeat"] = time.time()
            try:
                files.write_json(self.path, self.record)
            except OSError:
                pass  # a missed heartbeat is retried; STALE_AFTER_S allows many

    def held(self) -> bool:
        """Whether the claim file is still ours."""
        return (read_claim(self.fold_dir) or {}).get("token") == self.record["token"]

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file if it is still ours."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self.held():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "FoldClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_claim(fold_dir: Path) -> dict | None:
    """The fold's claim record, or None when it has none (or a half-read one, which its writer is replacing)."""
    try:
        return json.loads((Path(fold_dir) / CLAIM).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def claim_holder(record: dict) -> str:
    return f"{record.get('host', '?')}:{record.get('pid', '?')}"


def claim_is_live(record: dict, stale_after_s: float = STALE_AFTER_S) -> bool:
    """A claim is live while its heartbeat is recent and, on this host, its process exists."""
    if time.time() - float(record.get("heartbeat") or 0) > stale_after_s:
        return False
    if record.get("host") == files.host_name():
        try:
            os.kill(int(record.get("pid", -1)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OverflowError, ValueError):
            pass  # another user's process (alive), or a pid this machine cannot have
    return True


def slurm_job_id() -> str | None:
    """This process's Slurm job as squeue names it (12_3 for an array task), or None outside Slurm."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def drop_claims_of_jobs(fold_dir: Path, jobs) -> bool:
    """Remove a fold's claim held by one of these Slurm jobs, which have all left the queue (a job killed on another
    node leaves a claim whose pid cannot be checked from here); True when one was removed."""
    record = read_claim(fold_dir)
    if record is None or record.get("slurm_job") not in set(jobs):
        return False
    (Path(fold_dir) / CLAIM).unlink(missing_ok=True)
    return True


def claim_fold(fold_dir: Path, name: str = "fold", heartbeat_s: float = HEARTBEAT_S,
               stale_after_s: float = STALE_AFTER_S) -> FoldClaim:
    """Claim a fold folder for this process, or raise FoldBusy naming its live holder. A stale claim is moved aside
    (rename: of several takers exactly one succeeds) and claimed afresh."""
    fold_dir = Path(fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):
        now = time.time()
        record = {"host": files.host_name(), "pid": os.getpid(), "started": now, "heartbeat": now,
                  "token": f"{files.host_name()}:{os.getpid()}:{now!r}:{threading.get_ident()}",
                  "slurm_job": slurm_job_id()}
        if files.create_text(fold_dir / CLAIM, json.dumps(record) + "\n"):
            return FoldClaim(fold_dir, record, heartbeat_s)
        other = read_claim(fold_dir)
        if other is None:
            time.sleep(0.05)  # its writer is replacing it (heartbeat) or just released it: look again
            continue
        if claim_is_live(other, stale_after_s):
            raise FoldBusy(f"{name}: being trained by {claim_holder(other)}", holder=claim_holder(other))
        stale = fold_dir / f"{CLAIM}.stale.{files.host_name()}.{os.getpid()}"
        try:
            os.rename(fold_dir / CLAIM, stale)  # one taker wins; the others find the winner's live claim next
        except FileNotFoundError:
            continue
        try:
            moved = json.loads(stale.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            moved = {}
        if moved.get("token") != other.get("token"):  # another taker's fresh claim, renamed in a race: restore it
            try:
                os.link(stale, fold_dir / CLAIM)
            except OSError:
                pass
        stale.unlink(missing_ok=True)
    raise FoldBusy(f"{name}: its claim file {fold_dir / CLAIM} keeps changing; another writer is at work")


# ------------------------------------------------------------------------------------------------ fold files

def clear_fold(fold_dir: Path, claim: FoldClaim | None = None) -> None:
    """Start a fold afresh: files of an unfinished attempt (killed mid-fold) must not mix with the new ones.

    Never touches a fold another writer holds: with a live claim that is not `claim`, FoldBusy is raised."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    other = read_claim(fold_dir)
    if other is not None and (claim is None or other.get("token") != claim.record["token"]) \
            and claim_is_live(other):
        raise FoldBusy(f"{fold_dir}: being trained by {claim_holder(other)}; not cleared", holder=claim_holder(other))
    for name in FOLD_FILES:  # predictions.csv first: from here on the fold is not done
        (fold_dir / name).unlink(missing_ok=True)
    for stale in fold_dir.glob("*.tmp"):
        stale.unlink(missing_ok=True)


def write_log(fold_dir: Path, log: list[dict]) -> None:
    """The fold's epoch log so far, one JSON line per epoch."""
    files.write_text(fold_dir / LOG, "".join(json.dumps(r) + "\n" for r in log))


def write_fold(fold_dir: Path, checkpoint: dict, summary: dict, *, sample_ids=None, subjects=None, labels=None,
               probs=None, best_probs=None, classes=None, final: bool = False, au_probs=None, au_true=None,
               au_known=None) -> None:
    """A finished fold: checkpoint, summary, best-on-test file, then predictions.csv last (its presence marks it
    done).
    The final model writes fold.json and model.pt only."""
    if final:
        files.write_json(fold_dir / FOLD_SUMMARY, summary)
        save_checkpoint(checkpoint, fold_dir / FINAL_MODEL)
        return
    save_checkpoint(checkpoint, fold_dir / CHECKPOINT)
    if best_probs is not None:
        write_predictions(fold_dir / BEST_PREDICTIONS, sample_ids, subjects, labels, best_probs, classes)
    files.write_json(fold_dir / FOLD_SUMMARY, summary)
    write_predictions(fold_dir / PREDICTIONS, sample_ids, subjects, labels, probs, classes, au_probs, au_true,
                      au_known)


def read_fold_summary(fold_dir: Path) -> dict:
    """fold.json, or {} when the fold has none."""
    path = fold_dir / FOLD_SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


# ------------------------------------------------------------------------------------------------ predictions

AU_COLUMNS = ["aus_true"] + [f"au{a}" for a in AU_VOCAB]  # after the class columns, for models with an AU head


def _predictions_header(classes: list[str]) -> list[str]:
    return ["sample_id", "subject", "true", "predicted"] + [f"p_{c}" for c in classes]


def write_predictions(path: Path, sample_ids, subjects, labels, probs: np.ndarray, classes: list[str],
                      au_probs: np.ndarray | None = None, au_true: np.ndarray | None = None,
                      au_known: np.ndarray | None = None) -> None:
    """predictions CSV: sample_id, subject, true, predicted, p_<class>...; with an AU head also aus_true (the
    cache's AU codes, '?' where the dataset codes none) and au1 ... au45 (the head's probabilities). Atomic."""
    from mertool.data.aus import bits_to_codes

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_predictions_header(classes) + (AU_COLUMNS if au_probs is not None else []))
    pred = probs.argmax(1)
    for i, (sid, subj, y, p, row) in enumerate(zip(sample_ids, subjects, labels, pred, probs)):
        extra = []
        if au_probs is not None:
            known = au_known is None or bool(au_known[i])
            extra = ["+".join(map(str, bits_to_codes(au_true[i]))) if known else "?"]
            extra += [f"{v:.4f}" for v in au_probs[i]]
        w.writerow([sid, subj, classes[int(y)], classes[int(p)]] + [f"{v:.6f}" for v in row] + extra)
    files.write_text(path, buf.getvalue())


def read_predictions(path: Path, classes: list[str]) -> dict:
    """One fold's predictions CSV -> arrays (sample ids, subjects, true and predicted class numbers, probabilities;
    with an AU head also au_true (N x 21, NaN rows where the dataset codes no AUs) and au_probs (N x 21))."""
    index = {c: i for i, c in enumerate(classes)}
    want = _predictions_header(classes)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise MertoolError(f"{path}: cannot read ({exc.strerror})") from None
    has_aus = bool(rows) and rows[0] == want + AU_COLUMNS
    if not rows or (rows[0] != want and not has_aus):
        raise MertoolError(f"{path}: header {rows[0] if rows else 'missing'}, expected {want} "
                           f"(optionally followed by {AU_COLUMNS[0]}, au1 ... au45)")
    ncol = len(rows[0])
    k = len(classes)
    ids, subs, y, p, probs, au_true, au_probs = [], [], [], [], [], [], []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != ncol:
            raise MertoolError(f"{path}: row {n} has {len(row)} fields, expected {ncol}")
        for col, value in (("true", row[2]), ("predicted", row[3])):
            if value not in index:
                raise MertoolError(f"{path}: row {n}: {col} = {value!r}, expected one of {', '.join(classes)}")
        try:
            probs.append([float(v) for v in row[4:4 + k]])
            if has_aus:
                au_probs.append([float(v) for v in row[5 + k:]])
        except ValueError:
            raise MertoolError(f"{path}: row {n}: probabilities must be numbers") from None
        if has_aus:
            au_true.append(_au_truth(row[4 + k], path, n))
        ids.append(row[0])
        subs.append(row[1])
        y.append(index[row[2]])
        p.append(index[row[3]])
    out = {"sample_id": ids, "subject": subs, "true": np.array(y, np.int64), "pred": np.array(p, np.int64),
           "probs": np.array(probs, np.float64).reshape(len(ids), len(classes)), "au_true": None, "au_probs": None}
    if has_aus:
        out["au_true"] = np.array(au_true, np.float64).reshape(len(ids), len(AU_VOCAB))
        out["au_probs"] = np.array(au_probs, np.float64).reshape(len(ids), len(AU_VOCAB))
    return out


def _au_truth(text: str, path: Path, row: int) -> list[float]:
    """aus_true cell ('1+2', '' for no AU active, '?' when the dataset codes none) -> 21 values, NaN if unknown."""
    if text.strip() == "?":
        return [float("nan")] * len(AU_VOCAB)
    try:
        codes = {int(c) for c in text.split("+") if c.strip()}
    except ValueError:
        raise MertoolError(f"{path}: row {row}: aus_true = {text!r}, expected AU codes such as 1+2 or ?") from None
    if codes - set(AU_VOCAB):
        raise MertoolError(f"{path}: row {row}: aus_true = {text!r} has codes outside the AU vocabulary")
    return [float(a in codes) for a in AU_VOCAB]


# ------------------------------------------------------------------------------------------------ checkpoints

def make_checkpoint(model: torch.nn.Module, recipe: dict, classes: list[str], pairs: dict | None = None,
                    trained_on: dict | None = None) -> dict:
    """The checkpoint dict described in this module's docstring; `pairs` is the training data's MERData.pairs."""
    from mertool.models import model_config_dict

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    cfg = model_config_dict(recipe["model"])
    ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model_config": cfg,
            "classes": list(classes), "recipe": recipe, "state_dict": state,
            "image_size": int(recipe["data"]["image_size"]), "uses_aus": cfg["aus"] == "oracle",
            "au_source": cfg["aus"], **({"alignment": dict(pairs)} if pairs else {})}
    if trained_on is not None:
        ckpt["trained_on"] = trained_on
    return ckpt


def training_record(data, train_idx: np.ndarray, au_source: str) -> dict:
    """What a model was trained on, for its checkpoint: datasets, subjects, samples per class, provenance
    (synthetic or not), the AU source, and the statistics of its training pairs' motion (mertool.predict.reject)."""
    from mertool.predict.reject import motion_stats

    labels = data.labels[torch.as_tensor(train_idx)].cpu().numpy()
    counts = np.bincount(labels, minlength=len(data.classes))
    datasets = sorted({str(d) for d in data.datasets[train_idx]} - {""}) or [data.dataset or "?"]
    idx = torch.as_tensor(train_idx, device=data.onset.device)
    return {"datasets": datasets, "subjects": sorted({str(s) for s in data.subjects[train_idx]}, key=natural_key),
            "n_samples": int(len(train_idx)), "class_counts": {c: int(n) for c, n in zip(data.classes, counts)},
            "synthetic": (data.provenance or {}).get("synthetic"), "provenance": data.provenance or {},
            "au_source": au_source, "cache": str(data.source),
            "motion": motion_stats(data.onset[idx], data.apex[idx])}


def read_checkpoint_field(path: str | Path, key: str):
    """One top-level field of a saved checkpoint (None when absent)."""
    return torch.load(path, map_location="cpu", weights_only=True).get(key)


def stamp_checkpoint(path: str | Path, **fields) -> None:
    """Add or replace top-level fields of a saved checkpoint (e.g. its calibration), atomically."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt.update(fields)
    save_checkpoint(ckpt, path)


def save_checkpoint(ckpt: dict, path: str | Path) -> Path:
    """torch.save through a temporary name."""
    with files.temporary_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def resolve_model_path(path: str | Path) -> Path:
    """A checkpoint file, or a run folder -> its final model (RUN/final/model.pt)."""
    path = Path(path)
    if path.is_dir():
        final = final_path(path) / FINAL_MODEL
        if final.is_file():
            return final
        raise MertoolError(f"{path}: run folder has no {FINAL_DIR}/{FINAL_MODEL}; train it with `train-loso "
                           f"--final`, or name a fold's checkpoint ({path}/{FOLDS}/<subject>/{CHECKPOINT})")
    if not path.is_file():
        raise MertoolError(f"{path}: no such checkpoint file")
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Checkpoint file or run folder -> (model in eval mode, checkpoint dict); foreign files give a clear error."""
    from mertool.models import build_model

    path = resolve_model_path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, truncated files all mean "not ours"
        reason = " ".join(str(exc).split())[:160]
        raise MertoolError(f"{path}: not a mertool checkpoint (cannot be read as one: {reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise MertoolError(f"{path}: not a mertool checkpoint (expected a file written by `mertool train-loso`)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise MertoolError(f"{path}: checkpoint version {ckpt.get('version')!r}, expected {CHECKPOINT_VERSION}")
    try:
        cfg = dict(ckpt["model_config"])
        if not any(k.startswith("au_head.") for k in ckpt["state_dict"]):
            cfg["au_head"] = False  # written before models had an AU head
        model = build_model(cfg, load_weights=False)  # pretrained files need not exist here
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise MertoolError(f"{path}: damaged mertool checkpoint ({reason})") from None
    return model.to(device).eval(), ckpt


# ---------------------------------------------------------------------------------------- env and fingerprint

def git_commit() -> str | None:
    """The source tree's commit (with '+dirty' when it has uncommitted changes), or None outside git."""
    root = Path(__file__).resolve().parents[2]   # mertool/training/runs.py -> the checkout
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_info(device: torch.device) -> dict:
    """What a run ran on."""
    info = {"type": device.type, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        info.update(name=torch.cuda.get_device_name(idx), cuda=torch.version.cuda,
                    capability=".".join(map(str, torch.cuda.get_device_capability(idx))))
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def env_info(device: torch.device, seed: int) -> dict:
    """Environment manifest saved as RUN/env.json."""
    import sklearn
    import timm
    import torchvision

    return {"mertool": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "host": platform.node(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
            "device": device_info(device), "seed": seed, "git_commit": git_commit(), "argv": sys.argv,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _fingerprint(data) -> str:
    """data_fingerprint, kept with the data's pair record so that each fold's checkpoint records it uncomputed."""
    fp = data_fingerprint(data)
    if isinstance(getattr(data, "pairs", None), dict):
        data.pairs["cache_fingerprint"] = fp
    return fp


def data_fingerprint(data) -> str:
    """crc32 over the samples a run uses (ids, subjects, labels, frames): a resumed run must see the same data."""
    crc = 0
    for text in ("\n".join(data.sample_ids), "\n".join(data.subjects)):
        crc = zlib.crc32(text.encode(), crc)
    for t in (data.labels, data.aus, data.onset, data.apex):
        crc = zlib.crc32(t.cpu().contiguous().numpy().tobytes(), crc)
    return f"{crc:08x}"
