"""Predictions for new data: an onset/apex image pair, a CSV of pairs, or a clip (video or frame folder).

    predictor = Predictor("runs/casme2")                  # RUN/final/model.pt, or a checkpoint file
    p = predictor.predict_pair("onset.jpg", "apex.jpg", aus="6+12")
    p.emotion, p.probabilities                            # 'happiness', {'happiness': 0.91, ...}
    p, spot = predictor.predict_clip("clip.mp4", aus="none")  # spotted onset/apex, then the same pair path

Pairs go through the pipeline `preprocess` uses: the face chip from the ONSET frame's landmarks, the apex
registered onto it as the training cache's was (FaceAligner.align_pair), at the cache's 224 px, resized to the
model's input size as training does (mertool.training.dataset.resize_frames), scaled to [0, 1]. One forward pass
gives the probabilities and, for pictures, the model's CVA attention maps.
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

from mertool.data.aus import au_bits, format_aus, parse_au_argument
from mertool.errors import MertoolError
from mertool.predict.reject import Verdict  # noqa: F401  (Prediction's type)

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
    thresholded: bool = False  # with auto: the head's estimate thresholded at 0.5 (0/1, like the hand codes an
    #                            oracle-trained model learnt from)
    warning: str = ""          # the AUs are not the kind the model learnt from (said, not refused)


AU_THRESHOLD = 0.5


def _oracle_without_aus(where: str, has_head: bool) -> MertoolError:
    if where == "--aus":
        auto = ", --aus auto feeds its AU head's estimate thresholded at 0.5" if has_head else ""
        return MertoolError(f"this model was trained on hand-coded AUs (model.aus oracle): give them with --aus "
                            f"(e.g. --aus 6+12) or --aus-from OPENFACE.csv{auto}; --aus none runs it with an empty "
                            f"AU vector")
    auto = ", 'auto' for its AU head's estimate thresholded at 0.5" if has_head else ""
    return MertoolError(f"{where}: empty; this model was trained on hand-coded AUs (model.aus oracle): write the AUs "
                        f"(e.g. 6+12), give an aus_from OpenFace CSV{auto}, or 'none' for an empty AU vector")


def parse_aus_input(text: str | None, uses_aus: bool, where: str = "--aus", has_head: bool = False,
                    source: str | None = None) -> AUInput:
    """'1,2' / 'AU1+R2' / '4+L10' / 'none' / 'auto' / None -> AUInput, by what the model learnt from (`source`,
    model.aus: oracle | estimated | none; by default oracle when it reads AUs, none otherwise).

    Not given: an `estimated` model uses its AU head; an `oracle` model (trained on 0/1 hand codes) stops, naming
    --aus and --aus-from. 'auto' on an oracle model feeds its head's estimate thresholded at 0.5, the 0/1 kind of
    vector it learnt from. Hand codes given to an estimated model (which learnt from its head's probabilities) are
    used, with a warning naming the mismatch.
    """
    source = source or ("oracle" if uses_aus else "none")
    given = text is not None and str(text).strip() != ""
    if given and str(text).strip().lower() == NO_AUS:
        return AUInput((), empty=uses_aus)
    auto = given and str(text).strip().lower() == AUTO
    if auto or (not given and source in ("estimated", "none") and has_head):
        if not has_head:
            raise MertoolError(f"{where} auto: this model has no AU head (trained before mertool estimated AUs); "
                               f"give the AUs (e.g. 6+12) or 'none'")
        if not uses_aus:
            return AUInput(())  # the classifier reads no AU vector; the head's estimate is still reported
        return AUInput((), auto=True, thresholded=source == "oracle")
    try:
        codes = parse_au_argument(str(text)) if given else ()
    except MertoolError as exc:  # parse_au_argument names '--aus'; a CSV row names itself instead
        raise MertoolError(str(exc).replace("--aus", where, 1) if where != "--aus" else str(exc)) from None
    if not uses_aus:
        return AUInput(codes, ignored=bool(codes), source=where, origin="given")
    if not given:
        raise _oracle_without_aus(where, has_head)
    return AUInput(codes, source=where, origin="given", warning=_mismatch(source, "hand-coded AUs"))


def _mismatch(source: str, what: str) -> str:
    """The warning for 0/1 codes given to a model that learnt from its AU head's probabilities."""
    if source != "estimated":
        return ""
    return (f"{what} (0/1) given to a model trained on its AU head's estimates (model.aus estimated): it never saw "
            f"this kind of AU input, so no LOSO figure measures it; leave the AUs out to use its own estimate")


def openface_input(path: str | Path, uses_aus: bool, onset: int | None = None, apex: int | None = None,
                   where: str = "--aus-from", source: str | None = None) -> AUInput:
    """AUs read from an OpenFace 2.x CSV (mertool.data.openface): active from onset to apex, or in the apex row."""
    from mertool.data.openface import read_openface_csv

    of = read_openface_csv(path)
    codes = of.codes_between(onset, apex)
    frames = f"frames {onset}..{apex}" if onset is not None else (f"frame {apex}" if apex is not None else
                                                                    f"last frame {int(of.frames[-1])}")
    return AUInput(codes, ignored=not uses_aus and bool(codes), source=f"{path} ({frames})",
                   origin="openface", not_coded=of.not_coded,
                   warning=_mismatch(source or ("oracle" if uses_aus else "none"), "OpenFace AU codes") if uses_aus
                   else "")


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
    au_vector: np.ndarray | None = field(default=None, repr=False)  # the 21 values the classifier read (float32)
    model_au_source: str = ""                        # what the model learnt from: oracle | estimated | none
    verdict: "Verdict | None" = None                # the reject option's (mertool.predict.reject): judged, or why not
    forced: bool = False                             # a class given although the verdict says cannot judge
    calibration: str = ""                            # how the probabilities were calibrated (temperature)
    stability: dict | None = None                    # a clip: the class at apex -2 .. +2 frames

    def save_inputs(self, path: str | Path) -> Path:
        """What the model was given, as `--save-inputs` writes it: onset and apex as the cache would store them
        (uint8 RGB at the cache's size, before any resizing for the model) and the AU vector (float32, 21)."""
        from mertool.files import write_bytes

        path = Path(path)
        if path.suffix != ".npz":
            raise MertoolError(f"--save-inputs {path}: expected a file name ending in .npz")
        aus = np.zeros(21, np.float32) if self.au_vector is None else np.asarray(self.au_vector, np.float32)
        buf = io.BytesIO()
        np.savez(buf, onset=np.asarray(self.onset_crop, np.uint8), apex=np.asarray(self.apex_crop, np.uint8), aus=aus)
        return write_bytes(path, buf.getvalue())

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
               "aus_source": au_source_name(self.aus), "aus_source_text": au_input_words(self.aus),
               "model_au_source": self.model_au_source, "au_vector_empty": self.aus.empty,
               "aus_ignored": self.aus.ignored, "faces_found": self.n_faces, "registration": self.registration}
        if self.aus.not_coded:
            out["aus_not_coded"] = list(self.aus.not_coded)
        if self.aus.warning:
            out["aus_warning"] = self.aus.warning
        if self.aus_estimated is not None:
            out["aus_estimated"] = {f"AU{au}": round(p, 4) for au, p in self.aus_estimated.items()}
        if self.stability is not None:
            out["stability"] = self.stability
        return out


def au_input_words(aus: AUInput) -> str:
    """What the classifier read, in words (predict's JSON and table)."""
    if aus.auto:
        return ("AUs estimated by the model, thresholded at 0.5" if aus.thresholded else
                "AUs estimated by the model")
    if aus.empty:
        return "an empty AU vector (--aus none)"
    if aus.ignored or not aus.origin:
        return "images only"
    return ("AUs coded by OpenFace" if aus.origin == "openface" else "hand-coded AUs given") + f" ({aus.source})"


def au_source_name(aus: AUInput) -> str:
    """What the classifier read as its AU vector: estimated, estimated-thresholded, none, or the given codes'
    origin."""
    if aus.auto:
        return "estimated-thresholded" if aus.thresholded else "estimated"
    if aus.empty or aus.ignored or not aus.origin:
        return "none"
    return aus.origin


DEFAULTS_NOTE = ("this checkpoint records no alignment (written before checkpoints did): pairs are made with "
                 "that release's preprocess defaults (dlib chip 224 px, padding 0.25, detector upsample 0 then 1, "
                 "ECC registration)")


class ResizePairs:
    """The pairs of a --no-align cache: both frames resized to the cache's size as they are, no face alignment."""

    register_mode = "none"

    def __init__(self, size: int = 224):
        self.size = int(size)

    def settings(self) -> dict:
        return {"method": "resize", "size": self.size}

    def align_pair(self, onset: np.ndarray, apex: np.ndarray, name: str = ""):
        from mertool.face.align import SIZE_MISMATCH, AlignedPair, AlignSkip, resize_square

        if onset.shape != apex.shape:  # resizing frames of different sizes would add motion between them
            raise AlignSkip(SIZE_MISMATCH, f"{name or 'pair'}: onset {onset.shape[:2]} and apex {apex.shape[:2]} "
                                           f"frames differ in size")
        return AlignedPair(resize_square(onset, self.size), resize_square(apex, self.size), None, 0, None, None, -1)


def pair_maker(settings) -> tuple[object, str]:
    """(what makes a model's pairs, a note when that is not exactly how its training cache made them).

    The checkpoint's record (cache.pair_settings) names the method: 'dlib-chip' builds a FaceAligner from every
    recorded setting its constructor takes (size, padding, detector, registration, and any added later), 'resize'
    (a --no-align cache) resizes the frames as they are. No record (a checkpoint older than the record): that
    release's preprocess defaults, ECC registration (DEFAULTS_NOTE); today's default is consensus.
    """
    import inspect

    from mertool.face.align import FaceAligner

    if not isinstance(settings, dict):  # older checkpoints: their caches were registered by ECC, then the default
        return FaceAligner(register="ecc"), DEFAULTS_NOTE
    method = settings.get("method")
    if method == "resize":
        size = int(settings.get("size") or settings.get("cache_image_size") or 224)
        return ResizePairs(size), (f"this model's cache was made with --no-align (frames cached as found, resized to "
                                   f"{size} px): the frames given are resized the same way, not aligned; give face "
                                   f"crops like its training frames")
    if method != "dlib-chip":
        what = "caches aligned in different ways" if "merged" in settings else f"alignment {method!r}"
        return FaceAligner(), (f"this model's cache was made by {what}, which predict cannot repeat: pairs are made "
                               f"with preprocess's defaults (dlib chip 224 px, padding 0.25, consensus registration)")
    settings = dict(settings)
    settings.setdefault("register", "none")  # a cache made before registration existed did not register its apex
    accepted = set(inspect.signature(FaceAligner.__init__).parameters) - {"self", "predictor"}
    return FaceAligner(**{k: v for k, v in settings.items() if k in accepted}), ""


class Predictor:
    """A trained mertool model plus the pair-making its training cache used; predicts pairs, CSV batches and clips."""

    def __init__(self, model: str | Path, device: str | torch.device = "cpu", aligner=None, force: bool = False):
        from mertool.reports.calibration import model_temperature
        from mertool.training.runs import load_checkpoint, resolve_model_path
        from mertool.training.train import resolve_device

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
        self.au_source: str = cfg.aus              # oracle | estimated | none: what it learnt from
        self.image_size: int = int(self.ckpt.get("image_size", 224))
        if cfg.needs_flow:
            raise MertoolError(f"{self.model_path}: this model reads optical flow (model.motion flow, or arch "
                               f"{cfg.arch}); predict computes no flow yet: evaluate it on a cache with flow "
                               f"(`mertool evaluate`)")
        self.notes: list[str] = []                 # how pairs are made, where that is not the training cache's way
        if aligner is not None:
            self.aligner = aligner
        else:
            self.aligner, note = pair_maker(self.ckpt.get("alignment"))
            if note:
                self.notes.append(note)

    @staticmethod
    def _aligner(settings):
        """The pair maker for a checkpoint's alignment record, without pair_maker's note: a FaceAligner with the
        recorded registration mode ('none' when the record names none), ResizePairs for a --no-align cache, ECC for
        a checkpoint without a record."""
        return pair_maker(settings)[0]

    def aus(self, text: str | None, where: str = "--aus") -> AUInput:
        """Parse AUs for this model (see parse_aus_input)."""
        return parse_aus_input(text, self.uses_aus, where, self.has_au_head, self.au_source)

    def classify(self, onset: np.ndarray, apex: np.ndarray,
                 aus: AUInput) -> tuple[np.ndarray, list | None, np.ndarray | None]:
        """Aligned uint8 crops -> (class probabilities, CVA maps of this sample or None, AU probabilities or None)."""
        probs, maps, au_probs, _feed = self._forward(onset, apex, aus)
        return probs, maps, au_probs

    @torch.no_grad()
    def _forward(self, onset: np.ndarray, apex: np.ndarray, aus: AUInput):
        """classify() plus the 21 values the classifier read as its AU vector (zeros when it reads none): one
        forward pass, two for a thresholded estimate (the head's output first, then the classifier on it)."""
        from mertool.training.dataset import resize_frames, to_float

        frames = torch.from_numpy(np.stack([onset, apex])).permute(0, 3, 1, 2).contiguous()
        frames = to_float(resize_frames(frames, self.image_size)).to(self.device)
        bits = torch.from_numpy(au_bits(aus.codes).astype(np.float32))[None].to(self.device)
        if aus.auto and aus.thresholded:
            _, au_logits = self.model(frames[:1], frames[1:], None, return_aus=True, estimate_aus=True)
            bits = (torch.sigmoid(au_logits.float()) >= AU_THRESHOLD).float()
        logits, maps = self.model(frames[:1], frames[1:], bits, return_maps=True,
                                  estimate_aus=aus.auto and not aus.thresholded)
        probs = torch.softmax(logits.float() / self.temperature, 1)[0].cpu().numpy()  # calibrated (T = 1: not)
        cva = maps.get("cva") if isinstance(maps, dict) else None
        au_logits = maps.get("au_logits") if isinstance(maps, dict) else None
        au_probs = None if au_logits is None else torch.sigmoid(au_logits.float())[0].cpu().numpy()
        if not self.uses_aus or aus.empty:
            feed = np.zeros(bits.shape[1], np.float32)
        elif aus.auto and not aus.thresholded:
            feed = au_probs.astype(np.float32)
        else:
            feed = bits[0].cpu().numpy().astype(np.float32)
        return probs, ([m[0].float().cpu() for m in cva] if cva else None), au_probs, feed

    def motion(self, onset: np.ndarray, apex: np.ndarray) -> dict[str, float]:
        """The pair's motion as the model sees it (its input size), as the checkpoint's training statistics were
        measured (mertool.predict.reject.pair_motion)."""
        from mertool.predict.reject import pair_motion
        from mertool.training.dataset import resize_frames

        frames = resize_frames(torch.from_numpy(np.stack([onset, apex])).permute(0, 3, 1, 2).contiguous(),
                               self.image_size)
        return {k: float(v[0]) for k, v in pair_motion(frames[:1], frames[1:]).items()}

    def _predict(self, onset_rgb, apex_rgb, aus: AUInput, onset_name: str, apex_name: str) -> Prediction:
        from mertool.data.aus import AU_VOCAB
        from mertool.face.align import NO_FACE, AlignSkip
        from mertool.predict.reject import Verdict, judge

        try:
            pair = self.aligner.align_pair(onset_rgb, apex_rgb, name=onset_name)
        except AlignSkip as exc:
            if exc.reason != NO_FACE:
                raise
            # nothing to classify: --force cannot help without a face
            return Prediction(emotion=None, probabilities={}, aus=aus, onset=onset_name, apex=apex_name, n_faces=0,
                              verdict=Verdict(False, "no-face", f"face not found: {exc}"),
                              calibration=self.calibration, model_au_source=self.au_source)
        reg = pair.registration.to_dict() if pair.registration is not None else None
        verdict = judge(self.motion(pair.onset, pair.apex), (self.trained_on or {}).get("motion"), reg)
        probs, maps, au_probs, feed = self._forward(pair.onset, pair.apex, aus)
        shown = verdict.ok or self.force
        return Prediction(emotion=self.classes[int(probs.argmax())] if shown else None,
                          probabilities={c: float(p) for c, p in zip(self.classes, probs)} if shown else {}, aus=aus,
                          onset=onset_name, apex=apex_name, n_faces=pair.n_faces, registration=reg,
                          onset_crop=pair.onset, apex_crop=pair.apex, cva_maps=maps,
                          aus_estimated=None if au_probs is None else
                          {au: float(p) for au, p in zip(AU_VOCAB, au_probs)},
                          verdict=verdict, forced=not verdict.ok and self.force, calibration=self.calibration,
                          au_vector=feed, model_au_source=self.au_source)

    def predict_pair(self, onset: str | Path, apex: str | Path, aus: str | AUInput | None = None,
                     aus_from: str | Path | None = None, apex_frame: int | None = None) -> Prediction:
        """Classify an onset/apex image pair; AUs from `aus` or from an OpenFace CSV (its apex_frame row, or the
        last row)."""
        from mertool.face.align import read_rgb

        if aus_from is not None:
            _one_au_source(aus, aus_from)
            aus = openface_input(aus_from, self.uses_aus, None, apex_frame, source=self.au_source)
        aus = aus if isinstance(aus, AUInput) else self.aus(aus)
        return self._predict(read_rgb(onset), read_rgb(apex), aus, str(onset), str(apex))

    def predict_clip(self, path: str | Path, aus: str | AUInput | None = None, onset: int | None = None,
                     apex: int | None = None, spotter=None, progress: Callable | None = None,
                     aus_from: str | Path | None = None):
        """Spot onset and apex in a video or frame folder (unless both are given), then classify that pair.

        With aus_from (an OpenFace CSV of the same clip), an AU is active when OpenFace codes it in any frame from
        the onset to the apex. Returns (Prediction, SpotResult or None when both frames were given).
        """
        from mertool.data.openface import read_openface_csv
        from mertool.spotting.apex import FrameSource, Spotter

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
            # a --no-align model's pairs are not aligned, but spotting measures motion on an aligned face
            spot = (spotter or Spotter(None if isinstance(self.aligner, ResizePairs) else self.aligner)).spot(
                source, progress)
            onset = spot.onset if onset is None else onset
            apex = spot.apex if apex is None else apex
        if onset == apex:
            raise MertoolError(f"{path}: onset and apex are the same frame ({onset}); give --onset and --apex")
        if openface is not None:
            aus = openface_input(aus_from, self.uses_aus, onset, apex, source=self.au_source)
        pred = self._predict(source.read(onset), source.read(apex), aus, source.describe(onset),
                             source.describe(apex))
        if pred.emotion is not None:
            pred.stability = self.apex_stability(source, onset, apex, aus, pred.emotion)
        return pred, spot

    def apex_stability(self, source, onset: int, apex: int, aus: AUInput, emotion: str, reach: int = 2) -> dict:
        """The class with the apex moved by -reach .. +reach frames: how much the answer hangs on the exact apex
        (a video and its extracted frames can spot it a frame apart)."""
        from mertool.face.align import AlignSkip

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
                    aus = openface_input(aus_from, self.uses_aus, None, apex_frame, source=self.au_source)
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
    reason, emotion then empty), registration_flag and registration_residual (the JSON's registration.flag and
    .residual: why the apex's registration was refused or is doubtful, and the px it leaves on the still face;
    empty where nothing was registered), error."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["onset", "apex", "aus", "emotion"] + [f"p_{c}" for c in classes]
               + ["cannot_judge", "registration_flag", "registration_residual", "error"])
    for r in results:
        probs = r.get("probabilities") or {}
        reg = r.get("registration") or {}
        w.writerow([r["onset"], r["apex"], r["aus_input"], r.get("emotion") or ""]
                   + [f"{probs[c]:.6f}" if c in probs else "" for c in classes]
                   + [r.get("cannot_judge") or "", reg.get("flag") or "",
                      "" if reg.get("residual") is None else f"{reg['residual']:.3f}", r.get("error", "")])
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
        if pred.verdict.code != "registration":  # there the reason is the registration's flag already
            _registration_lines(pred, console)
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
    elif pred.aus.auto and pred.aus.thresholded:
        on = [au for au, p in (pred.aus_estimated or {}).items() if p >= AU_THRESHOLD]
        console.print(f"AUs: estimated by the model's AU head, thresholded at {AU_THRESHOLD} (0/1, like the hand "
                      f"codes it was trained on): {format_aus(on) if on else 'none active'}", soft_wrap=True)
    elif pred.aus.auto:
        console.print("AUs: estimated by the model's AU head (no FACS coding given)")
    elif pred.aus.source:
        codes = format_aus(pred.aus.codes) if pred.aus.codes else "none active"
        console.print(f"AUs: {codes}" + (f"  (from {escape(pred.aus.source)})" if pred.aus.source != "--aus" else ""),
                      soft_wrap=True)
    if pred.aus.warning:
        console.print(f"[yellow]warning:[/] {escape(pred.aus.warning)}", soft_wrap=True)
    if pred.aus.not_coded:
        console.print("not coded by the source (left inactive): "
                      + ", ".join(f"AU{a}" for a in pred.aus.not_coded))
    if pred.aus_estimated:
        ranked = sorted(pred.aus_estimated.items(), key=lambda kv: -kv[1])
        console.print("AU head estimate (p >= 0.5 marked *): "
                      + "  ".join(f"AU{au} {p:.2f}{'*' if p >= 0.5 else ''}" for au, p in ranked), soft_wrap=True)
    if pred.n_faces > 1:
        console.print(f"note: {pred.n_faces} faces found; the largest was used")
    _registration_lines(pred, console)
    if pred.stability:
        st = pred.stability
        frames = ", ".join(f"{r['apex']}: {r['emotion']}" for r in st["frames"])
        console.print(("apex stable" if st["stable"] else f"[yellow]apex-sensitive:[/] {st['agree']} of {st['of']} "
                       "nearby apex frames give this class") + f" (apex -2..+2: {escape(frames)})", soft_wrap=True)
    if pred.calibration:
        console.print(f"probabilities: {escape(pred.calibration)}", soft_wrap=True)
    console.print(f"predicted: [bold]{escape(pred.emotion)}[/] ({pred.probabilities[pred.emotion]:.3f})"
                  + (f"   model: {escape(str(model_path))}" if model_path else ""), soft_wrap=True)


def _registration_lines(pred: Prediction, console) -> None:
    """The registration's warnings (its flag, a fallback, a large residual), as `preprocess` reports them."""
    if pred.registration is None:
        return
    from rich.markup import escape

    from mertool.face.align import registration_warnings

    for line in registration_warnings("pair", pred.registration):
        console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
