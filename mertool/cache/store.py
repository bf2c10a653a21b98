"""The HDF5 cache: aligned onset/apex pairs plus the sheet's facts, one file every later command reads.

Layout (schema 1):
  /onset, /apex      uint8  N x S x S x 3   (RGB, chunked one sample per chunk)
  /aus               uint8  N x 21          (bits over AU_VOCAB)
  /landmarks         float32 N x 68 x 2     (onset landmarks in crop pixels; NaN when not aligned)
  /checksum          uint32 N               (crc32 of onset+apex bytes, checked by `cache verify`)
  /meta/<text>       utf-8 strings N        (subject, sample_id, emotion, aus_raw, source_onset, source_apex)
  /meta/<int>        int32 N                (onset_frame, apex_frame, offset_frame; -1 = unknown)
  /meta/apex_estimated  bool N
  /meta/dataset      utf-8 strings N        (each sample's source dataset: casme2, samm, smic, ...)
  /meta/aus_known    bool N                 (False: the dataset codes no AUs, e.g. SMIC; not "no AU active")
  /registration/motion  float32 N x 6      (REGISTRATION_FIELDS: head motion apex vs onset in crop px / degrees, and
                                            the residual before and after registration; NaN = none. For 'consensus'
                                            the residual is the still face's, measured on held-out patches; for
                                            'ecc'/'landmarks' the upper face's median flow: align.Registration)
  /registration/quality float32 N x 3      (QUALITY_FIELDS: share of patches that follow the head, median motion of
                                            the others after registration (px), patches tracked; NaN = not measured)
  /registration/flag    utf-8 N            (why the pair's registration was refused or is doubtful; "" = trusted)
  /registration/method  utf-8 N            (consensus | ecc | landmarks | "" when the apex was not registered)
  /registration/upsample int8 N            (detector upsampling that found the onset's face; -1 = no detection)
  /flow              float16 N x S x S x 2  (optional: optical flow onset -> apex, crop px, u then v; NaN = not yet
                                            computed; mertool.face.flow)
  /strain            float16 N x S x S      (optional: magnitude of the optical strain tensor of /flow)
  attrs: schema_version, dataset, au_vocab, image_size, alignment (JSON), mertool_version, created,
         flow (JSON: method, parameters, library; only with /flow)
The class map is not stored: recipes choose it when the cache is loaded. `dataset` and `aus_known` came after the
first release; caches without them still load, with values inferred from the `dataset` attribute (a merged cache's
subjects carry their dataset as a prefix): AUs are known for every dataset but SMIC. Caches written before
registration have no /registration group: they load as before, and read as "not recorded"; caches made before
flags and patch figures existed have no /registration/quality or /flag: they read as NaN and "" (nothing flagged).
Flow is optional (`preprocess --flow`, `cache add-flow`): a cache without it loads as before, with `flow` and
`strain` None.
"""
from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from mertool import __version__, files
from mertool.data.aus import AU_VOCAB
from mertool.errors import MertoolError
from mertool.synth.faces import SHEET_NAME

SCHEMA_VERSION = 1
TEXT_FIELDS = ("subject", "sample_id", "emotion", "aus_raw", "source_onset", "source_apex")
INT_FIELDS = ("onset_frame", "apex_frame", "offset_frame")
REGISTRATION_FIELDS = ("shift_x", "shift_y", "rotation", "scale", "residual_before", "residual")
QUALITY_FIELDS = ("still_share", "moving_px", "patches")
REFUSED = "registration refused"          # how align.FaceAligner._plausible's flag begins
ADDED_FIELDS = ("dataset", "aus_known")  # absent from caches of the first release: inferred on load
NO_AU_CODES = ("smic",)                  # datasets whose sheets give no AU codes
_STR = h5py.string_dtype("utf-8")


def checksum(onset: np.ndarray, apex: np.ndarray) -> int:
    """crc32 over both frames' bytes."""
    return zlib.crc32(apex.tobytes(), zlib.crc32(onset.tobytes())) & 0xFFFFFFFF


@dataclass
class CachedSample:
    """One aligned sample on its way into the cache."""

    onset: np.ndarray            # S x S x 3 uint8 RGB
    apex: np.ndarray
    aus: np.ndarray              # 21 uint8 bits
    landmarks: np.ndarray | None  # 68 x 2 float32 in crop pixels
    subject: str
    sample_id: str
    emotion: str
    aus_raw: str
    source_onset: str = ""
    source_apex: str = ""
    onset_frame: int = -1
    apex_frame: int = -1
    offset_frame: int = -1
    apex_estimated: bool = False
    registration: dict | None = None   # REGISTRATION_FIELDS (+ "method"), from align.Registration.to_dict()
    upsample: int = -1                 # detector upsampling that found the onset's face; -1 = none
    dataset: str = ""            # '' = the cache's own dataset
    aus_known: bool | None = None  # None = as the dataset has it (unknown for SMIC)
    flow: np.ndarray | None = None     # S x S x 2 (u, v) when the cache holds flow (merge copies it); else NaN
    strain: np.ndarray | None = None   # S x S


def infer_datasets(dataset_attr: str, subjects) -> np.ndarray:
    """Each sample's dataset for a cache that does not store it: the attribute, or a merged cache's subject prefix."""
    parts = str(dataset_attr).split("+")
    if len(parts) == 1:
        return np.array([parts[0]] * len(subjects), dtype=object)
    out = []
    for s in subjects:
        prefix = str(s).split("_", 1)[0]
        out.append(prefix if prefix in parts else str(dataset_attr))
    return np.array(out, dtype=object)


def infer_aus_known(datasets) -> np.ndarray:
    """AU codes are known for every dataset but those whose sheets have none."""
    return np.array([str(d) not in NO_AU_CODES for d in datasets], dtype=bool)


class CacheWriter:
    """Appends samples to `<out>.tmp` and renames it to `<out>` on close, so no half cache has the final name."""

    def __init__(self, out: str | Path, dataset: str, image_size: int, alignment: dict, resume: bool = False):
        self.out = Path(out)
        self.tmp = self.out.with_name(self.out.name + ".tmp")
        self.size = int(image_size)
        self.done: set[tuple[str, str]] = set()
        start = None
        if resume:
            # Continue an interrupted run (.tmp) or extend a finished cache; a damaged .tmp is started over.
            for candidate in (self.tmp, self.out):
                if candidate.exists() and _readable(candidate):
                    start = candidate
                    break
        if start is not None and start != self.tmp:
            import shutil
            shutil.copyfile(start, self.tmp)
        elif start is None and self.tmp.exists():
            self.tmp.unlink()
        self.f = h5py.File(self.tmp, "a")
        if start is None:
            self._create(dataset, alignment)
        else:
            _check_schema(self.f, start)
            _add_missing_fields(self.f)
            if int(self.f.attrs["image_size"]) != self.size:
                raise MertoolError(f"{start}: cached image size {self.f.attrs['image_size']} differs from "
                                   f"requested {self.size}; use a new --out")
            _add_registration(self.f)   # a cache from before registration gets the group, NaN for its samples
            m = self.f["meta"]
            self.done = {(s.decode() if isinstance(s, bytes) else s, i.decode() if isinstance(i, bytes) else i)
                         for s, i in zip(m["subject"][:], m["sample_id"][:])}

    def _create(self, dataset: str, alignment: dict) -> None:
        f, s = self.f, self.size
        for name in ("onset", "apex"):
            f.create_dataset(name, (0, s, s, 3), maxshape=(None, s, s, 3), dtype="uint8", chunks=(1, s, s, 3))
        f.create_dataset("aus", (0, len(AU_VOCAB)), maxshape=(None, len(AU_VOCAB)), dtype="uint8")
        f.create_dataset("landmarks", (0, 68, 2), maxshape=(None, 68, 2), dtype="float32")
        f.create_dataset("checksum", (0,), maxshape=(None,), dtype="uint32")
        m = f.create_group("meta")
        for name in TEXT_FIELDS:
            m.create_dataset(name, (0,), maxshape=(None,), dtype=_STR)
        for name in INT_FIELDS:
            m.create_dataset(name, (0,), maxshape=(None,), dtype="int32")
        m.create_dataset("apex_estimated", (0,), maxshape=(None,), dtype="bool")
        _add_registration(f)
        m.create_dataset("dataset", (0,), maxshape=(None,), dtype=_STR)
        m.create_dataset("aus_known", (0,), maxshape=(None,), dtype="bool")
        f.attrs.update(schema_version=SCHEMA_VERSION, dataset=dataset, au_vocab=np.array(AU_VOCAB, dtype="int32"),
                       image_size=s, alignment=json.dumps(alignment, sort_keys=True), mertool_version=__version__,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def __len__(self) -> int:
        return self.f["onset"].shape[0]

    def has(self, subject: str, sample_id: str) -> bool:
        """True when this sample is already in the cache (for --resume)."""
        return (subject, sample_id) in self.done

    def append(self, s: CachedSample) -> None:
        """Add one sample and flush, so an interrupted run keeps what it finished."""
        for frame, name in ((s.onset, "onset"), (s.apex, "apex")):
            if frame.shape != (self.size, self.size, 3) or frame.dtype != np.uint8:
                raise MertoolError(f"{s.subject}/{s.sample_id}: {name} frame is {frame.shape} {frame.dtype}, "
                                   f"expected ({self.size}, {self.size}, 3) uint8")
        f, n = self.f, len(self)
        lm = np.full((68, 2), np.nan, np.float32) if s.landmarks is None else np.asarray(s.landmarks, np.float32)
        values = {"onset": s.onset, "apex": s.apex, "aus": np.asarray(s.aus, np.uint8), "landmarks": lm,
                  "checksum": checksum(s.onset, s.apex)}
        for name, value in values.items():
            f[name].resize(n + 1, axis=0)
            f[name][n] = value
        m = f["meta"]
        for name in TEXT_FIELDS + INT_FIELDS + ("apex_estimated",):
            m[name].resize(n + 1, axis=0)
            v = getattr(s, name)
            m[name][n] = -1 if (name in INT_FIELDS and v is None) else v
        r, reg = f["registration"], s.registration or {}
        for name in ("motion", "method", "upsample", "quality", "flag"):
            r[name].resize(n + 1, axis=0)
        if "flow" in f:   # a cache with flow: a new sample's rows stay NaN until flow.fill_flow computes them
            for name, value in (("flow", s.flow), ("strain", s.strain)):
                f[name].resize(n + 1, axis=0)
                if value is not None:
                    f[name][n] = value
        r["motion"][n] = [reg.get(k, np.nan) for k in REGISTRATION_FIELDS]
        r["quality"][n] = [np.nan if reg.get(k) is None else reg[k] for k in QUALITY_FIELDS]
        r["flag"][n] = str(reg.get("flag", "") or "")
        r["method"][n] = reg.get("method", "")
        r["upsample"][n] = s.upsample
        dataset = s.dataset or str(f.attrs["dataset"])
        for name, v in (("dataset", dataset),
                        ("aus_known", infer_aus_known([dataset])[0] if s.aus_known is None else s.aus_known)):
            m[name].resize(n + 1, axis=0)
            m[name][n] = v
        f.flush()
        self.done.add((s.subject, s.sample_id))

    def set_attrs(self, **attrs) -> None:
        """Record extra file attributes (e.g. the preprocess summary)."""
        self.f.attrs.update(attrs)

    def close(self) -> Path:
        """Finish: close the temporary file and rename it over the final name."""
        self.f.close()
        os.replace(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        """Close without renaming; the .tmp stays for --resume."""
        try:
            self.f.close()
        except Exception:
            pass


def _add_registration(f: h5py.File) -> None:
    """The /registration group, filled with "none" for samples already in the file (an older cache); a group from
    before flags and patch figures gets those datasets (NaN, "")."""
    n = f["onset"].shape[0]
    if "registration" not in f:
        g = f.create_group("registration")
        g.create_dataset("motion", (n, len(REGISTRATION_FIELDS)), maxshape=(None, len(REGISTRATION_FIELDS)),
                         dtype="float32", fillvalue=np.nan)
        g["motion"].attrs["columns"] = json.dumps(REGISTRATION_FIELDS)
        g.create_dataset("method", (n,), maxshape=(None,), dtype=_STR)
        g.create_dataset("upsample", (n,), maxshape=(None,), dtype="int8", fillvalue=-1)
    g = f["registration"]
    if "quality" not in g:
        g.create_dataset("quality", (n, len(QUALITY_FIELDS)), maxshape=(None, len(QUALITY_FIELDS)), dtype="float32",
                         fillvalue=np.nan)
        g["quality"].attrs["columns"] = json.dumps(QUALITY_FIELDS)
    if "flag" not in g:
        g.create_dataset("flag", (n,), maxshape=(None,), dtype=_STR)


def create_flow_datasets(f: h5py.File) -> None:
    """/flow and /strain for every sample of `f` (NaN: not computed yet), one sample per chunk like the frames."""
    n, s = f["onset"].shape[0], int(f.attrs["image_size"])
    for name, shape in (("flow", (s, s, 2)), ("strain", (s, s))):
        if name not in f:
            f.create_dataset(name, (n, *shape), maxshape=(None, *shape), dtype="float16", chunks=(1, *shape),
                             fillvalue=np.nan)
    f["flow"].attrs["columns"] = json.dumps(["u", "v"])


def read_flow_settings(f: h5py.File) -> dict | None:
    """The cache's flow settings (method, params, library, ...), or None for a cache without flow."""
    if "flow" not in f or "flow" not in f.attrs:
        return None
    return json.loads(f.attrs["flow"])


def read_registration(f: h5py.File) -> dict | None:
    """{field: array N} of a cache's registration record (REGISTRATION_FIELDS, QUALITY_FIELDS, 'flag', 'method',
    'upsample'), or None for a cache written before registration was recorded. A cache from before flags and patch
    figures reads NaN and "" for them."""
    if "registration" not in f:
        return None
    g = f["registration"]
    motion = g["motion"][:]
    n = len(motion)
    out = {k: motion[:, i] for i, k in enumerate(REGISTRATION_FIELDS)}
    quality = g["quality"][:] if "quality" in g else np.full((n, len(QUALITY_FIELDS)), np.nan, np.float32)
    out.update({k: quality[:, i] for i, k in enumerate(QUALITY_FIELDS)})
    out["flag"] = _texts(g["flag"]) if "flag" in g else np.array([""] * n, dtype=object)
    out["method"] = _texts(g["method"])
    out["upsample"] = g["upsample"][:]
    return out


def registration_summary(reg: dict | None) -> dict | None:
    """Median, p90 and max of head motion and residuals over the registered samples; counts by method and by
    detector upsampling; the flagged pairs (refused or doubtful registrations) and, for 'consensus', the share of
    patches that followed the head."""
    if reg is None:
        return None
    from collections import Counter
    done = np.isfinite(reg["residual"])
    shift = np.hypot(reg["shift_x"], reg["shift_y"])[done]
    flags = np.array([bool(x) for x in reg["flag"]], bool)
    refused = np.array([str(x).startswith(REFUSED) for x in reg["flag"]], bool)

    def stats(v):
        v = v[np.isfinite(v)]
        return {"median": round(float(np.median(v)), 3), "p90": round(float(np.percentile(v, 90)), 3),
                "max": round(float(np.max(v)), 3)} if len(v) else None

    return {"registered": int(done.sum()), "methods": dict(Counter(m or "none" for m in reg["method"])),
            "upsample": {int(k): int(v) for k, v in sorted(Counter(reg["upsample"].tolist()).items())},
            "shift_px": stats(shift), "rotation_deg": stats(np.abs(reg["rotation"][done])),
            "scale": stats(reg["scale"][done]), "residual_before_px": stats(reg["residual_before"][done]),
            "residual_px": stats(reg["residual"][done]),
            "residual_measure": "held-out still patches" if "consensus" in set(reg["method"]) else "upper-face flow",
            "still_share": stats(reg["still_share"][done]), "moving_px": stats(reg["moving_px"][done]),
            "flagged": int(flags.sum()), "refused": int(refused.sum())}


def registration_line(summary: dict | None) -> str:
    """`cache info`'s one-line account of registration_summary()."""
    if summary is None:
        return "not recorded (cache made before registration)"
    if not summary["registered"]:
        return "none (apex cut with the onset's crop)"
    r, b, s = summary["residual_px"], summary["residual_before_px"], summary["shift_px"]
    what = "still-face residual (held-out patches)" if summary.get("residual_measure", "").startswith("held") \
        else "upper-face residual"
    still = summary.get("still_share")
    return (f"{summary['registered']} pairs ({', '.join(f'{k} {v}' for k, v in summary['methods'].items())}); "
            f"head shift median {s['median']:.2f} / p90 {s['p90']:.2f} / max {s['max']:.2f} px, rotation max "
            f"{summary['rotation_deg']['max']:.2f} deg; {what} median {b['median']:.2f} -> "
            f"{r['median']:.2f} / p90 {r['p90']:.2f} / max {r['max']:.2f} px"
            + (f"; patches following the head median {100 * still['median']:.0f} %" if still else "")
            + f"; flagged {summary.get('flagged', 0)} (refused {summary.get('refused', 0)}); detector upsample "
            + ", ".join(f"{k}: {v}" for k, v in summary["upsample"].items()))


def _add_missing_fields(f: h5py.File) -> None:
    """Give a first-release cache opened for appending its `dataset` and `aus_known` fields (inferred values)."""
    m = f["meta"]
    datasets = infer_datasets(str(f.attrs["dataset"]), _texts(m["subject"]))
    for name, values, dtype in (("dataset", datasets.astype(str), _STR),
                                ("aus_known", infer_aus_known(datasets), "bool")):
        if name not in m:
            m.create_dataset(name, (len(values),), maxshape=(None,), dtype=dtype)
            if len(values):
                m[name][:] = values


def sample_fields(attrs_dataset: str, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(dataset, aus_known) per sample from a cache's meta arrays, inferred where the cache predates them."""
    datasets = meta.get("dataset")
    if datasets is None:
        datasets = infer_datasets(attrs_dataset, meta["subject"])
    known = meta.get("aus_known")
    if known is None:
        known = infer_aus_known(datasets)
    return np.asarray(datasets, dtype=object), np.asarray(known, dtype=bool)


def made_from_synth(attrs: dict) -> bool:
    """The cache was preprocessed from `mertool synth` data (its preprocess report names synth's coding sheet)."""
    text = attrs.get("preprocess_summary")
    try:
        sheet = json.loads(text).get("sheet") if text else None
    except (ValueError, AttributeError):
        return False
    return bool(sheet) and Path(str(sheet)).name == SHEET_NAME


def pair_settings(attrs: dict) -> dict:
    """How a cache made its pairs, as a checkpoint records it: the `alignment` attribute (method, size, padding,
    detector, registration and any setting added to it later), plus every other attribute that names alignment or
    registration settings, copied as they are, and the cache's image size and dataset."""
    def parsed(value):
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value.tolist() if isinstance(value, np.ndarray) else value

    alignment = parsed(attrs.get("alignment"))
    out = dict(alignment) if isinstance(alignment, dict) else {"method": str(alignment or "unknown")}
    for key, value in attrs.items():
        if key != "alignment" and ("align" in key or "regist" in key) and key not in out:
            out[key] = parsed(value)
    out.setdefault("size", int(attrs.get("image_size", 0) or 0))
    out["cache_image_size"] = int(attrs.get("image_size", 0) or 0)
    out["cache_dataset"] = str(attrs.get("dataset", ""))
    out["cache_synthetic"] = made_from_synth(attrs)
    return out


def _readable(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "onset" in f
    except Exception:
        return False


def _check_schema(f: h5py.File, path) -> None:
    found = f.attrs.get("schema_version")
    if found is None:
        raise MertoolError(f"{path}: not a mertool cache (no schema_version attribute); expected schema {SCHEMA_VERSION}")
    if int(found) != SCHEMA_VERSION:
        raise MertoolError(f"{path}: cache schema version {int(found)}, expected {SCHEMA_VERSION}; "
                           f"re-run `mertool preprocess`")


def open_cache(path: str | Path) -> h5py.File:
    """Open a cache read-only, with a clear error for a missing, truncated or foreign file or an old schema."""
    path = Path(path)
    if not path.exists():
        raise MertoolError(f"{path}: no such cache file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise MertoolError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    try:
        _check_schema(f, path)
    except MertoolError:
        f.close()
        raise
    return f


@dataclass
class CacheData:
    """A whole cache in memory (a CASME II cache is ~75 MB): frames, AU bits and per-sample facts."""

    path: Path
    attrs: dict
    onset: np.ndarray        # N x S x S x 3 uint8
    apex: np.ndarray
    aus: np.ndarray          # N x 21 uint8
    landmarks: np.ndarray    # N x 68 x 2 float32
    meta: dict = field(default_factory=dict)  # name -> np.ndarray (str objects or ints)
    flow: np.ndarray | None = None     # N x S x S x 2 float16 (u, v), onset -> apex, crop px; None: no flow
    strain: np.ndarray | None = None   # N x S x S float16

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def subjects(self) -> np.ndarray:
        return self.meta["subject"]

    @property
    def emotions(self) -> np.ndarray:
        return self.meta["emotion"]

    @property
    def sample_ids(self) -> np.ndarray:
        return self.meta["sample_id"]

    @property
    def datasets(self) -> np.ndarray:
        return self.meta["dataset"]

    @property
    def aus_known(self) -> np.ndarray:
        return self.meta["aus_known"]

    @property
    def flow_settings(self) -> dict | None:
        """How the flow was made (method, params, library), or None when the cache has none (or it was not read)."""
        if self.flow is None or not isinstance(self.attrs.get("flow"), str):
            return None
        return json.loads(self.attrs["flow"])


def load_cache(path: str | Path, flow: bool = True) -> CacheData:
    """Read a whole cache into memory once; its flow and strain too when it has them and `flow` is set.

    Flow with pairs not yet computed (an interrupted `preprocess --flow`) is an error naming the fix."""
    with open_cache(path) as f:
        try:
            attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
            meta = {}
            for name, ds in f["meta"].items():
                if h5py.check_string_dtype(ds.dtype) is not None:
                    meta[name] = np.array(ds.asstr()[:], dtype=object)
                else:
                    meta[name] = ds[:]
            meta["dataset"], meta["aus_known"] = sample_fields(str(attrs.get("dataset", "")), meta)
            motion = {}
            if flow and read_flow_settings(f) is not None:
                motion = {"flow": f["flow"][:], "strain": f["strain"][:]}
                missing = np.flatnonzero(~np.isfinite(motion["flow"][:, 0, 0, 0]))
                if len(missing):
                    raise MertoolError(f"{path}: flow of {len(missing)} sample(s) not computed (e.g. #{missing[0]}); "
                                       f"run `mertool cache add-flow {path} --replace`")
            return CacheData(Path(path), attrs, f["onset"][:], f["apex"][:], f["aus"][:], f["landmarks"][:], meta,
                             **motion)
        except (KeyError, OSError) as exc:
            raise MertoolError(f"{path}: damaged cache ({exc})") from None


# ------------------------------------------------------------------------ inspection: info, verify, show, merge

def _texts(ds) -> np.ndarray:
    return np.array(ds.asstr()[:], dtype=object)


def _attrs(f: h5py.File) -> dict:
    out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    for k in ("alignment", "preprocess_summary", "merged_from", "flow"):
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                pass
    return out


def cache_info(path: str | Path) -> dict:
    """Attributes and counts (samples, per subject, per raw emotion, per AU) of a cache."""
    from collections import Counter

    with open_cache(path) as f:
        try:
            m = f["meta"]
            subjects, emotions = _texts(m["subject"]), _texts(m["emotion"])
            aus = f["aus"][:]
            lm = f["landmarks"][:]
            meta = {k: (_texts(m[k]) if k == "dataset" else m[k][:]) for k in ADDED_FIELDS if k in m}
            datasets, known = sample_fields(str(f.attrs.get("dataset", "")), {"subject": subjects, **meta})
            by_dataset = {}
            for d in dict.fromkeys(datasets):
                sel = datasets == d
                by_dataset[str(d)] = {"samples": int(sel.sum()), "subjects": len(set(subjects[sel])),
                                      "aus_known": int(known[sel].sum()), "aus_unknown": int((~known[sel]).sum())}
            return {"path": str(path), "bytes": Path(path).stat().st_size, "samples": int(f["onset"].shape[0]),
                    "attrs": _attrs(f), "datasets": by_dataset, "aus_known": int(known.sum()),
                    "aus_unknown": int((~known).sum()),
                    "aus_known_stored": all(k in m for k in ADDED_FIELDS),
                    "subjects": dict(sorted(Counter(subjects).items())),
                    "emotions": dict(Counter(emotions).most_common()),
                    "aus": {int(au): int(n) for au, n in zip(AU_VOCAB, aus.sum(0)) if n},
                    "apex_estimated": int(m["apex_estimated"][:].sum()),
                    "with_landmarks": int(np.isfinite(lm).all(axis=(1, 2)).sum()),
                    "registration": registration_summary(read_registration(f)), "flow": flow_summary(f)}
        except (KeyError, OSError, ValueError) as exc:
            raise MertoolError(f"{path}: damaged cache ({exc})") from None


def flow_summary(f: h5py.File, block: int = 16) -> dict | None:
    """The cache's flow settings with how many pairs have it and the median / p99 flow length and strain over all
    pixels of those pairs; None without flow."""
    settings = read_flow_settings(f)
    if settings is None:
        return None
    n = f["flow"].shape[0]
    done, lengths, strains = 0, [], []
    for start in range(0, n, block):
        fl = f["flow"][start:start + block].astype(np.float32)
        ok = np.isfinite(fl[:, 0, 0, 0])
        done += int(ok.sum())
        lengths.append(np.hypot(fl[ok, ..., 0], fl[ok, ..., 1]).ravel()[::7])   # a sample of pixels is enough
        strains.append(f["strain"][start:start + block][ok].astype(np.float32).ravel()[::7])
    length, strain = np.concatenate(lengths), np.concatenate(strains)

    def stats(v):
        return {"median": round(float(np.median(v)), 4), "p99": round(float(np.percentile(v, 99)), 4)} \
            if len(v) else None

    return {**settings, "pairs": done, "samples": n, "length_px": stats(length), "strain": stats(strain)}


def flow_line(summary: dict | None) -> str:
    """`cache info`'s one-line account of flow_summary()."""
    if summary is None:
        return "none (add it with `mertool cache add-flow`)"
    params = ", ".join(f"{k}={v}" for k, v in summary["params"].items())
    text = f"{summary['method']} ({summary['library']}; {params}); {summary['pairs']} of {summary['samples']} pairs"
    if summary["length_px"]:
        text += (f"; length median {summary['length_px']['median']:.2f} / p99 {summary['length_px']['p99']:.2f} px,"
                 f" strain median {summary['strain']['median']:.4f} / p99 {summary['strain']['p99']:.4f}")
    return text


def verify_cache(path: str | Path, block: int = 64) -> dict:
    """Check schema, dataset shapes and dtypes, empty (constant) frames, landmarks and checksums.

    Returns {'path', 'samples', 'problems': [one line each, naming the sample], 'ok'}; a file that cannot be opened
    at all raises MertoolError (from open_cache).
    """
    problems: list[str] = []
    with open_cache(path) as f:
        expect = {"onset": "uint8", "apex": "uint8", "aus": "uint8", "landmarks": "float32", "checksum": "uint32"}
        expect.update({f"meta/{k}": "str" for k in TEXT_FIELDS})
        expect.update({f"meta/{k}": "int32" for k in INT_FIELDS})
        expect["meta/apex_estimated"] = "bool"
        for k, dtype in (("dataset", "str"), ("aus_known", "bool")):
            if f"meta/{k}" in f:  # optional: first-release caches lack them
                expect[f"meta/{k}"] = dtype
        missing = [k for k in expect if k not in f]
        if missing:
            return {"path": str(path), "samples": None, "ok": False,
                    "problems": [f"missing dataset(s) {', '.join('/' + k for k in missing)}"]}
        n = f["onset"].shape[0]
        s = f.attrs.get("image_size")
        shapes = {"onset": (n, s, s, 3), "apex": (n, s, s, 3), "aus": (n, len(AU_VOCAB)), "landmarks": (n, 68, 2),
                  "checksum": (n,)}
        for k, dtype in expect.items():
            ds = f[k]
            want_shape = shapes.get(k, (n,))
            if ds.shape != want_shape:
                problems.append(f"/{k}: shape {ds.shape}, expected {want_shape}")
            ok_dtype = h5py.check_string_dtype(ds.dtype) is not None if dtype == "str" else ds.dtype == np.dtype(dtype)
            if not ok_dtype:
                problems.append(f"/{k}: dtype {ds.dtype}, expected {dtype}")
        if "registration" in f:   # absent in caches from before registration: nothing to check
            want = {"motion": (n, len(REGISTRATION_FIELDS)), "method": (n,), "upsample": (n,),
                    "quality": (n, len(QUALITY_FIELDS)), "flag": (n,)}
            for k, shape in want.items():
                if k in ("quality", "flag") and k not in f["registration"]:
                    continue   # caches from before flags and patch figures
                found = f["registration"][k].shape if k in f["registration"] else None
                if found != shape:
                    problems.append(f"/registration/{k}: shape {found}, expected {shape}")
        if "flow" in f or "strain" in f or "flow" in f.attrs:   # optional: caches without flow have none of them
            for k, shape in (("flow", (n, s, s, 2)), ("strain", (n, s, s))):
                ds = f[k] if k in f else None
                if ds is None or ds.shape != shape or ds.dtype != np.float16:
                    problems.append(f"/{k}: " + ("missing" if ds is None else f"shape {ds.shape} {ds.dtype}")
                                    + f", expected {shape} float16")
            if "flow" not in f.attrs:
                problems.append("attribute 'flow' missing (how the flow was made)")
        vocab = tuple(np.asarray(f.attrs.get("au_vocab", ())).tolist())
        if vocab != AU_VOCAB:
            problems.append(f"attribute au_vocab {vocab}, expected {AU_VOCAB}")
        for a in ("dataset", "alignment", "mertool_version", "created"):
            if a not in f.attrs:
                problems.append(f"attribute {a!r} missing")
        if problems:
            return {"path": str(path), "samples": n, "ok": False, "problems": problems}
        try:
            names = [f"{a}/{b} (#{i})" for i, (a, b) in
                     enumerate(zip(_texts(f["meta/subject"]), _texts(f["meta/sample_id"])))]
            seen: dict[str, int] = {}
            for i, name in enumerate(names):
                key = name.rsplit(" ", 1)[0]
                if key in seen:
                    problems.append(f"{name}: duplicate of sample #{seen[key]}")
                seen.setdefault(key, i)
            aus = f["aus"][:]
            for i in np.flatnonzero((aus > 1).any(1)):
                problems.append(f"{names[i]}: AU bits other than 0/1")
            lm = f["landmarks"][:]
            finite = np.isfinite(lm)
            for i in np.flatnonzero(finite.any((1, 2)) & ~finite.all((1, 2))):
                problems.append(f"{names[i]}: landmarks partly missing")
            stored = f["checksum"][:]
            for start in range(0, n, block):
                onset, apex = f["onset"][start:start + block], f["apex"][start:start + block]
                for j in range(len(onset)):
                    i = start + j
                    for what, frame in (("onset", onset[j]), ("apex", apex[j])):
                        if frame.min() == frame.max():
                            problems.append(f"{names[i]}: {what} frame is empty (every pixel {int(frame.min())})")
                    c = checksum(onset[j], apex[j])
                    if c != int(stored[i]):
                        problems.append(f"{names[i]}: checksum mismatch (stored {int(stored[i]):08x}, "
                                        f"frames give {c:08x})")
            if "flow" in f:
                for start in range(0, n, block):
                    fl, st = f["flow"][start:start + block], f["strain"][start:start + block]
                    for j in range(len(fl)):
                        if not np.isfinite(fl[j]).all() or not np.isfinite(st[j]).all():
                            what = "not computed" if np.isnan(fl[j, 0, 0, 0]) else "has non-finite values"
                            problems.append(f"{names[start + j]}: flow {what} (`mertool cache add-flow --replace`)")
        except (OSError, KeyError) as exc:
            problems.append(f"cannot read the samples ({exc}); the file is damaged")
    return {"path": str(path), "samples": n, "ok": not problems, "problems": problems}


def find_sample(f: h5py.File, spec: str) -> int:
    """Index of a sample given as 'SAMPLE_ID', 'SUBJECT/SAMPLE_ID' or an index ('12', '-1')."""
    subjects, ids = _texts(f["meta/subject"]), _texts(f["meta/sample_id"])
    n = len(ids)
    spec = str(spec).strip()
    hits = np.flatnonzero(ids == spec)
    if "/" in spec and not len(hits):
        subj, sid = spec.split("/", 1)
        hits = np.flatnonzero((subjects == subj) & (ids == sid))
    if len(hits) == 1:
        return int(hits[0])
    if len(hits) > 1:
        keys = ", ".join(f"{subjects[i]}/{ids[i]}" for i in hits[:5])
        raise MertoolError(f"sample {spec!r} matches {len(hits)} samples ({keys}); give it as SUBJECT/SAMPLE")
    try:
        i = int(spec)
    except ValueError:
        i = None
    if i is not None and -n <= i < n:
        return i % n
    raise MertoolError(f"sample {spec!r} not found in {f.filename}: expected a sample id, SUBJECT/SAMPLE or an "
                       f"index 0..{n - 1} (e.g. {subjects[0]}/{ids[0]})" if n else f"{f.filename}: the cache is empty")


def show_sample(path: str | Path, sample: str, png: str | Path, gain: float | None = None, dpi: int = 100) -> dict:
    """Onset, apex, amplified |apex - onset| and the red/cyan overlay (onset red, apex cyan: grey where they agree)
    with the sample's registration written on it, side by side in `png`; returns what was drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with open_cache(path) as f:
        try:
            i = find_sample(f, sample)
            onset, apex, lm = f["onset"][i], f["apex"][i], f["landmarks"][i]
            meta = {k: (ds.asstr()[i] if h5py.check_string_dtype(ds.dtype) is not None else ds[i].item())
                    for k, ds in f["meta"].items()}
            dataset = str(f.attrs.get("dataset", ""))
            reg = read_registration(f)
            flow_set = read_flow_settings(f)
            flow = strain = None
            if flow_set is not None:
                flow, strain = f["flow"][i].astype(np.float32), f["strain"][i].astype(np.float32)
                if not np.isfinite(flow).all():
                    flow = strain = None   # this pair's flow was not computed: drawn as the pair alone
        except (KeyError, OSError) as exc:
            raise MertoolError(f"{path}: damaged cache ({exc})") from None
    reg = None if reg is None else {k: v[i] for k, v in reg.items()}
    diff = np.abs(apex.astype(np.float32) - onset.astype(np.float32)).mean(-1)
    peak = float(np.percentile(diff, 99.5))
    if gain is None:  # scale so that the strongest motion (99.5th percentile) reaches full brightness
        gain = 255.0 / peak if peak > 0 else 1.0
    if not 20 <= dpi <= 600:
        raise MertoolError(f"--dpi {dpi}: expected 20 to 600")
    panels = 4 if flow is None else 6
    fig = Figure(figsize=(4 * panels, 4.6), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels)
    frames = (meta.get("onset_frame", -1), meta.get("apex_frame", -1))
    titles = [f"onset (frame {frames[0]})", f"apex (frame {frames[1]})",
              f"|apex - onset| x{gain:.1f}" if peak > 0 else "|apex - onset| (no difference)",
              "onset red, apex cyan"]
    for ax, img, title in zip(axes, (onset, apex, np.clip(diff * gain, 0, 255), overlay(onset, apex)), titles):
        ax.imshow(img, cmap="magma" if img.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(title)
        ax.axis("off")
    if np.isfinite(lm).all():
        axes[0].scatter(lm[:, 0], lm[:, 1], s=4, c="#00ff88")
    axes[3].text(0.02, 0.02, registration_text(reg), transform=axes[3].transAxes, color="white", fontsize=10, wrap=True,
                 va="bottom", bbox={"facecolor": "black", "alpha": 0.6, "pad": 3})
    drawn_flow = None
    if flow is not None:
        drawn_flow = _draw_flow(axes[4], axes[5], flow, strain, flow_set["method"])
    fig.suptitle(f"{dataset} {meta['subject']}/{meta['sample_id']}: {meta['emotion'] or '(no emotion)'}, "
                 f"AUs {meta['aus_raw'] or '?'}")
    fig.tight_layout()
    png = Path(png)
    with files.temporary_path(png) as tmp:
        fig.savefig(tmp, format="png")
    return {"index": i, "subject": meta["subject"], "sample_id": meta["sample_id"], "emotion": meta["emotion"],
            "gain": gain, "max_abs_diff": float(diff.max()), "png": str(png),
            "registration": None if reg is None else {k: (v.item() if hasattr(v, "item") else v)
                                                      for k, v in reg.items()},
            "flow": drawn_flow}


def _draw_flow(ax_flow, ax_strain, flow: np.ndarray, strain: np.ndarray, method: str) -> dict:
    """The flow as a colour wheel (with its key) and the strain as a heat map; returns the scales drawn."""
    from mertool.face.flow import colour_wheel, flow_to_rgb

    rgb, max_px = flow_to_rgb(flow)
    ax_flow.imshow(rgb)
    ax_flow.set_title(f"{method} flow (full colour = {max_px:.2f} px)")
    key = ax_flow.inset_axes((0.78, 0.78, 0.2, 0.2))
    key.imshow(colour_wheel(64))
    key.axis("off")
    top = float(np.percentile(strain, 99.5))
    ax_strain.imshow(strain, cmap="magma", vmin=0, vmax=top if top > 0 else 1)
    ax_strain.set_title(f"optical strain (full = {top:.3f})")
    for ax in (ax_flow, ax_strain):
        ax.axis("off")
    length = np.hypot(flow[..., 0], flow[..., 1])
    return {"method": method, "max_px": max_px, "median_px": float(np.median(length)), "strain_top": top}


def overlay(onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    """Red/cyan anaglyph: the onset's grey in red, the apex's in green and blue; what moved shows colour fringes."""
    g0, g1 = onset.astype(np.float32).mean(-1), apex.astype(np.float32).mean(-1)
    return np.stack([g0, g1, g1], -1).round().astype(np.uint8)


def registration_text(reg: dict | None) -> str:
    """One sample's registration as the overlay writes it."""
    if reg is None:
        return "registration not recorded (cache made before it)"
    if not np.isfinite(reg["residual"]):
        return "apex not registered (align.register none)"
    consensus = reg["method"] == "consensus"
    what = "still-face residual (held out)" if consensus else "upper-face residual"
    text = (f"{reg['method']}: head shift ({reg['shift_x']:+.1f}, {reg['shift_y']:+.1f}) px, "
            f"rotation {reg['rotation']:+.2f} deg\n{what} {reg['residual_before']:.2f} -> {reg['residual']:.2f} px")
    if np.isfinite(reg.get("still_share", np.nan)):
        text += (f"\n{100 * reg['still_share']:.0f} % of {int(reg['patches'])} patches follow the head; the others "
                 f"move {reg['moving_px']:.2f} px")
    if reg.get("flag"):
        text += "\nFLAGGED: " + str(reg["flag"])
    return text


def merge_caches(paths, out: str | Path, block: int = 64) -> dict:
    """Concatenate caches of one image size into `out` (for composite sets such as CASME II + SAMM).

    The dataset attribute becomes 'casme2+samm'. When the inputs come from different datasets, every subject of a
    single-dataset input is renamed '<dataset>_<subject>' (CASME II '01' -> 'casme2_01'), so that subject ids stay
    unique per person and LOSO folds never mix people from two datasets; inputs that are merges already keep theirs.
    Inputs of one dataset keep their subjects (the same id is the same person). A sample twice is an error.
    """
    paths = [Path(p) for p in paths]
    out = Path(out)
    if len(paths) < 2:
        raise MertoolError("merge needs at least two caches")
    if any(p.resolve() == out.resolve() for p in paths if p.exists()):
        raise MertoolError(f"--out {out}: is one of the inputs; choose a new file")
    files = [open_cache(p) for p in paths]
    try:
        sizes = {p: int(f.attrs["image_size"]) for p, f in zip(paths, files)}
        if len(set(sizes.values())) > 1:
            raise MertoolError("caches differ in image size (" + ", ".join(f"{p}: {s}px" for p, s in sizes.items())
                               + "); re-run preprocess with one --size")
        names = [str(f.attrs["dataset"]) for f in files]
        parts = list(dict.fromkeys(part for n in names for part in n.split("+")))
        prefix = len(parts) > 1
        aligns = [json.loads(f.attrs["alignment"]) for f in files]
        alignment = aligns[0] if all(a == aligns[0] for a in aligns) else {"merged": aligns}
        writer = CacheWriter(out, dataset="+".join(parts), image_size=sizes[paths[0]], alignment=alignment)
        # flow is kept when every input has it, made the same way; otherwise it is left out (cache add-flow)
        flows = [read_flow_settings(f) for f in files]
        same = all(fl is not None and (fl["method"], fl["params"]) == (flows[0]["method"], flows[0]["params"])
                   for fl in flows)
        if same:
            create_flow_datasets(writer.f)
            writer.set_attrs(flow=json.dumps(flows[0], sort_keys=True))
        flow_note = ("kept" if same else None if not any(flows) else
                     "left out: the inputs' flow differs or is missing (" + ", ".join(
                         f"{p}: {fl['method'] if fl else 'none'}" for p, fl in zip(paths, flows)) + ")")
        origin: dict[tuple[str, str], Path] = {}
        try:
            for p, f, name in zip(paths, files, names):
                m = f["meta"]
                text = {k: _texts(m[k]) for k in TEXT_FIELDS}
                ints = {k: m[k][:] for k in INT_FIELDS + ("apex_estimated",)}
                reg = read_registration(f) or {}
                added = {k: (_texts(m[k]) if k == "dataset" else m[k][:]) for k in ADDED_FIELDS if k in m}
                datasets, known = sample_fields(name, {"subject": text["subject"], **added})
                rename = prefix and "+" not in name
                for start in range(0, f["onset"].shape[0], block):
                    sl = slice(start, start + block)
                    onset, apex, aus, lm = f["onset"][sl], f["apex"][sl], f["aus"][sl], f["landmarks"][sl]
                    flow, strain = (f["flow"][sl], f["strain"][sl]) if same else ([None] * len(onset),) * 2
                    for j in range(len(onset)):
                        i = start + j
                        subject = f"{name}_{text['subject'][i]}" if rename else text["subject"][i]
                        key = (subject, text["sample_id"][i])
                        if key in origin:
                            raise MertoolError(f"{p}: sample {key[0]}/{key[1]} is also in {origin[key]}")
                        origin[key] = p
                        writer.append(CachedSample(
                            onset=onset[j], apex=apex[j], aus=aus[j], landmarks=lm[j], subject=subject,
                            **{k: text[k][i] for k in TEXT_FIELDS if k != "subject"},
                            **{k: int(ints[k][i]) for k in INT_FIELDS}, apex_estimated=bool(ints["apex_estimated"][i]),
                            dataset=str(datasets[i]), aus_known=bool(known[i]),
                            registration={k: v[i] for k, v in reg.items()} or None,
                            upsample=int(reg["upsample"][i]) if reg else -1, flow=flow[j], strain=strain[j]))
            sources = [{"path": str(p), "dataset": n, "samples": int(f["onset"].shape[0]),
                        "created": str(f.attrs.get("created", "")), "subjects_prefixed": prefix and "+" not in n}
                       for p, f, n in zip(paths, files, names)]
            writer.set_attrs(merged_from=json.dumps(sources))
            from mertool.cache.provenance import cache_provenance, merge

            writer.set_attrs(provenance=json.dumps(merge([cache_provenance(_attrs(f)) for f in files])))
        except BaseException:
            writer.abort()
            writer.tmp.unlink(missing_ok=True)
            raise
        total = len(writer)
        writer.close()
    finally:
        for f in files:
            f.close()
    return {"out": str(out), "dataset": "+".join(parts), "samples": total, "subjects_prefixed": prefix,
            "sources": sources, "flow": flow_note}
