"""Predictions for new data: an onset/apex image pair, a CSV of pairs, or a clip (video or frame folder).

    predictor = Predictor("runs/casme2")                  # RUN/final/model.pt, or a checkpoint file
    p = predictor.predict_pair("onset.jpg", "apex.jpg", aus="6+12")
    p.emotion, p.probabilities                            # 'happiness', {'happiness': 0.91, ...}
    p, spot = predictor.predict_clip("clip.mp4", aus="none")  # spotted onset/apex, then the same pair path

Pairs go through the pipeline `preprocess` uses: the face chip from the ONSET frame's landmarks, the apex
registered onto it as the training cache's was (FaceAligner.align_pair), at the cache's 224 px, resized to the
model's input size as training does (mertool.data.resize_frames), scaled to [0, 1]. One forward pass gives the
probabilities and, for pictures, the model's CVA attention maps.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mertool.aus import au_bits, format_aus, parse_au_argument
from mertool.errors import MertoolError
from mertool.reject import Verdict  # noqa: F401  (Prediction's type)

NO_AUS = "none"
AUTO = "auto"


@dataclass
class AUInput:
    """The AU vector a prediction used, and how it came about."""

    codes: tuple[int, ...]
    empty: bool = False        # the model uses AUs and the user asked for none (--aus none)
    ignored: bool = False      # AUs were given but the model was trained without them
    auto: bool = False         # the model's own AU head estimates them (--aus auto)
    source: str = ""           # where given codes came from ('--aus', an OpenFace CSV and its frames)
    origin: str = ""           # 'given' (typed / CSV aus column) or 'openface'; '' when no codes were read
    not_coded: tuple[int, ...] = ()  # vocabulary AUs the source cannot code (OpenFace: 16, 18, 24)


def parse_aus_input(text: str | None, uses_aus: bool, where: str = "--aus", has_head: bool = False) -> AUInput:
    """'1,2' / 'AU1+R2' / '4+L10' / 'none' / 'auto' / None -> AUInput.

    Not given: the model's AU head estimates them when it has one; a model trained with hand-coded AUs and no head
    needs them or an explicit 'none'. uses_aus: the classifier reads an AU vector (oracle or estimated model).
    """
    given = text is not None and str(text).strip() != ""
    if given and str(text).strip().lower() == NO_AUS:
        return AUInput((), empty=uses_aus)
    if (given and str(text).strip().lower() == AUTO) or (not given and has_head):
        if not has_head:
            raise MertoolError(f"{where} auto: this model has no AU head (trained before mertool estimated AUs); "
                               f"give the AUs (e.g. 6+12) or 'none'")
        if not uses_aus:
            return AUInput(())  # the classifier reads no AU vector; the head's estimate is still reported
        return AUInput((), auto=True)
    try:
        codes = parse_au_argument(str(text)) if given else ()
    except MertoolError as exc:  # parse_au_argument names '--aus'; a CSV row names itself instead
        raise MertoolError(str(exc).replace("--aus", where, 1) if where != "--aus" else str(exc)) from None
    if not uses_aus:
        return AUInput(codes, ignored=bool(codes), source=where, origin="given")
    if not given and where == "--aus":
        raise MertoolError("--aus: this model was trained with AU input; give the AUs (e.g. --aus 6+12) or "
                           "--aus none to run it with an empty AU vector")
    if not given:
        raise MertoolError(f"{where}: empty; this model was trained with AU input: write the AUs (e.g. 6+12) or "
                           f"'none' for an empty AU vector")
    return AUInput(codes, source=where, origin="given")


def openface_input(path: str | Path, uses_aus: bool, onset: int | None = None, apex: int | None = None,
                   where: str = "--aus-from") -> AUInput:
    """AUs read from an OpenFace 2.x CSV (mertool.openface): active from onset to apex, or in the apex row."""
    from mertool.openface import read_openface_csv

    of = read_openface_csv(path)
    codes = of.codes_between(onset, apex)
    frames = f"frames {onset}..{apex}" if onset is not None else (f"frame {apex}" if apex is not None else
                                                                    f"last frame {int(of.frames[-1])}")
    return AUInput(codes, ignored=not uses_aus and bool(codes), source=f"{path} ({frames})",
                   origin="openface", not_coded=of.not_coded)


@dataclass
class Prediction:
    """One classified pair, or one the reject option refused (emotion None, verdict saying why)."""

    emotion: str | None
    probabilities: dict[str, float]
    aus: AUInput
    onset: str                             # source of the onset frame (file, or 'clip.mp4 frame 12')
    apex: str
    n_faces: int = 1
    registration: dict | None = None       # how the apex was registered (align.Registration.to_dict()), or None
    onset_crop: np.ndarray | None = field(default=None, repr=False)   # aligned 224 px crops, for pictures
    apex_crop: np.ndarray | None = field(default=None, repr=False)
    cva_maps: list | None = field(default=None, repr=False)            # one sample's CVA maps, C x H x W each
    aus_estimated: dict[int, float] | None = None   # the AU head's probability per AU (models with an AU head)
    verdict: "Verdict | None" = None                # the reject option's (mertool.reject): judged, or why not
    forced: bool = False                             # a class given although the verdict says cannot judge
    calibration: str = ""                            # how the probabilities were calibrated (temperature)
    stability: dict | None = None                    # a clip: the class at apex -2 .. +2 frames

    @property
    def judged(self) -> bool:
        return self.verdict is None or self.verdict.ok

    def to_dict(self) -> dict:
        """JSON-ready fields (no pixels)."""
        out = {"onset": self.onset, "apex": self.apex, "emotion": self.emotion,
               "judged": self.judged, "cannot_judge": None if self.judged else self.verdict.reason,
               "cannot_judge_code": None if self.judged else self.verdict.code, "forced": self.forced,
               "motion": self.verdict.motion if self.verdict is not None else None,
               "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
               "calibration": self.calibration,
               "aus": list(self.aus.codes), "aus_text": format_aus(self.aus.codes) if self.aus.codes else "",
               "aus_source": au_source_name(self.aus), "au_vector_empty": self.aus.empty,
               "aus_ignored": self.aus.ignored, "faces_found": self.n_faces, "registration": self.registration}
        if self.aus.not_coded:
            out["aus_not_coded"] = list(self.aus.not_coded)
        if self.aus_estimated is not None:
            out["aus_estimated"] = {f"AU{au}": round(p, 4) for au, p in self.aus_estimated.items()}
        if self.stability is not None:
            out["stability"] = self.stability
        return out


def au_source_name(aus: AUInput) -> str:
    """What the classifier read as its AU vector: estimated, none, or the given codes' origin."""
    if aus.auto:
        return "estimated"
    if aus.empty or aus.ignored or not aus.origin:
        return "none"
    return aus.origin


class Predictor:
    """A trained mertool model plus the alignment `preprocess` uses; predicts pairs, CSV batches and clips."""

    def __init__(self, model: str | Path, device: str | torch.device = "cpu", aligner=None, force: bool = False):
        from mertool.calibration import model_temperature
        from mertool.runs import load_checkpoint, resolve_model_path
        from mertool.train import resolve_device

        self.device = resolve_device(device)
        self.model_path = resolve_model_path(model)
        self.model, self.ckpt = load_checkpoint(self.model_path, self.device)
        self.temperature, self.calibration = model_temperature(self.ckpt, self.model_path)
        self.trained_on: dict | None = self.ckpt.get("trained_on")
        self.force = force   # give a class even where the reject option says "cannot judge"
        self.classes: list[str] = list(self.ckpt["classes"])
        cfg = self.model.config
        self.uses_aus: bool = cfg.reads_aus        # the classifier reads an AU vector (hand-coded or estimated)
        self.has_au_head: bool = cfg.au_head
        self.image_size: int = int(self.ckpt.get("image_size", 224))
        if cfg.needs_flow:
            raise MertoolError(f"{self.model_path}: this model reads optical flow (model.motion flow, or arch "
                               f"{cfg.arch}); predict computes no flow yet: evaluate it on a cache with flow "
                               f"(`mertool evaluate`)")
        self.aligner = aligner if aligner is not None else self._aligner(self.ckpt.get("alignment"))

    @staticmethod
    def _aligner(settings):
        """The training cache's alignment when the checkpoint records it, else preprocess's defaults (224 px chip,
        padding 0.25, upsample 0 then 1, apex registered by ECC). A cache made before registration existed
        recorded no `register`: its pairs were not registered, and neither are the ones predicted with its model."""
        from mertool.align import FaceAligner

        keys = ("size", "padding", "upsample", "detect_max_side", "register")
        settings = dict(settings) if isinstance(settings, dict) else {}
        if settings.get("method", "dlib-chip") != "dlib-chip":  # e.g. a --no-align cache: nothing to mirror
            settings = {}
        elif settings:
            settings.setdefault("register", "none")
        return FaceAligner(**{k: settings[k] for k in keys if k in settings})

    def aus(self, text: str | None, where: str = "--aus") -> AUInput:
        """Parse AUs for this model (see parse_aus_input)."""
        return parse_aus_input(text, self.uses_aus, where, self.has_au_head)

    @torch.no_grad()
    def classify(self, onset: np.ndarray, apex: np.ndarray,
                 aus: AUInput) -> tuple[np.ndarray, list | None, np.ndarray | None]:
        """Aligned uint8 crops -> (class probabilities, CVA maps of this sample or None, AU probabilities or None),
        one forward pass."""
        from mertool.data import resize_frames, to_float

        frames = torch.from_numpy(np.stack([onset, apex])).permute(0, 3, 1, 2).contiguous()
        frames = to_float(resize_frames(frames, self.image_size)).to(self.device)
        bits = torch.from_numpy(au_bits(aus.codes).astype(np.float32))[None].to(self.device)
        logits, maps = self.model(frames[:1], frames[1:], None if aus.auto else bits, return_maps=True,
                                  estimate_aus=aus.auto)
        probs = torch.softmax(logits.float() / self.temperature, 1)[0].cpu().numpy()  # calibrated (T = 1: not)
        cva = maps.get("cva") if isinstance(maps, dict) else None
        au_logits = maps.get("au_logits") if isinstance(maps, dict) else None
        au_probs = None if au_logits is None else torch.sigmoid(au_logits.float())[0].cpu().numpy()
        return probs, ([m[0].float().cpu() for m in cva] if cva else None), au_probs

    def motion(self, onset: np.ndarray, apex: np.ndarray) -> dict[str, float]:
        """The pair's motion as the model sees it (its input size), as the checkpoint's training statistics were
        measured (mertool.reject.pair_motion)."""
        from mertool.data import resize_frames
        from mertool.reject import pair_motion

        frames = resize_frames(torch.from_numpy(np.stack([onset, apex])).permute(0, 3, 1, 2).contiguous(),
                               self.image_size)
        return {k: float(v[0]) for k, v in pair_motion(frames[:1], frames[1:]).items()}

    def _predict(self, onset_rgb, apex_rgb, aus: AUInput, onset_name: str, apex_name: str) -> Prediction:
        from mertool.align import NO_FACE, AlignSkip
        from mertool.aus import AU_VOCAB
        from mertool.reject import Verdict, judge

        try:
            pair = self.aligner.align_pair(onset_rgb, apex_rgb, name=onset_name)
        except AlignSkip as exc:
            if exc.reason != NO_FACE:
                raise
            # nothing to classify: --force cannot help without a face
            return Prediction(emotion=None, probabilities={}, aus=aus, onset=onset_name, apex=apex_name, n_faces=0,
                              verdict=Verdict(False, "no-face", f"face not found: {exc}"),
                              calibration=self.calibration)
        reg = pair.registration.to_dict() if pair.registration is not None else None
        verdict = judge(self.motion(pair.onset, pair.apex), (self.trained_on or {}).get("motion"), reg)
        probs, maps, au_probs = self.classify(pair.onset, pair.apex, aus)
        shown = verdict.ok or self.force
        return Prediction(emotion=self.classes[int(probs.argmax())] if shown else None,
                          probabilities={c: float(p) for c, p in zip(self.classes, probs)} if shown else {}, aus=aus,
                          onset=onset_name, apex=apex_name, n_faces=pair.n_faces, registration=reg,
                          onset_crop=pair.onset, apex_crop=pair.apex, cva_maps=maps,
                          aus_estimated=None if au_probs is None else
                          {au: float(p) for au, p in zip(AU_VOCAB, au_probs)},
                          verdict=verdict, forced=not verdict.ok and self.force, calibration=self.calibration)

    def predict_pair(self, onset: str | Path, apex: str | Path, aus: str | AUInput | None = None,
                     aus_from: str | Path | None = None, apex_frame: int | None = None) -> Prediction:
        """Classify an onset/apex image pair; AUs from `aus` or from an OpenFace CSV (its apex_frame row, or the
        last row)."""
        from mertool.align import read_rgb

        if aus_from is not None:
            _one_au_source(aus, aus_from)
            aus = openface_input(aus_from, self.uses_aus, None, apex_frame)
        aus = aus if isinstance(aus, AUInput) else self.aus(aus)
        return self._predict(read_rgb(onset), read_rgb(apex), aus, str(onset), str(apex))

    def predict_clip(self, path: str | Path, aus: str | AUInput | None = None, onset: int | None = None,
                     apex: int | None = None, spotter=None, progress: Callable | None = None,
                     aus_from: str | Path | None = None):
        """Spot onset and apex in a video or frame folder (unless both are given), then classify that pair.

        With aus_from (an OpenFace CSV of the same clip), an AU is active when OpenFace codes it in any frame from
        the onset to the apex. Returns (Prediction, SpotResult or None when both frames were given).
        """
        from mertool.openface import read_openface_csv
        from mertool.spot import FrameSource, Spotter

        openface = None
        if aus_from is not None:
            _one_au_source(aus, aus_from)
            openface = read_openface_csv(aus_from)  # a malformed CSV fails before minutes of spotting
        else:
            aus = aus if isinstance(aus, AUInput) else self.aus(aus)  # so do bad AUs
        source = FrameSource(path)
        spot = None
        for n in (onset, apex):
            if n is not None:
                source.index(n)  # a frame outside the clip fails now, not after spotting
        if onset is None or apex is None:
            spot = (spotter or Spotter(self.aligner)).spot(source, progress)
            onset = spot.onset if onset is None else onset
            apex = spot.apex if apex is None else apex
        if onset == apex:
            raise MertoolError(f"{path}: onset and apex are the same frame ({onset}); give --onset and --apex")
        if openface is not None:
            aus = openface_input(aus_from, self.uses_aus, onset, apex)
        pred = self._predict(source.read(onset), source.read(apex), aus, source.describe(onset),
                             source.describe(apex))
        if pred.emotion is not None:
            pred.stability = self.apex_stability(source, onset, apex, aus, pred.emotion)
        return pred, spot

    def apex_stability(self, source, onset: int, apex: int, aus: AUInput, emotion: str, reach: int = 2) -> dict:
        """The class with the apex moved by -reach .. +reach frames: how much the answer hangs on the exact apex
        (a video and its extracted frames can spot it a frame apart)."""
        from mertool.align import AlignSkip

        numbers = list(source.numbers) if hasattr(source, "numbers") else None
        rows = []
        for d in range(-reach, reach + 1):
            n = apex + d
            if n == onset or (numbers is not None and n not in numbers):
                continue
            if d == 0:
                rows.append({"apex": n, "emotion": emotion})
                continue
            try:
                source.index(n)
                pair = self.aligner.align_pair(source.read(onset), source.read(n), name=source.describe(onset))
            except (AlignSkip, MertoolError):
                continue
            probs, _maps, _au = self.classify(pair.onset, pair.apex, aus)
            rows.append({"apex": n, "emotion": self.classes[int(probs.argmax())],
                         "probability": round(float(probs.max()), 4)})
        same = sum(r["emotion"] == emotion for r in rows)
        return {"frames": rows, "agree": same, "of": len(rows), "stable": same == len(rows)}

    def predict_csv(self, pairs: str | Path, on_row: Callable | None = None) -> list[dict]:
        """Every row of a pairs CSV -> a result dict; a row that fails keeps its error message and the rest go on."""
        rows = read_pairs_csv(pairs)
        out = []
        for i, (line, onset, apex, aus_text, aus_from, apex_frame) in enumerate(rows):
            rec = {"row": line, "onset": str(onset), "apex": str(apex),
                   "aus_input": aus_text if aus_from is None else f"from {aus_from}"}
            where = f"{pairs}: row {line}"
            try:
                if aus_from is not None:
                    if aus_text:
                        raise MertoolError(f"{where}: give aus or aus_from, not both")
                    aus = openface_input(aus_from, self.uses_aus, None, apex_frame)
                else:
                    aus = self.aus(aus_text, f"{where}: aus")
                p = self.predict_pair(onset, apex, aus)
                rec.update(p.to_dict(), error="")
            except MertoolError as exc:
                rec.update(emotion="", probabilities={}, error=str(exc))
            out.append(rec)
            if on_row is not None:
                on_row(i + 1, len(rows), rec)
        return out


def _one_au_source(aus, aus_from) -> None:
    if aus is not None and not (isinstance(aus, str) and not aus.strip()):
        raise MertoolError(f"--aus and --aus-from {aus_from}: give one source of AUs, not both")


_PAIR_COLUMNS = {"onset": ("onset", "onset_path"), "apex": ("apex", "apex_path"), "aus": ("aus", "au", "action units"),
                 "aus_from": ("aus_from", "openface"), "apex_frame": ("apex_frame",)}


def read_pairs_csv(path: str | Path) -> list[tuple[int, Path, Path, str, Path | None, int | None]]:
    """(line number, onset path, apex path, AU text, OpenFace CSV or None, its apex frame or None) per row; paths
    relative to the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise MertoolError(f"{path}: no such pairs file (expected a CSV with columns onset, apex, aus)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as exc:
        raise MertoolError(f"{path}: cannot be read as UTF-8 CSV ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise MertoolError(f"{path}: empty file; expected a header row with columns onset, apex, aus")
    keys = [h.strip().lower() for h in header]
    col = {}
    for name, aliases in _PAIR_COLUMNS.items():
        hits = [i for i, k in enumerate(keys) if k in aliases]
        if hits:
            col[name] = hits[0]
        elif name in ("onset", "apex"):
            raise MertoolError(f"{path}: no '{name}' column in the header {header}; expected columns onset, apex, aus")
    base = path.resolve().parent
    rows = []
    for line, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue

        def get(name: str) -> str:
            i = col.get(name)
            return values[i].strip() if i is not None and i < len(values) else ""

        onset, apex = get("onset"), get("apex")
        for name, v in (("onset", onset), ("apex", apex)):
            if not v:
                raise MertoolError(f"{path}: row {line}: empty {name}; expected an image path")
        aus_from, frame = get("aus_from"), get("apex_frame")
        if frame and not frame.isdigit():
            raise MertoolError(f"{path}: row {line}: apex_frame = {frame!r}; expected a frame number")
        rows.append((line, _resolve(base, onset), _resolve(base, apex), get("aus"),
                     _resolve(base, aus_from) if aus_from else None, int(frame) if frame else None))
    if not rows:
        raise MertoolError(f"{path}: no rows after the header")
    return rows


def _resolve(base: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def batch_csv(results: list[dict], classes: list[str]) -> str:
    """Batch results as CSV text: onset, apex, aus, emotion, p_<class>..., cannot_judge (the reject option's
    reason, emotion then empty), error."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["onset", "apex", "aus", "emotion"] + [f"p_{c}" for c in classes] + ["cannot_judge", "error"])
    for r in results:
        probs = r.get("probabilities") or {}
        w.writerow([r["onset"], r["apex"], r["aus_input"], r.get("emotion") or ""]
                   + [f"{probs[c]:.6f}" if c in probs else "" for c in classes]
                   + [r.get("cannot_judge") or "", r.get("error", "")])
    return buf.getvalue()


def batch_jsonl(results: list[dict]) -> str:
    """Batch results as JSON lines, one object per row."""
    return "".join(json.dumps(r) + "\n" for r in results)


def sparkline(values, width: int = 48) -> str:
    """A one-line text picture of a curve (resampled to at most `width` characters)."""
    bars = "▁▂▃▄▅▆▇█"
    v = np.asarray(values, np.float64)
    if len(v) > width:
        edges = np.linspace(0, len(v), width + 1).astype(int)
        v = np.array([v[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    lo, hi = float(v.min()), float(v.max())
    idx = np.zeros(len(v), int) if hi <= lo else np.round((v - lo) / (hi - lo) * (len(bars) - 1)).astype(int)
    return "".join(bars[i] for i in idx)


def render_prediction(pred: Prediction, console, model_path: str | Path = "", trained_on: str = "") -> None:
    """What the model was trained on; then either "cannot judge" with its reason, or a table of every class with
    its calibrated probability, the predicted one marked; then the AU lines, and a clip's apex stability."""
    from rich.markup import escape
    from rich.table import Table

    console.print(f"onset: {pred.onset}\napex:  {pred.apex}", markup=False, highlight=False, soft_wrap=True)
    if trained_on:
        console.print(trained_on, markup=False, highlight=False, soft_wrap=True)
    if pred.emotion is None:
        console.print(f"[bold]cannot judge[/]: {escape(pred.verdict.reason)}", soft_wrap=True)
        if pred.verdict.code != "no-face":
            console.print("(--force gives the model's class anyway)")
        if model_path:
            console.print(f"model: {escape(str(model_path))}", soft_wrap=True)
        return
    if pred.forced:
        console.print(f"[yellow]forced:[/] the reject option says cannot judge ({escape(pred.verdict.reason)}); the "
                      f"class below is given because of --force", soft_wrap=True)
    table = Table()
    table.add_column("class")
    table.add_column("probability (calibrated)" if not pred.calibration.startswith("uncalibrated")
                     else "probability", justify="right")
    table.add_column("")
    for name, p in sorted(pred.probabilities.items(), key=lambda kv: -kv[1]):
        mark = "[bold green]<- predicted[/]" if name == pred.emotion else ""
        table.add_row(f"[bold]{escape(name)}[/]" if name == pred.emotion else escape(name), f"{p:.3f}",
                      f"{'█' * round(20 * p):<20} {mark}")
    console.print(table)
    if pred.aus.empty:
        console.print("AU vector: empty (--aus none): the model saw no AU input")
    elif pred.aus.ignored:
        console.print(f"AUs {format_aus(pred.aus.codes)} ignored: the model was trained without AU input")
    elif pred.aus.auto:
        console.print("AUs: estimated by the model's AU head (no FACS coding given)")
    elif pred.aus.source:
        codes = format_aus(pred.aus.codes) if pred.aus.codes else "none active"
        console.print(f"AUs: {codes}" + (f"  (from {escape(pred.aus.source)})" if pred.aus.source != "--aus" else ""),
                      soft_wrap=True)
    if pred.aus.not_coded:
        console.print("not coded by the source (left inactive): "
                      + ", ".join(f"AU{a}" for a in pred.aus.not_coded))
    if pred.aus_estimated:
        ranked = sorted(pred.aus_estimated.items(), key=lambda kv: -kv[1])
        console.print("AU head estimate (p >= 0.5 marked *): "
                      + "  ".join(f"AU{au} {p:.2f}{'*' if p >= 0.5 else ''}" for au, p in ranked), soft_wrap=True)
    if pred.n_faces > 1:
        console.print(f"note: {pred.n_faces} faces found; the largest was used")
    if pred.registration is not None:
        from mertool.align import registration_warnings

        for line in registration_warnings("pair", pred.registration):
            console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    if pred.stability:
        st = pred.stability
        frames = ", ".join(f"{r['apex']}: {r['emotion']}" for r in st["frames"])
        console.print(("apex stable" if st["stable"] else f"[yellow]apex-sensitive:[/] {st['agree']} of {st['of']} "
                       "nearby apex frames give this class") + f" (apex -2..+2: {escape(frames)})", soft_wrap=True)
    if pred.calibration:
        console.print(f"probabilities: {escape(pred.calibration)}", soft_wrap=True)
    console.print(f"predicted: [bold]{escape(pred.emotion)}[/] ({pred.probabilities[pred.emotion]:.3f})"
                  + (f"   model: {escape(str(model_path))}" if model_path else ""), soft_wrap=True)
