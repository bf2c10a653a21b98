"""Where data came from: synthetic (`mertool synth`), a real dataset folder, or unknown (an older cache).

    prov = folder_provenance("demo_out/data")   # {"synthetic": True, "source": "mertool synth", ...}
    prov = cache_provenance(cache_attrs)        # the cache's record, or what an older cache still tells

The record travels with the data: preprocess stores it in the cache's `provenance` attribute, a run folder's
run.json copies it, every checkpoint carries it in `trained_on`, and every report says it in words. Synthetic
faces in CASME II's layout are labelled `casme2` by the adapter that reads them; this record is what keeps them
from being ranked against, or tabled beside, results published on the real CASME II without a label.
"""
from __future__ import annotations

import json
from pathlib import Path

SYNTH = "mertool synth"
REAL = "dataset folder"
UNKNOWN = "unknown"
DATA_DIFFER = ("synthetic data: not comparable with results published on the real dataset (the data differ)")


def folder_provenance(folder) -> dict:
    """A dataset folder's provenance: synthetic when `mertool synth` wrote it (its synth.json manifest is there)."""
    from mertool.synth.faces import MANIFEST, read_manifest

    folder = Path(folder).expanduser()
    base = folder if folder.is_dir() else folder.parent
    m = read_manifest(base)
    if m is not None:
        return {"synthetic": True, "source": SYNTH, "manifest": str((base / MANIFEST).resolve()),
                "settings": m["settings"]}
    return {"synthetic": False, "source": REAL, "folder": str(base.resolve())}


def cache_provenance(attrs: dict) -> dict:
    """A cache's provenance from its attributes. A cache from before the `provenance` attribute is recognised as
    synthetic when its preprocess report names synth's coding sheet, or synth's manifest still lies beside the
    sheet it names; otherwise its provenance is unknown (never assumed real)."""
    raw = attrs.get("provenance")
    if raw:
        try:
            prov = json.loads(raw) if isinstance(raw, (str, bytes)) else dict(raw)
            if isinstance(prov, dict) and "synthetic" in prov:
                return prov
        except (TypeError, ValueError):
            pass
    from mertool.synth.faces import MANIFEST, SHEET_NAME

    try:
        summary = json.loads(attrs.get("preprocess_summary") or "{}")
    except (TypeError, ValueError):
        summary = {}
    sheet = summary.get("sheet") if isinstance(summary, dict) else None
    if sheet and (Path(str(sheet)).name == SHEET_NAME or (Path(str(sheet)).parent / MANIFEST).is_file()):
        return {"synthetic": True, "source": SYNTH, "detected": f"older cache: its sheet {sheet} is synth's"}
    return {"synthetic": None, "source": UNKNOWN,
            "detected": "cache written before mertool recorded provenance, and nothing in it names synth's files"}


def merge(provs: list[dict]) -> dict:
    """Several caches' provenance as one: synthetic if any part is, unknown if any part is and none is synthetic."""
    if any(p.get("synthetic") for p in provs):
        return {"synthetic": True, "source": SYNTH, "parts": provs}
    if any(p.get("synthetic") is None for p in provs):
        return {"synthetic": None, "source": UNKNOWN, "parts": provs}
    return {"synthetic": False, "source": REAL, "parts": provs}


def is_synthetic(prov: dict | None) -> bool | None:
    """True, False, or None (unknown)."""
    return None if not prov else prov.get("synthetic")


def words(prov: dict | None) -> str:
    """The provenance in a few words for reports."""
    s = is_synthetic(prov)
    if s:
        return "synthetic faces (mertool synth)"
    if s is False:
        return "real data (a dataset folder)"
    return "unknown provenance (an older cache; it may be synthetic)"


def trained_on_line(trained: dict | None) -> str:
    """predict's one line about what a checkpoint's model was trained on."""
    if not trained:
        return ("trained on: not recorded (a checkpoint from before mertool recorded it); what the model has seen "
                "is unknown")
    counts = trained.get("class_counts") or {}
    what = (f"{trained.get('n_samples', sum(counts.values()))} samples of {len(trained.get('subjects') or [])} "
            f"subjects from {', '.join(trained.get('datasets') or ['?'])}"
            f" ({', '.join(f'{c} {n}' for c, n in counts.items())}), AUs: {trained.get('au_source', '?')}")
    s = is_synthetic(trained.get("provenance"))
    if s:
        return f"trained on synthetic demo faces only; not evidence about real faces [{what}]"
    if s is False:
        return f"trained on real data: {what}"
    return f"trained on data of unknown provenance (may be synthetic): {what}"
