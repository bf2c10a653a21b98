"""Classification metrics over pooled leave-one-subject-out predictions (scikit-learn underneath).

MEGC definitions, over predictions pooled from every fold:
  UF1 = mean over classes c of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)   (classes with no TP, FP or FN skipped)
  UAR = mean over classes c with samples of recall_c = TP_c / N_c
`macro_f1` is scikit-learn's f1_score(average="macro", labels=all K classes, zero_division=0): a class with no sample
and no prediction counts as F1 = 0. It is the paper's "average F1-score across the 5 emotional labels". The two agree
whenever every class occurs in truth or prediction (pooled CASME II / SAMM LOSO predictions), and differ when one
does not (a subset of subjects, a partial run): UF1 then averages over fewer classes.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def _check(y_true, y_pred, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate two label vectors: same length, non-empty, integers in [0, num_classes)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"expected two 1-d label arrays of the same length, got shapes {t.shape} and {p.shape}")
    if t.size == 0:
        raise ValueError("no predictions to score")
    for name, a in (("y_true", t), ("y_pred", p)):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name}: expected integer class numbers, got {a.dtype}")
    k = int(max(t.max(), p.max()) + 1) if num_classes is None else int(num_classes)
    if min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k:
        raise ValueError(f"labels must lie in [0, {k}), got [{min(t.min(), p.min())}, {max(t.max(), p.max())}]")
    return t.astype(np.int64), p.astype(np.int64), k


def confusion(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """K x K counts, rows = true class, columns = predicted class."""
    t, p, k = _check(y_true, y_pred, num_classes)
    return confusion_matrix(t, p, labels=np.arange(k))


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions."""
    t, p, _ = _check(y_true, y_pred)
    return float(accuracy_score(t, p))


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """scikit-learn macro F1 over all K classes (an absent class counts 0), K = num_classes."""
    t, p, k = _check(y_true, y_pred, num_classes)
    return float(f1_score(t, p, labels=np.arange(k), average="macro", zero_division=0))


def uf1(y_true, y_pred, num_classes: int | None = None) -> float:
    """Unweighted F1 (MEGC): mean per-class F1 from pooled TP/FP/FN."""
    cm = confusion(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(float)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    denom = 2 * tp + fp + fn
    seen = denom > 0
    return float(np.mean(2 * tp[seen] / denom[seen]))


def uar(y_true, y_pred, num_classes: int | None = None) -> float:
    """Unweighted average recall (MEGC): mean per-class recall over classes with samples."""
    cm = confusion(y_true, y_pred, num_classes)
    support = cm.sum(1)
    has = support > 0
    return float(np.mean(np.diag(cm)[has] / support[has]))


def per_class(y_true, y_pred, classes: list[str]) -> list[dict]:
    """Precision, recall, F1 and support for each class (0 where undefined)."""
    t, p, k = _check(y_true, y_pred, len(classes))
    pr, rc, f1, sup = precision_recall_fscore_support(t, p, labels=np.arange(k), zero_division=0)
    return [{"class": c, "precision": float(a), "recall": float(b), "f1": float(f), "support": int(s)}
            for c, a, b, f, s in zip(classes, pr, rc, f1, sup)]


def summarize(y_true, y_pred, classes: list[str]) -> dict:
    """All headline metrics of one set of pooled predictions."""
    k = len(classes)
    return {"n": int(len(y_true)), "accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, k),
            "uf1": uf1(y_true, y_pred, k), "uar": uar(y_true, y_pred, k),
            "per_class": per_class(y_true, y_pred, classes), "confusion": confusion(y_true, y_pred, k).tolist()}


# AU detection: a threshold on the AU head's sigmoid output; the mean F1 counts only AUs with enough positives,
# since an AU seen twice in a dataset gives an F1 of 0 or 1 by chance.
AU_THRESHOLD = 0.5
AU_MIN_SUPPORT = 10


def au_detection(truth, probs, aus, threshold: float = AU_THRESHOLD, min_support: int = AU_MIN_SUPPORT) -> dict:
    """Per-AU precision, recall, F1, support from pooled predictions, and the mean F1 over AUs with >= min_support
    positives. truth: N x A 0/1 (rows with unknown AU codes already removed); probs: N x A in [0, 1]."""
    t, p = np.asarray(truth), np.asarray(probs, dtype=float)
    if t.ndim != 2 or t.shape != p.shape or t.shape[1] != len(aus):
        raise ValueError(f"expected truth and probs of shape N x {len(aus)}, got {t.shape} and {p.shape}")
    if t.shape[0] == 0:
        raise ValueError("no samples with known AU codes to score")
    if not np.isin(t, (0, 1)).all():
        raise ValueError("AU truth must be 0/1")
    pred = (p >= threshold).astype(int)
    pr, rc, f1, sup = precision_recall_fscore_support(t.astype(int), pred, average=None,
                                                      labels=np.arange(len(aus)), zero_division=0)
    rows = [{"au": int(au), "precision": float(a), "recall": float(b), "f1": float(f), "support": int(s),
             "predicted": int(pred[:, i].sum())}
            for i, (au, a, b, f, s) in enumerate(zip(aus, pr, rc, f1, sup))]
    counted = [r for r in rows if r["support"] >= min_support]
    mean = float(np.mean([r["f1"] for r in counted])) if counted else None
    return {"n": int(t.shape[0]), "threshold": threshold, "min_support": min_support, "per_au": rows,
            "mean_f1": mean, "aus_counted": [r["au"] for r in counted]}


# Uncertainty: the LOSO unit is the subject (samples of one person are not independent), so intervals resample
# subjects with replacement and pool the drawn subjects' predictions, B times.
BOOTSTRAP = 2000
CI_METRICS = ("accuracy", "uf1", "uar")


def subject_confusions(parts: list[dict], num_classes: int) -> np.ndarray:
    """S x K x K: one confusion matrix per fold (subject), from evaluate's per-fold predictions."""
    return np.stack([confusion(f["true"], f["pred"], num_classes) for f in parts]).astype(np.int64)


def _from_confusions(cms: np.ndarray) -> dict[str, np.ndarray]:
    """accuracy, UF1, UAR of a batch of confusion matrices (B x K x K), as uf1() and uar() define them."""
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(float)
    total = cms.sum((1, 2))
    fp, support = cms.sum(1) - tp, cms.sum(2)
    fn = support - tp
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)
        rec = np.where(support > 0, tp / np.where(support > 0, support, 1), np.nan)
        return {"accuracy": tp.sum(1) / total, "uf1": np.nanmean(f1, 1), "uar": np.nanmean(rec, 1)}


def bootstrap_weights(n_subjects: int, b: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """B x S counts: how often each subject is drawn in each of B resamples of S subjects with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_subjects, np.full(n_subjects, 1.0 / n_subjects), size=b)


def bootstrap_values(cms: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each resample's metrics: the drawn subjects' confusion matrices summed (B x K x K), then scored."""
    s, k, _ = cms.shape
    pooled = (weights @ cms.reshape(s, k * k)).reshape(len(weights), k, k)
    return _from_confusions(pooled)


def subject_bootstrap(cms: np.ndarray, b: int = BOOTSTRAP, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile intervals of accuracy, UF1 and UAR over B resamples of the subjects (S x K x K input)."""
    values = bootstrap_values(cms, bootstrap_weights(len(cms), b, seed))
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {k: {"lo": float(np.nanpercentile(v, lo)), "hi": float(np.nanpercentile(v, hi)),
               "se": float(np.nanstd(v, ddof=1))} for k, v in values.items()}
    return {"level": level, "resamples": b, "subjects": int(len(cms)), "unit": "subject", **out}


def paired_bootstrap(cms_a: np.ndarray, cms_b: np.ndarray, b: int = BOOTSTRAP, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Difference a - b of accuracy, UF1 and UAR over the same subjects (S x K x K each, same subject order),
    resampled together; `differs` when the interval of the difference excludes 0."""
    if cms_a.shape != cms_b.shape:
        raise ValueError(f"paired bootstrap needs the same subjects and classes, got {cms_a.shape} and {cms_b.shape}")
    w = bootstrap_weights(len(cms_a), b, seed)
    va, vb = bootstrap_values(cms_a, w), bootstrap_values(cms_b, w)
    point_a, point_b = _from_confusions(cms_a.sum(0)[None]), _from_confusions(cms_b.sum(0)[None])
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for k in va:
        d = va[k] - vb[k]
        interval = (float(np.nanpercentile(d, lo)), float(np.nanpercentile(d, hi)))
        out[k] = {"diff": float(point_a[k][0] - point_b[k][0]), "lo": interval[0], "hi": interval[1],
                  "differs": bool(interval[0] > 0 or interval[1] < 0)}
    return {"level": level, "resamples": b, "subjects": int(len(cms_a)), **out}
