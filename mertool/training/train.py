"""Leave-one-subject-out training: one fold per held-out subject, a fixed schedule, the last epoch as the result.

`train_loso` -> `run_fold` -> `_train_epoch`: this module keeps the fold loop and the math; every file a run
writes (layout, plan, checkpoints, predictions, records) is handed to mertool.training.runs, which owns the run folder.

`select="best-on-test"` additionally records, per fold, the epoch with the best accuracy on the held-out subject.
That is test-set selection (what published MER code does), so it lives in separate files labelled
runs.SELECT_LABEL ("best epoch chosen on the test subject") and is never the default or mixed into the main figures.
"""
from __future__ import annotations

import math
import os
import platform
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mertool.errors import MertoolError
from mertool.text import plural
from mertool.training import runs
from mertool.training.dataset import MERData, augment_theta, make_batches, to_float, warp_flow, warp_pair
from mertool.training.runs import FINAL, SELECT_BEST, SELECT_LABEL, check_select, device_info, fold_done, \
    make_checkpoint, open_run


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
    """On CUDA: make `device` this process's current GPU (before any copy, so pinned-memory transfers do not open a
    context on GPU 0 too, which exclusive-process GPUs refuse), cuDNN autotuning for the fixed input sizes (off with
    MERTOOL_CUDNN_BENCHMARK=0, which `bench --loso` uses to measure its effect), TF32 for the fp32 parts."""
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = os.environ.get("MERTOOL_CUDNN_BENCHMARK", "1") != "0"
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def fold_seed(seed: int, subject: str) -> int:
    """A fold's seed depends on the run seed and the subject only, so shards and reruns draw the same numbers."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(subject).encode())) % (2**63 - 1)


def _autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)


# ----------------------------------------------------------------------------------------------------- one fold

class FoldDiverged(MertoolError):
    """A fold's loss became NaN or infinite: the fold stops, writes no predictions, and the other folds go on."""


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
    au_probs: np.ndarray | None = None       # n_test x 21 AU head probabilities (models with an AU head)
    labels: np.ndarray | None = None
    best_on_test: dict | None = None         # {"epoch", "accuracy", "label"} with select="best-on-test"
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
    """Gather a batch on the device, uint8 -> float, augment (one draw per sample, shared by onset and apex).

    Returns (onset, apex, AU bits, labels, flow); flow is None unless the data holds it (a flow-reading model), and
    then gets the same warp as the frames, its vectors turned with it (data.warp_flow). data.aus is NaN for the
    held-out subject when the model reads no hand-coded AUs (run_fold), so its codes cannot reach training or
    prediction unnoticed."""
    onset, apex = to_float(data.onset[idx]), to_float(data.apex[idx])
    flow = None if data.flow is None else data.flow[idx].float()
    if aug is not None:
        theta = augment_theta(len(idx), onset.shape[-1], hflip=aug["hflip"], crop_padding=int(aug["crop_padding"]),
                              rotation=aug["rotation"], generator=gen, device=onset.device) \
            if aug["hflip"] > 0 or aug["crop_padding"] > 0 or aug["rotation"] > 0 else None
        if theta is not None:
            onset, apex = warp_pair(onset, apex, theta)
            flow = None if flow is None else warp_flow(flow, theta)
    if channels_last:
        onset = onset.contiguous(memory_format=torch.channels_last)
        apex = apex.contiguous(memory_format=torch.channels_last)
    return onset, apex, data.aus[idx], data.labels[idx], flow


def _model_aus(model: torch.nn.Module, aus: torch.Tensor) -> torch.Tensor | None:
    """The AU input a model reads: the hand codes in oracle mode, nothing otherwise (it estimates or ignores them)."""
    return aus if _config(model).needs_aus else None


def _config(model: torch.nn.Module):
    return getattr(model, "_orig_mod", model).config  # torch.compile wraps the model


@torch.no_grad()
def predict_outputs(model: torch.nn.Module, data: MERData, idx: torch.Tensor, batch_size: int = 64,
                    pad: bool | None = None, thresholded: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class probabilities and AU probabilities (None without an AU head), float32 on the data's device.

    thresholded (train.test_aus): a model trained on hand-coded AUs reads its own AU head's estimate thresholded at
    0.5 instead of the samples' codes (two passes: the head's output, then the classifier on the 0/1 vector).

    pad (default: on CUDA) fills every chunk up to batch_size by repeating its first sample and drops those rows:
    each fold's held-out subject has its own size, and cuDNN autotuning would re-tune for every new batch shape.
    In eval mode BatchNorm uses its running statistics, so a sample's output does not depend on its batch-mates.
    """
    model.eval()
    has_head = _config(model).au_head
    if len(idx) == 0:
        empty = torch.empty((0, len(data.classes)), device=data.device)
        return empty, (torch.empty((0, data.aus.shape[1]), device=data.device) if has_head else None)
    channels_last = data.device.type == "cuda"
    pad = channels_last if pad is None else pad
    out, au_out = [], []
    for chunk in torch.split(idx, batch_size):
        n = len(chunk)
        if pad and n < batch_size:
            chunk = torch.cat([chunk, chunk[:1].expand(batch_size - n)])
        onset, apex, aus, _, flow = _batch(data, chunk, None, None, channels_last)
        with _autocast(data.device):
            if thresholded:
                _, au_logits = model(onset, apex, None, return_aus=True, estimate_aus=True, flow=flow)
                aus = (torch.sigmoid(au_logits.float()) >= 0.5).float()
                logits, au_logits = model(onset, apex, aus, return_aus=True, estimate_aus=False, flow=flow)
            else:
                logits, au_logits = model(onset, apex, _model_aus(model, aus), return_aus=True, flow=flow)
        out.append(logits[:n].float().softmax(1))
        if au_logits is not None:
            au_out.append(torch.sigmoid(au_logits[:n].float()))
    return torch.cat(out), (torch.cat(au_out) if au_out else None)


def predict_probs(model: torch.nn.Module, data: MERData, idx: torch.Tensor, batch_size: int = 64,
                  pad: bool | None = None, thresholded: bool = False) -> torch.Tensor:
    """Class probabilities (float32, on the data's device) for the samples idx, model in eval mode."""
    return predict_outputs(model, data, idx, batch_size, pad, thresholded)[0]


def _train_epoch(model, opt, data: MERData, order: torch.Tensor, tr: dict, aug: dict, gen) -> tuple:
    """One pass over the training samples with gradient accumulation; returns device tensors (no host sync)."""
    model.train()
    dev = data.device
    channels_last = dev.type == "cuda"
    batches = make_batches(order, int(tr["batch_size"]))
    accum = int(tr["accum_steps"])
    au_weight = float(tr["au_loss_weight"])
    loss_sum = torch.zeros((), device=dev)
    au_loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    for g in range(0, len(batches), accum):
        group = batches[g:g + accum]
        total = sum(len(b) for b in group)  # host ints: batch sizes are known without a sync
        for idx in group:
            onset, apex, aus, y, flow = _batch(data, idx, aug, gen, channels_last)
            with _autocast(dev):
                logits, au_logits = model(onset, apex, _model_aus(model, aus), return_aus=True, flow=flow)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=float(tr["label_smoothing"]))
            if au_logits is not None:
                au_loss = au_bce(au_logits, aus, data.au_known[idx])
                au_loss_sum += au_loss.detach() * len(idx)
                if au_weight > 0:
                    loss = loss + au_weight * au_loss
            # weight by batch share, so an accumulated group equals one batch of `total` samples
            (loss * (len(idx) / total)).backward()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return loss_sum, correct, au_loss_sum


def au_bce(au_logits: torch.Tensor, aus: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the AU head, averaged over AUs; samples whose AU codes are unknown count as 0."""
    # no nan_to_num: a hidden (NaN) code reaching the loss must poison it, not vanish (see hide_test_aus)
    per_sample = F.binary_cross_entropy_with_logits(au_logits.float(), aus.float(), reduction="none").mean(1)
    return torch.where(known, per_sample, torch.zeros_like(per_sample)).sum() / len(per_sample)


def hide_test_aus(data: MERData, test_idx: torch.Tensor, train_idx: torch.Tensor, subject: str | None) -> MERData:
    """The held-out subject's AU codes replaced by NaN for the whole fold, and checked absent from training.

    Used when the classifier reads no hand-coded AUs of the test subject (estimated / none, or an oracle model
    tested on its thresholded estimate, train.test_aus): the test subject's codes then take no
    part in its fold at all, and any code path that read them would turn a loss or a probability into NaN.
    """
    from dataclasses import replace

    aus = data.aus.clone()
    aus[test_idx] = float("nan")
    if torch.isnan(aus[train_idx]).any().item():
        raise RuntimeError(f"fold {subject}: the held-out subject's AU codes are in the training rows")
    return replace(data, aus=aus)


def _optimizer(model: torch.nn.Module, tr: dict, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, its fused kernel on CUDA and CPU alike: measured on the demo model (2.45 M parameters in 224 tensors,
    one CPU thread) a step took 10 ms fused against 49 ms with the per-tensor loop, a sixth of a training step."""
    return torch.optim.AdamW(model.parameters(), lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"]),
                             fused=device.type in ("cuda", "cpu"))


PAPER_LR = 8e-4   # AdamW's learning rate in the paper's schedule
LOG_EVERY_S = 2.0  # a fold's log.jsonl is rewritten at most this often (and after its first and last epoch)


def suggested_lr(lr: float) -> float:
    """A learning rate to try after a fold diverged at `lr`: a tenth of it, but never above the paper's 8e-4 (a
    diverged lr of 1e6 should not suggest 1e5)."""
    return min(lr / 10, PAPER_LR)


def lr_factor(epoch: int, gamma: float, decay_epochs: int) -> float:
    """Exponential decay for the first decay_epochs epochs, then constant."""
    return gamma ** min(epoch, decay_epochs)


def run_fold(data: MERData, recipe: dict, test_subject: str | None, fold_dir: str | Path | None = None, *,
             device: str | torch.device | None = None, select: str = "last", compile: bool = False,
             on_epoch: Callable[[int, int, dict], None] | None = None, skip_done: bool = False) -> FoldResult:
    """Train one fold (test_subject=None: every subject, the final model) and write its files to fold_dir.

    With a fold_dir the fold is claimed first (runs.claim_fold): one held by another writer raises runs.FoldBusy,
    and so, with skip_done, does one another writer finished between the caller's look and the claim.
    Importable on its own (benchmarks, parallel folds): data may already be on `device`; nothing else is global.
    """
    if fold_dir is None:
        return _train_fold(data, recipe, test_subject, None, device, select, compile, on_epoch)
    fold_dir = Path(fold_dir)
    name = "final model" if test_subject is None else f"fold {test_subject}"
    with runs.claim_fold(fold_dir, name) as claim:
        if skip_done and runs.fold_folder_done(fold_dir, final=test_subject is None):
            raise runs.FoldBusy(f"{name}: finished by another writer meanwhile", done=True)
        runs.clear_fold(fold_dir, claim)
        return _train_fold(data, recipe, test_subject, fold_dir, device, select, compile, on_epoch)


def _train_fold(data: MERData, recipe: dict, test_subject: str | None, fold_dir: Path | None, device, select: str,
                compile: bool, on_epoch) -> FoldResult:
    """run_fold's training and writing, once the fold folder is this process's."""
    from mertool.models import build_model

    select = check_select(select)
    device = resolve_device(device) if device is not None else data.device
    setup_device(device)
    data = data.to(device)
    tr, aug = recipe["train"], recipe["augment"]
    seed = fold_seed(tr["seed"], test_subject if test_subject is not None else FINAL)
    train_np, test_np = split_fold(data.subjects, test_subject)

    torch.manual_seed(seed)
    model = build_model(recipe["model"]).to(device)
    # train.test_aus thresholded: a model trained on hand codes is tested on its AU head's thresholded estimate
    thresholded = model.config.needs_aus and tr.get("test_aus", "hand-coded") == "thresholded"
    hidden_aus = (not model.config.needs_aus or thresholded) and test_subject is not None
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
    truth = data  # the cache's codes, for the predictions file (scoring, not training)
    if hidden_aus:
        data = hide_test_aus(data, test_idx, train_idx, test_subject)
    test_y = data.labels[test_idx]
    eval_bs = int(tr["eval_batch_size"])

    log: list[dict] = []
    best = None
    t_start = time.perf_counter()
    t_log = None  # when log.jsonl was last written
    epochs = int(tr["epochs"])
    for epoch in range(epochs):
        t0 = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        order = train_idx[torch.randperm(len(train_idx), generator=order_gen).to(device)]
        loss_sum, correct, au_loss_sum = _train_epoch(step_model, opt, data, order, tr, aug, aug_gen)
        sched.step()
        loss_total, n_correct, au_total = torch.stack(
            [loss_sum, correct.float(), au_loss_sum]).tolist()  # the epoch's one sync
        if not math.isfinite(loss_total + au_total):  # NaN probabilities would argmax to class 0, scored silently
            if fold_dir is not None:  # the epochs before the divergence, for the diagnosis
                runs.write_log(fold_dir, log)
            name = "final model" if test_subject is None else f"fold {test_subject}"
            raise FoldDiverged(f"{name}: training diverged at epoch {epoch + 1} of {epochs} (loss {loss_total}), no "
                               f"predictions written; the learning rate comes from train.lr = {tr['lr']:g}, "
                               f"train.gamma = {tr['gamma']:g}, train.decay_epochs = {tr['decay_epochs']}: lower "
                               f"train.lr (e.g. --set train.lr={suggested_lr(float(tr['lr'])):g})")
        rec = {"epoch": epoch + 1, "loss": loss_total / len(train_np), "train_acc": n_correct / len(train_np),
               "lr": lr_now, "seconds": round(time.perf_counter() - t0, 4)}
        if model.config.au_head:
            rec["au_loss"] = au_total / len(train_np)
        if select == SELECT_BEST and len(test_np):
            probs = predict_probs(step_model, data, test_idx, eval_bs, thresholded=thresholded)
            acc = (probs.argmax(1) == test_y).sum().item() / len(test_np)
            rec["best_on_test_acc"] = acc
            if best is None or acc > best["accuracy"]:  # earliest best epoch
                best = {"epoch": epoch + 1, "accuracy": acc, "label": SELECT_LABEL, "probs": probs.cpu().numpy()}
        log.append(rec)
        # the whole log is rewritten (atomically) each time: every epoch would cost O(epochs^2), ~10 % of an
        # 800-epoch STSTNet fold; the first epoch, then every LOG_EVERY_S seconds and the last epoch
        if fold_dir is not None and (t_log is None or epoch + 1 == epochs
                                     or time.perf_counter() - t_log >= LOG_EVERY_S):
            runs.write_log(fold_dir, log)
            t_log = time.perf_counter()
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, rec)

    labels = test_y.cpu().numpy()
    probs_t, au_probs_t = predict_outputs(step_model, data, test_idx, eval_bs, thresholded=thresholded)
    if hidden_aus and not torch.isfinite(probs_t).all().item():
        raise RuntimeError(f"fold {test_subject}: the held-out subject's hidden AU codes reached the model")
    probs = probs_t.cpu().numpy()
    au_probs = None if au_probs_t is None else au_probs_t.cpu().numpy()
    accuracy = float((probs.argmax(1) == labels).mean()) if len(labels) else None
    seconds = time.perf_counter() - t_start
    result = FoldResult(subject=test_subject if test_subject is not None else FINAL, n_train=len(train_np),
                        n_test=len(test_np), seconds=seconds, log=log, accuracy=accuracy, probs=probs,
                        labels=labels, model=model, au_probs=au_probs,
                        best_on_test=None if best is None else {k: v for k, v in best.items() if k != "probs"})
    if fold_dir is not None:
        _write_fold(fold_dir, result, truth, train_np, test_np, recipe, device, best)
    return result


def _write_fold(fold_dir: Path, r: FoldResult, data: MERData, train_np: np.ndarray, test_np: np.ndarray,
                recipe: dict, device: torch.device, best: dict | None) -> None:
    """The fold's checkpoint, summary and predictions, handed to the run folder's owner."""
    final = r.subject == FINAL
    train_subjects = sorted(set(data.subjects[train_np]), key=runs.natural_key)  # what training actually saw
    summary = {"subject": None if final else r.subject, "n_train": r.n_train, "n_test": r.n_test,
               "train_subjects": train_subjects, "epochs": len(r.log), "seconds": round(r.seconds, 3),
               "accuracy_last_epoch": r.accuracy, "final_train_loss": r.log[-1]["loss"] if r.log else None,
               "device": device_info(device), "host": platform.node(),
               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "best_on_test": r.best_on_test}
    pairs = dict(data.pairs)
    if pairs and "cache_fingerprint" not in pairs:  # run_fold called without open_run (benchmarks, tests)
        pairs["cache_fingerprint"] = runs.data_fingerprint(data)
    trained_on = runs.training_record(data, train_np, r.model.config.aus)
    runs.write_fold(fold_dir, make_checkpoint(r.model, recipe, data.classes, pairs, trained_on), summary,
                    sample_ids=data.sample_ids[test_np], subjects=data.subjects[test_np], labels=r.labels,
                    probs=r.probs, best_probs=None if best is None else best["probs"], classes=data.classes,
                    final=final, au_probs=r.au_probs,
                    au_true=None if r.au_probs is None else data.aus[test_np].cpu().numpy(),
                    au_known=data.au_known[test_np].cpu().numpy())


# -------------------------------------------------------------------------------------------------------- LOSO

class _Progress:
    """Rich progress: a bar over folds, a bar over the current fold's epochs with its loss and accuracy."""

    def __init__(self, console, total_folds: int, enabled: bool = True):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.enabled = enabled
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("left"),
                                 TimeRemainingColumn(), console=console,
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
        if "best_on_test_acc" in rec:
            info += f"  (test acc {rec['best_on_test_acc']:.3f}, for best-on-test)"
        self.progress.update(self.epochs, completed=epoch, info=info)

    def end_fold(self, info: str) -> None:
        self.progress.update(self.folds, advance=1, info=info)
        self.progress.console.print(info, soft_wrap=True)  # one line per fold, also in non-interactive logs


def train_loso(recipe: dict, cache, out, *, subjects=None, device="auto",
               select: str = "last", final: bool = False, compile: bool = False, console=None,
               progress: bool = True) -> dict:
    """Run (or resume) leave-one-subject-out training into `out` (cache: path or CacheData); returns the report."""
    from rich.console import Console

    console = console or Console(markup=False)
    select = check_select(select)
    device = resolve_device(device)
    setup_device(device)  # before the first copy to the device
    out = Path(out)
    data, plan, todo = open_run(recipe, cache, out, subjects, device, console)
    console.print(f"{len(data)} samples, {len(plan.folds)} folds ({len(todo)} here), device {device}, "
                  f"run folder {out}")

    from mertool.training.estimate import announce, fold_sizes

    left = [s for s in todo if not fold_done(out, plan.fold_dirs[s])]
    train_final = final and not runs.final_done(out)
    announce(console, [(recipe, out, fold_sizes(data, left, train_final))], device, 1,
             f"{len(left) + int(train_final)} training(s) one after another on {device.type}")
    data = data.to(device)  # once: the whole dataset stays on the device for every fold
    epochs = int(recipe["train"]["epochs"])
    diverged: list[str] = []
    with _Progress(console, len(todo) + int(final), enabled=progress) as bar:
        for subject in todo:
            fdir = runs.fold_path(out, plan.fold_dirs[subject])
            if fold_done(out, plan.fold_dirs[subject]):
                bar.end_fold(f"fold {subject}: done earlier, skipped")
                continue
            bar.start_fold(f"fold {subject}", epochs)
            try:
                r = run_fold(data, recipe, subject, fdir, select=select, compile=compile, on_epoch=bar.on_epoch,
                             skip_done=True)
            except FoldDiverged as exc:
                diverged.append(subject)
                bar.end_fold(f"error: {exc}")
                continue
            except runs.FoldBusy as exc:  # another process, worker or Slurm job has it: move on
                bar.end_fold(str(exc))
                continue
            bar.end_fold(f"fold {subject}: accuracy {r.accuracy:.3f} on {r.n_test} samples, "
                         f"final train loss {r.log[-1]['loss']:.3f}, {r.seconds:.1f} s")
            del r  # the fold's model: released before the next fold builds its own
        if final:
            fdir = runs.final_path(out)
            if runs.final_done(out):
                bar.end_fold("final model: done earlier, skipped")
            else:
                bar.start_fold("final (all subjects)", epochs)
                try:
                    run_fold(data, recipe, None, fdir, compile=compile, on_epoch=bar.on_epoch, skip_done=True)
                    bar.end_fold("final model saved")
                except FoldDiverged as exc:
                    diverged.append("final model")
                    bar.end_fold(f"error: {exc}")
                except runs.FoldBusy as exc:
                    bar.end_fold(str(exc))
    report = print_run_summary(out, console)
    raise_diverged(diverged)
    return report


def raise_diverged(diverged: list[str]) -> None:
    """After the other folds ran: a non-zero exit naming the folds that diverged (each was reported as it did)."""
    if diverged:
        raise MertoolError(f"{plural(len(diverged), 'fold')} diverged and have no predictions: {', '.join(diverged)} "
                           f"(lower train.lr; re-running the same command retrains only these)")


def print_run_summary(out: Path, console) -> dict:
    """Per-fold table (accuracy, best-on-test apart, time), the AU input, and pooled metrics when every fold is
    done."""
    from rich.table import Table

    from mertool.reports.evaluate import evaluate_run

    from mertool.reports.calibration import calibrate_run

    calibrate_run(out)  # once every fold is done: the per-fold temperatures, stamped into the final model
    report = evaluate_run(out, partial=True)
    table = Table(title=f"LOSO folds: {out}")
    for col in ("subject", "test samples", "accuracy (last epoch)", "seconds"):
        table.add_column(col, justify="right" if col != "subject" else "left")
    has_best = report.get("best_on_test") is not None
    if has_best:
        table.add_column(SELECT_LABEL, justify="right")
    folds = {f["subject"]: f for f in report["folds"]}
    for subject in report["expected_folds"]:
        f = folds.get(subject)
        if f is None:
            table.add_row(subject, "-", "not run yet", "-", *(["-"] if has_best else []))
            continue
        row = [subject, str(f["n"]), f"{f['accuracy']:.3f}", f"{f['seconds']:.1f}" if f.get("seconds") else "-"]
        if has_best:
            o = f.get("best_on_test")
            row.append(f"{o['accuracy']:.3f} (epoch {o['epoch']})" if o else "-")
        table.add_row(*row)
    console.print(table)
    console.print(f"AU input: {report['au_source']['text']}")
    m = report.get("metrics")
    if report["missing"]:
        console.print(f"{len(report['expected_folds']) - len(report['missing'])}/{len(report['expected_folds'])} "
                      f"folds done; missing: {', '.join(report['missing'])}")
    if m:
        ci = report.get("intervals") or {}
        console.print(f"pooled over {m['n']} samples{' (partial)' if report['missing'] else ''}: accuracy "
                      f"{m['accuracy']:.2f}" + (f" [{ci['accuracy']['lo']:.2f}, {ci['accuracy']['hi']:.2f}]" if ci
                                                else "")
                      + f"  UF1 {m['uf1']:.2f}  UAR {m['uar']:.2f}  macro F1 {m['macro_f1']:.2f}"
                      + (" (95 % intervals over subjects)" if ci else ""))
        from mertool.cache.provenance import is_synthetic, words

        if is_synthetic(report.get("provenance")) is not False:
            console.print(f"data: {words(report.get('provenance'))}")
    if has_best:
        o = report["best_on_test"]
        console.print(f"{SELECT_LABEL.upper()}, not a valid estimate: accuracy {o['accuracy']:.4f}  "
                      f"UF1 {o['uf1']:.4f}  UAR {o['uar']:.4f}")
    return report
