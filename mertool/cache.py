"""The HDF5 cache: aligned onset/apex pairs plus the sheet's facts, one file every later command reads.

Layout (schema 1):
  /onset, /apex      uint8  N x S x S x 3   (RGB, chunked one sample per chunk)
  /aus               uint8  N x 21          (bits over AU_VOCAB)
  /landmarks         float32 N x 68 x 2     (onset landmarks in crop pixels; NaN when not aligned)
  /checksum          uint32 N               (crc32 of onset+apex bytes, checked by `cache verify`)
  /meta/<text>       utf-8 strings N        (subject, sample_id, emotion, aus_raw, source_onset, source_apex)
  /meta/<int>        int32 N                (onset_frame, apex_frame, offset_frame; -1 = unknown)
  /meta/apex_estimated  bool N
  attrs: schema_version, dataset, au_vocab, image_size, alignment (JSON), mertool_version, created
The class map is not stored: recipes choose it when the cache is loaded.
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

from mertool import __version__
from mertool.aus import AU_VOCAB
from mertool.errors import MertoolError

SCHEMA_VERSION = 1
TEXT_FIELDS = ("subject", "sample_id", "emotion", "aus_raw", "source_onset", "source_apex")
INT_FIELDS = ("onset_frame", "apex_frame", "offset_frame")
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
            if int(self.f.attrs["image_size"]) != self.size:
                raise MertoolError(f"{start}: cached image size {self.f.attrs['image_size']} differs from "
                                   f"requested {self.size}; use a new --out")
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


def load_cache(path: str | Path) -> CacheData:
    """Read a whole cache into memory once."""
    with open_cache(path) as f:
        try:
            attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
            meta = {}
            for name, ds in f["meta"].items():
                if name in TEXT_FIELDS:
                    meta[name] = np.array(ds.asstr()[:], dtype=object)
                else:
                    meta[name] = ds[:]
            return CacheData(Path(path), attrs, f["onset"][:], f["apex"][:], f["aus"][:], f["landmarks"][:], meta)
        except (KeyError, OSError) as exc:
            raise MertoolError(f"{path}: damaged cache ({exc})") from None
