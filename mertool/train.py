"""Leave-one-subject-out training: one fold per held-out subject, a fixed schedule, the last epoch as the result.

Run folder (every file written through a temporary name and renamed):
  RUN/recipe.yaml                 the resolved recipe (a re-run with a different recipe is refused)
  RUN/run.json                    classes, planned folds, skipped subjects, dropped emotions, cache fingerprint
  RUN/env.json                    versions, device, seed, git commit, command line (first invocation)
  RUN/folds/<subject>/log.jsonl   one line per epoch: loss, train accuracy, lr, seconds (rewritten each epoch)
  RUN/folds/<subject>/checkpoint.pt, fold.json, [predictions_oracle.csv], predictions.csv
  RUN/final/model.pt              with --final: one model trained on every subject (what `predict` loads)
A fold is done when its predictions.csv exists (written last); re-running skips done folds, so kill -9 loses only
the fold in progress, and `subjects=` shards let many machines fill one run folder without sharing a file.

`select="oracle"` additionally records, per fold, the epoch with the best accuracy on the held-out subject. That
is test-set selection (what published MER code does), so it lives in separate files labelled ORACLE_LABEL and is
never the default or mixed into the main figures.
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
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mertool import __version__
from mertool.data import MERData, augment_pair, load_dataset, make_batches, to_float
from mertool.errors import MertoolError
from mertool.evaluate import ORACLE_LABEL
from mertool.recipe import atomic_write_text, dump_recipe, recipe_diff

CHECKPOINT_FORMAT = "mertool-checkpoint"
CHECKPOINT_VERSION = 1
FINAL = "__final__"


# ----------------------------------------------------------------------------------------------- device and seeds

def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; asking for an absent CUDA device is a user error."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MertoolError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MertoolError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise MertoolError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto")
    return device


def setup_device(device: torch.device) -> None:
    """Fast kernels on CUDA: cuDNN autotuning for the fixed input size, TF32 for the fp32 parts."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def fold_seed(seed: int, subject: str) -> int:
    """A fold's seed depends on the run seed and the subject only, so shards and reruns draw the same numbers."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(subject).encode())) % (2**63 - 1)


def _autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)


# ------------------------------------------------------------------------------------------------------ checkpoints

def make_checkpoint(model: torch.nn.Module, recipe: dict, classes: list[str]) -> dict:
    """The checkpoint dict of DESIGN.md: loadable with torch.load(weights_only=True)."""
    from mertool.models import model_config_dict

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    cfg = model_config_dict(recipe["model"])
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model_config": cfg,
            "classes": list(classes), "recipe": recipe, "state_dict": state,
            "image_size": int(recipe["data"]["image_size"]), "uses_aus": bool(cfg.get("aus", True))}


def save_checkpoint(ckpt: dict, path: str | Path) -> Path:
    """torch.save through a temporary name."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def resolve_model_path(path: str | Path) -> Path:
    """A checkpoint file, or a run folder -> its final model (RUN/final/model.pt)."""
    path = Path(path)
    if path.is_dir():
        final = path / "final" / "model.pt"
        if final.is_file():
            return final
        raise MertoolError(f"{path}: run folder has no final/model.pt; train it with `train-loso --final`, "
                           f"or name a fold's checkpoint ({path}/folds/<subject>/checkpoint.pt)")
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
        model = build_model(ckpt["model_config"], load_weights=False)  # pretrained files need not exist here
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise MertoolError(f"{path}: damaged mertool checkpoint ({reason})") from None
    return model.to(device).eval(), ckpt


# ------------------------------------------------------------------------------------------------- file helpers

def _atomic_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_predictions(path: Path, sample_ids, subjects, labels, probs: np.ndarray, classes: list[str]) -> None:
    """predictions CSV: sample_id, subject, true, predicted, p_<class>... (atomic)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sample_id", "subject", "true", "predicted"] + [f"p_{c}" for c in classes])
    pred = probs.argmax(1)
    for sid, subj, y, p, row in zip(sample_ids, subjects, labels, pred, probs):
        w.writerow([sid, subj, classes[int(y)], classes[int(p)]] + [f"{v:.6f}" for v in row])
    atomic_write_text(path, buf.getvalue())


def fold_dirname(subject: str) -> str:
    """A subject name as a folder name (characters other than letters, digits, '.', '-', '_' become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(subject)) or "_"


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def git_commit() -> str | None:
    """The source tree's commit (with '+dirty' when it has uncommitted changes), or None outside git."""
    root = Path(__file__).resolve().parents[1]
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


def data_fingerprint(data: MERData) -> str:
    """crc32 over the samples a run uses (ids, subjects, labels, frames): a resumed run must see the same data."""
    crc = 0
    for text in ("\n".join(data.sample_ids), "\n".join(data.subjects)):
        crc = zlib.crc32(text.encode(), crc)
    for t in (data.labels, data.aus, data.onset, data.apex):
        crc = zlib.crc32(t.cpu().contiguous().numpy().tobytes(), crc)
    return f"{crc:08x}"


# ----------------------------------------------------------------------------------------------------- one fold

@dataclass
class FoldResult:
    """What one fold produced (also written to its folder)."""

    subject: str
    n_train: int
    n_test: int
    seconds: float
    log: list[dict]
    accuracy: float | None                   # last epoch on the held-out subject (None for the final model)
    probs: np.ndarray | None = None          # n_test x K
    labels: np.ndarray | None = None
    oracle: dict | None = None               # {"epoch", "accuracy", "label"} with select="oracle"
    model: torch.nn.Module | None = field(default=None, repr=False)


def split_fold(subjects: np.ndarray, test_subject: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Train and test sample indices; raises if the held-out subject leaks into training (it must not)."""
    test_mask = (subjects == test_subject) if test_subject is not None else np.zeros(len(subjects), bool)
    train_idx, test_idx = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    leaked = set(subjects[train_idx]) & set(subjects[test_idx])
    if leaked or (test_subject is not None and test_subject in set(subjects[train_idx])):
        raise RuntimeError(f"fold {test_subject}: held-out subject(s) {sorted(leaked)} found in training data")
    if test_subject is not None and len(test_idx) == 0:
        raise MertoolError(f"fold {test_subject}: no sample of this subject under the recipe's classes")
    if len(train_idx) < 2:
        raise MertoolError(f"fold {test_subject}: {len(train_idx)} training sample(s); need at least 2")
    return train_idx, test_idx


def _batch(data: MERData, idx: torch.Tensor, aug: dict | None, gen, channels_last: bool):
    """Gather a batch on the device, uint8 -> float, augment (one draw per sample, shared by onset and apex)."""
    onset, apex = to_float(data.onset[idx]), to_float(data.apex[idx])
    if aug is not None:
        onset, apex = augment_pair(onset, apex, hflip=aug["hflip"], crop_padding=int(aug["crop_padding"]),
                                   rotation=aug["rotation"], generator=gen)
    if channels_last:
        onset = onset.contiguous(memory_format=torch.channels_last)
        apex = apex.contiguous(memory_format=torch.channels_last)
    return onset, apex, data.aus[idx], data.labels[idx]


@torch.no_grad()
def predict_probs(model: torch.nn.Module, data: MERData, idx: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Class probabilities (float32, on the data's device) for the samples idx, model in eval mode."""
    model.eval()
    if len(idx) == 0:
        return torch.empty((0, len(data.classes)), device=data.device)
    channels_last = data.device.type == "cuda"
    out = []
    for chunk in torch.split(idx, batch_size):
        onset, apex, aus, _ = _batch(data, chunk, None, None, channels_last)
        with _autocast(data.device):
            logits = model(onset, apex, aus)
        out.append(logits.float().softmax(1))
    return torch.cat(out)


def _train_epoch(model, opt, data: MERData, order: torch.Tensor, tr: dict, aug: dict, gen) -> tuple:
    """One pass over the training samples with gradient accumulation; returns device tensors (no host sync)."""
    model.train()
    dev = data.device
    channels_last = dev.type == "cuda"
    batches = make_batches(order, int(tr["batch_size"]))
    accum = int(tr["accum_steps"])
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    for g in range(0, len(batches), accum):
        group = batches[g:g + accum]
        total = sum(len(b) for b in group)  # host ints: batch sizes are known without a sync
        for idx in group:
            onset, apex, aus, y = _batch(data, idx, aug, gen, channels_last)
            with _autocast(dev):
                logits = model(onset, apex, aus)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=float(tr["label_smoothing"]))
            # weight by batch share, so an accumulated group equals one batch of `total` samples
            (loss * (len(idx) / total)).backward()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return loss_sum, correct


def _optimizer(model: torch.nn.Module, tr: dict, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; the fused kernel on CUDA."""
    kwargs = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(model.parameters(), lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"]),
                             **kwargs)


def lr_factor(epoch: int, gamma: float, decay_epochs: int) -> float:
    """Exponential decay for the first decay_epochs epochs, then constant."""
    return gamma ** min(epoch, decay_epochs)


def run_fold(data: MERData, recipe: dict, test_subject: str | None, fold_dir: str | Path | None = None, *,
             device: str | torch.device | None = None, select: str = "last", compile: bool = False,
             on_epoch: Callable[[int, int, dict], None] | None = None) -> FoldResult:
    """Train one fold (test_subject=None: every subject, the final model) and write its files to fold_dir.

    Importable on its own (benchmarks, parallel folds): data may already be on `device`; nothing else is global.
    """
    from mertool.models import build_model

    if select not in ("last", "oracle"):
        raise MertoolError(f"--select {select!r}: expected last or oracle")
    device = resolve_device(device) if device is not None else data.device
    setup_device(device)
    data = data.to(device)
    tr, aug = recipe["train"], recipe["augment"]
    seed = fold_seed(tr["seed"], test_subject if test_subject is not None else FINAL)
    train_np, test_np = split_fold(data.subjects, test_subject)
    fold_dir = Path(fold_dir) if fold_dir is not None else None
    if fold_dir is not None:
        _clear_fold(fold_dir)

    torch.manual_seed(seed)
    model = build_model(recipe["model"]).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, tr, device)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda e: lr_factor(e, float(tr["gamma"]), int(tr["decay_epochs"])))
    step_model = torch.compile(model) if compile else model
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)
    train_idx = torch.as_tensor(train_np, device=device)
    test_idx = torch.as_tensor(test_np, device=device)
    test_y = data.labels[test_idx]
    eval_bs = int(tr["eval_batch_size"])

    log: list[dict] = []
    oracle = None
    t_start = time.perf_counter()
    epochs = int(tr["epochs"])
    for epoch in range(epochs):
        t0 = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        order = train_idx[torch.randperm(len(train_idx), generator=order_gen).to(device)]
        loss_sum, correct = _train_epoch(step_model, opt, data, order, tr, aug, aug_gen)
        sched.step()
        loss_total, n_correct = torch.stack([loss_sum, correct.float()]).tolist()  # the epoch's one sync
        rec = {"epoch": epoch + 1, "loss": loss_total / len(train_np), "train_acc": n_correct / len(train_np),
               "lr": lr_now, "seconds": round(time.perf_counter() - t0, 4)}
        if select == "oracle" and len(test_np):
            probs = predict_probs(step_model, data, test_idx, eval_bs)
            acc = (probs.argmax(1) == test_y).sum().item() / len(test_np)
            rec["oracle_test_acc"] = acc
            if oracle is None or acc > oracle["accuracy"]:  # earliest best epoch
                oracle = {"epoch": epoch + 1, "accuracy": acc, "label": ORACLE_LABEL, "probs": probs.cpu().numpy()}
        log.append(rec)
        if fold_dir is not None:
            atomic_write_text(fold_dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, rec)

    labels = test_y.cpu().numpy()
    probs = predict_probs(step_model, data, test_idx, eval_bs).cpu().numpy()
    accuracy = float((probs.argmax(1) == labels).mean()) if len(labels) else None
    seconds = time.perf_counter() - t_start
    result = FoldResult(subject=test_subject if test_subject is not None else FINAL, n_train=len(train_np),
                        n_test=len(test_np), seconds=seconds, log=log, accuracy=accuracy, probs=probs,
                        labels=labels, model=model,
                        oracle=None if oracle is None else {k: v for k, v in oracle.items() if k != "probs"})
    if fold_dir is not None:
        _write_fold(fold_dir, result, data, train_np, test_np, recipe, device, oracle)
    return result


FOLD_FILES = ("predictions.csv", "predictions_oracle.csv", "fold.json", "checkpoint.pt", "model.pt", "log.jsonl")


def _clear_fold(fold_dir: Path) -> None:
    """Start a fold afresh: files of an unfinished attempt (killed mid-fold) must not mix with the new ones."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    for name in FOLD_FILES:  # predictions.csv first: from here on the fold is not done
        (fold_dir / name).unlink(missing_ok=True)
    for stale in fold_dir.glob("*.tmp"):
        stale.unlink(missing_ok=True)


def _write_fold(fold_dir: Path, r: FoldResult, data: MERData, train_np: np.ndarray, test_np: np.ndarray,
                recipe: dict, device: torch.device, oracle: dict | None) -> None:
    """Checkpoint, summary, oracle file, then predictions.csv last: its presence marks the fold done."""
    ckpt = make_checkpoint(r.model, recipe, data.classes)
    final = r.subject == FINAL
    train_subjects = sorted(set(data.subjects[train_np]), key=_natural)  # what training actually saw
    summary = {"subject": None if final else r.subject, "n_train": r.n_train, "n_test": r.n_test,
               "train_subjects": train_subjects, "epochs": len(r.log), "seconds": round(r.seconds, 3),
               "accuracy_last_epoch": r.accuracy, "final_train_loss": r.log[-1]["loss"] if r.log else None,
               "device": device_info(device), "host": platform.node(),
               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "oracle": r.oracle}
    if final:
        _atomic_json(fold_dir / "fold.json", summary)
        save_checkpoint(ckpt, fold_dir / "model.pt")
        return
    save_checkpoint(ckpt, fold_dir / "checkpoint.pt")
    ids, subs = data.sample_ids[test_np], data.subjects[test_np]
    if oracle is not None:
        write_predictions(fold_dir / "predictions_oracle.csv", ids, subs, r.labels, oracle["probs"], data.classes)
    _atomic_json(fold_dir / "fold.json", summary)
    write_predictions(fold_dir / "predictions.csv", ids, subs, r.labels, r.probs, data.classes)


# -------------------------------------------------------------------------------------------------------- LOSO

@dataclass
class LosoPlan:
    """Which folds a cache gives under a recipe."""

    folds: list[str]                    # subjects with at least one sample of the recipe's classes
    skipped: list[str]                  # subjects in the cache with none
    fold_dirs: dict[str, str]


def plan_folds(data: MERData, cache_subjects) -> LosoPlan:
    """One fold per subject with samples; subjects whose samples all fall outside the class map are skipped."""
    folds = sorted(set(data.subjects), key=_natural)
    skipped = sorted(set(map(str, cache_subjects)) - set(folds), key=_natural)
    dirs = {s: fold_dirname(s) for s in folds}
    if len(set(dirs.values())) != len(dirs):
        raise MertoolError("subject names collide as folder names: " + ", ".join(sorted(dirs)))
    if len(folds) < 2:
        raise MertoolError(f"{data.source}: {len(folds)} subject(s) with samples of the recipe's classes; "
                           f"leave-one-subject-out needs at least 2")
    return LosoPlan(folds, skipped, dirs)


def select_subjects(plan: LosoPlan, subjects: str | list[str] | None) -> list[str]:
    """--subjects all|01,02 -> the folds to run here (unknown or skipped subjects are errors)."""
    if subjects is None or subjects == "all" or subjects == ["all"]:
        return list(plan.folds)
    wanted = [s.strip() for s in (subjects.split(",") if isinstance(subjects, str) else subjects) if s.strip()]
    for s in wanted:
        if s in plan.skipped:
            raise MertoolError(f"--subjects {s}: this subject has no sample of the recipe's classes (skipped)")
        if s not in plan.folds:
            raise MertoolError(f"--subjects {s}: no such subject; the cache has {', '.join(plan.folds)}")
    return [s for s in plan.folds if s in set(wanted)]


def fold_done(run_dir: Path, fold_dir: str) -> bool:
    """A fold is done when its predictions.csv exists."""
    return (Path(run_dir) / "folds" / fold_dir / "predictions.csv").is_file()


def prepare_run(out: Path, recipe: dict, data: MERData, plan: LosoPlan, device: torch.device) -> dict:
    """Create or reopen a run folder; refuse one made with another recipe, class map or cache content."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "folds").mkdir(exist_ok=True)
    import yaml

    normalised = yaml.safe_load(dump_recipe(recipe))
    run_info = {"format": "mertool-run", "version": 1, "classes": data.classes, "folds": plan.folds,
                "fold_dirs": plan.fold_dirs, "skipped_subjects": plan.skipped, "dropped_emotions": data.dropped,
                "class_counts": data.class_counts(), "n_samples": len(data),
                "cache": {"path": str(Path(data.source).resolve()), "fingerprint": data_fingerprint(data),
                          "dataset": data.dataset}}
    recipe_path, run_path = out / "recipe.yaml", out / "run.json"
    if recipe_path.is_file():
        old = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
        diffs = recipe_diff(old or {}, normalised)
        if diffs:
            raise MertoolError(f"{out}: run folder was made with a different recipe ({'; '.join(diffs[:4])}); "
                               f"use another --out, or the same recipe and --set values")
    else:
        atomic_write_text(recipe_path, dump_recipe(recipe))
    if run_path.is_file():
        old = json.loads(run_path.read_text(encoding="utf-8"))
        if old.get("cache", {}).get("fingerprint") != run_info["cache"]["fingerprint"]:
            raise MertoolError(f"{out}: run folder was made from different cache content "
                               f"({old.get('cache', {}).get('path')}); use another --out")
    else:
        _atomic_json(run_path, run_info)
    if not (out / "env.json").is_file():
        _atomic_json(out / "env.json", env_info(device, int(recipe["train"]["seed"])))
    return run_info


class _Progress:
    """Rich progress: a bar over folds, a bar over the current fold's epochs with its loss and accuracy."""

    def __init__(self, console, total_folds: int, enabled: bool = True):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = enabled
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                                 disable=not enabled, transient=False)
        self.folds = self.progress.add_task("folds", total=total_folds, info="")
        self.epochs = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_fold(self, name: str, epochs: int) -> None:
        if self.epochs is not None:
            self.progress.remove_task(self.epochs)
        self.epochs = self.progress.add_task(f"  {name}", total=epochs, info="")

    def on_epoch(self, epoch: int, epochs: int, rec: dict) -> None:
        info = f"loss {rec['loss']:.3f}  train acc {rec['train_acc']:.3f}"
        if "oracle_test_acc" in rec:
            info += f"  (oracle test acc {rec['oracle_test_acc']:.3f})"
        self.progress.update(self.epochs, completed=epoch, info=info)

    def end_fold(self, info: str) -> None:
        self.progress.update(self.folds, advance=1, info=info)
        self.progress.console.print(info)  # one line per fold also in logs of non-interactive jobs


def open_run(recipe: dict, cache, out: Path, subjects, device: torch.device, console) -> tuple:
    """Load the data under the recipe's class map, plan the folds, create or check the run folder, report skips.

    Returns (data on CPU, plan, subjects to run here); shared by train_loso and parallel runners.
    """
    from mertool.cache import CacheData, load_cache

    cache_data = cache if isinstance(cache, CacheData) else load_cache(cache)
    data = load_dataset(cache_data, recipe["data"]["classes"], recipe["data"]["image_size"],
                        recipe_name=recipe.get("name") or "recipe")
    plan = plan_folds(data, cache_data.subjects)
    todo = select_subjects(plan, subjects)
    prepare_run(Path(out), recipe, data, plan, device)
    if plan.skipped:
        console.print(f"skipped subjects (no sample of {', '.join(data.classes)}): {', '.join(plan.skipped)}")
    if data.dropped:
        console.print("dropped samples outside the class map: "
                      + ", ".join(f"{e!r} x{n}" for e, n in data.dropped.items()))
    return data, plan, todo


def train_loso(recipe: dict, cache, out, *, subjects=None, device="auto",
               select: str = "last", final: bool = False, compile: bool = False, console=None,
               progress: bool = True) -> dict:
    """Run (or resume) leave-one-subject-out training into `out` (cache: path or CacheData); returns the report."""
    from rich.console import Console

    console = console or Console(markup=False)
    if select not in ("last", "oracle"):
        raise MertoolError(f"--select {select!r}: expected last or oracle")
    device = resolve_device(device)
    out = Path(out)
    data, plan, todo = open_run(recipe, cache, out, subjects, device, console)
    console.print(f"{len(data)} samples, {len(plan.folds)} folds ({len(todo)} here), device {device}, "
                  f"run folder {out}")

    data = data.to(device)  # once: the whole dataset stays on the device for every fold
    epochs = int(recipe["train"]["epochs"])
    with _Progress(console, len(todo) + int(final), enabled=progress) as bar:
        for subject in todo:
            fdir = out / "folds" / plan.fold_dirs[subject]
            if fold_done(out, plan.fold_dirs[subject]):
                bar.end_fold(f"fold {subject}: done earlier, skipped")
                continue
            bar.start_fold(f"fold {subject}", epochs)
            r = run_fold(data, recipe, subject, fdir, select=select, compile=compile, on_epoch=bar.on_epoch)
            bar.end_fold(f"fold {subject}: accuracy {r.accuracy:.3f} on {r.n_test} samples, "
                         f"final train loss {r.log[-1]['loss']:.3f}, {r.seconds:.1f} s")
        if final:
            fdir = out / "final"
            if (fdir / "model.pt").is_file():
                bar.end_fold("final model: done earlier, skipped")
            else:
                bar.start_fold("final (all subjects)", epochs)
                run_fold(data, recipe, None, fdir, compile=compile, on_epoch=bar.on_epoch)
                bar.end_fold("final model saved")
    return print_run_summary(out, console)


def print_run_summary(out: Path, console) -> dict:
    """Per-fold table (accuracy, oracle apart, time) and pooled metrics when every fold is done."""
    from rich.table import Table

    from mertool.evaluate import evaluate_run

    report = evaluate_run(out, partial=True)
    table = Table(title=f"LOSO folds: {out}")
    for col in ("subject", "test samples", "accuracy (last epoch)", "seconds"):
        table.add_column(col, justify="right" if col != "subject" else "left")
    has_oracle = report.get("oracle") is not None
    if has_oracle:
        table.add_column(ORACLE_LABEL, justify="right")
    folds = {f["subject"]: f for f in report["folds"]}
    for subject in report["expected_folds"]:
        f = folds.get(subject)
        if f is None:
            table.add_row(subject, "-", "not run yet", "-", *(["-"] if has_oracle else []))
            continue
        row = [subject, str(f["n"]), f"{f['accuracy']:.3f}", f"{f['seconds']:.1f}" if f.get("seconds") else "-"]
        if has_oracle:
            o = f.get("oracle")
            row.append(f"{o['accuracy']:.3f} (epoch {o['epoch']})" if o else "-")
        table.add_row(*row)
    console.print(table)
    m = report.get("metrics")
    if report["missing"]:
        console.print(f"{len(report['expected_folds']) - len(report['missing'])}/{len(report['expected_folds'])} "
                      f"folds done; missing: {', '.join(report['missing'])}")
    if m:
        console.print(f"pooled over {m['n']} samples{' (partial)' if report['missing'] else ''}: accuracy "
                      f"{m['accuracy']:.4f}  UF1 {m['uf1']:.4f}  UAR {m['uar']:.4f}  macro F1 {m['macro_f1']:.4f}")
    if has_oracle:
        o = report["oracle"]
        console.print(f"{ORACLE_LABEL.upper()}, not a valid estimate: accuracy {o['accuracy']:.4f}  "
                      f"UF1 {o['uf1']:.4f}  UAR {o['uar']:.4f}")
    return report
