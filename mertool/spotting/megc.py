"""MEGC spotting scores, the MEGC log, and the spot-then-recognise (STR) score.

Rule (MEGC 2019 spotting guideline, protocols/megc2019): a spotted interval W is a true positive (TP) of a ground
truth G when |W ∩ G| / |W ∪ G| >= 0.5, counting frames with both ends included (W = 10..19 and G = 15..24 share
frames 15..19: 5 / 15). Per data set, with A true positives, N predictions and M ground truths summed over all its
videos: precision A/N, recall A/M, F1 = 2A/(M+N). A figure whose denominator is 0 is None (JSON null).

Matching, per video and per type, each prediction and each ground truth used at most once:
  1. predictions and ground truths are split by type ('micro' / 'macro'; an interval without a type gets one from
     its duration at the data set's frame rate, micro <= 0.5 s): a micro prediction can only hit a micro ground
     truth, as in the MEGC 2020-2022 challenges, which scored the two types separately;
  2. every (prediction, ground truth) pair of a video with IoU >= 0.5 is a candidate; candidates are taken in
     order of IoU, highest first (ties: earlier prediction onset, then earlier ground-truth onset), and a candidate
     whose prediction or ground truth is already taken is skipped. So a prediction overlapping two ground truths
     counts once, for the closer one, and the other ground truth stays free for another prediction.
  Overall = micro + macro (sums of TP, predictions and ground truths, then the ratios).

How this differs from the MEGC 2020 baseline (MDMD) evaluation script, whose published figures the issue quotes:
  - it took the intersection of two disjoint intervals as 1 frame, so two short disjoint intervals could reach
    IoU 0.5 (1-frame W and G: 1/2); here disjoint intervals have IoU 0;
  - it reported precision as (ground truths hit) / (predictions); here precision is (true positives) /
    (predictions), the two differing when one prediction hits several ground truths or several predictions hit
    one ground truth, which the one-to-one matching above rules out.
So figures from that script are comparable in order of magnitude only.

A prediction on a video the ground truth does not know (a video without expressions, or a misspelt id) is a false
positive, as in MEGC; the ids are listed in `unknown_videos` so that a caller can warn about them.

MEGC log (the guideline's "evaluation log"): per data set, a line with its MEGC id ('1' SAMM Long Videos, '2'
CAS(ME)^2; other data sets by name), then one line per TP, FP and FN:
    video gt_onset gt_offset pred_onset pred_offset result type
with '-' for the side that is absent (an FP has no ground truth, an FN no prediction), result TP|FP|FN, sorted by
video, then by predicted onset (an FN by its ground-truth onset). The seventh column, the type, is mertool's
addition: the 2019 format scored micro-expressions only.

STR (MEGC 2023-2024 spot-then-recognise): STR = spotting F1 x recognition F1, the recognition F1 being UF1 (the
mean over classes of the per-class F1) of the predicted classes against the ground-truth classes of the matched
(TP) pairs. Where the published STR scoring script differs from that description, mertool follows the description:
  - the script lets one prediction match two ground truths; here the one-to-one matching above gives the pairs;
  - the script drops subjects without predictions; here every video of the data set counts (its ground truths are
    false negatives of the spotting F1);
  - the script's "UAR" is the mean of per-class precision; here UAR is the mean per-class recall (reported beside
    UF1, not used in STR).
UF1 averages over the classes that occur among the matched pairs' ground truths or predictions (a class predicted
but never true has F1 0); `classes` may name them instead.

Entry points: `evaluate(pred, gt, log_path)` (figures + MEGC log: what `evaluate-spot` and `evaluate` on a spotting
run call), `evaluate_str(classified predictions, gt, log_path)` (the same plus STR), `score_spotting` (one data set,
with the log rows and the TP pairs) and `str_score` (STR from a score and classified TP pairs).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mertool.files import write_text
from mertool.spotting.intervals import TYPES, Interval, with_type

THRESHOLD = 0.5
MEGC_IDS = {"samm_lv": "1", "casme_sq": "2"}  # the 2019 guideline's data set labels in the log
__all__ = ["DatasetGT", "SpottingScore", "evaluate", "evaluate_str", "figures", "format_figures", "iou",
           "load_ground_truth", "match", "recognition_f1", "score_datasets", "score_spotting", "str_score",
           "write_megc_log"]


# ------------------------------------------------------------------------------------------------ results

@dataclass(frozen=True)
class LogRow:
    """One line of the MEGC log: a TP (both), an FP (pred only) or an FN (gt only)."""

    video: str
    type: str
    gt: Interval | None
    pred: Interval | None
    iou: float = 0.0

    @property
    def result(self) -> str:
        return "TP" if self.gt is not None and self.pred is not None else ("FP" if self.pred is not None else "FN")


@dataclass
class SpottingScore:
    """Scores of one data set: figures per type and overall, the log rows, the ids the ground truth lacks."""

    dataset: str
    micro: dict
    macro: dict
    overall: dict
    rows: list[LogRow] = field(default_factory=list)
    unknown_videos: list[str] = field(default_factory=list)

    def figures(self) -> dict:
        """{'micro': {...}, 'macro': {...}, 'overall': {...}}, each with tp, predicted, ground_truth, precision,
        recall, f1."""
        return {"micro": self.micro, "macro": self.macro, "overall": self.overall}

    def true_positives(self) -> list[tuple[Interval, Interval]]:
        """(prediction, ground truth) of every TP: the pairs a spot-then-recognise run classifies."""
        return [(r.pred, r.gt) for r in self.rows if r.result == "TP"]


@dataclass
class DatasetGT:
    """One data set's ground truth: expression intervals, every video id it has (with or without expressions),
    and its frame rate (for typing intervals that have no type)."""

    name: str
    intervals: list[Interval]
    fps: float | None = None
    videos: set[str] | None = None     # None: the videos the intervals name
    classes: dict[Interval, str] | None = None  # ground-truth class of each interval, for STR

    def video_ids(self) -> set[str]:
        return set(self.videos) if self.videos is not None else {iv.video for iv in self.intervals}


def figures(tp: int, predicted: int, ground_truth: int) -> dict:
    """The MEGC figures from counts (None where a denominator is 0)."""
    return {"tp": tp, "predicted": predicted, "ground_truth": ground_truth,
            "precision": tp / predicted if predicted else None,
            "recall": tp / ground_truth if ground_truth else None,
            "f1": 2 * tp / (predicted + ground_truth) if predicted + ground_truth else None}


# ------------------------------------------------------------------------------------------------ scoring

def iou(a: Interval, b: Interval) -> float:
    """Frames in both / frames in either, both ends of each interval included."""
    inter = min(a.offset, b.offset) - max(a.onset, b.onset) + 1
    if inter <= 0:
        return 0.0
    return inter / (a.frames + b.frames - inter)


def match(preds: Sequence[Interval], gts: Sequence[Interval], threshold: float = THRESHOLD
          ) -> list[tuple[int, int, float]]:
    """One-to-one matching of one video's predictions and ground truths: (pred index, gt index, IoU) of each TP.

    Candidates (IoU >= threshold) are taken highest IoU first; ties go to the earlier prediction, then the earlier
    ground truth (by onset, then by position in the input).
    """
    candidates = []
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            value = iou(p, g)
            if value >= threshold:
                candidates.append((-value, p.onset, i, g.onset, j))
    taken_p, taken_g, pairs = set(), set(), []
    for neg, _, i, _, j in sorted(candidates):
        if i not in taken_p and j not in taken_g:
            taken_p.add(i)
            taken_g.add(j)
            pairs.append((i, j, -neg))
    return pairs


def score_spotting(pred: Iterable[Interval], gt: Iterable[Interval] | DatasetGT, fps: float | None = None, *,
                   videos: Iterable[str] | None = None, dataset: str = "", threshold: float = THRESHOLD
                   ) -> SpottingScore:
    """Score predicted intervals against one data set's ground truth (see the module docstring for the rule).

    `fps` types the intervals that have no type (micro <= 0.5 s); `videos` are every video id of the data set, so
    that a prediction on a video without expressions is not reported as an unknown id (default: the ground
    truth's videos). Predictions on unknown videos still count as false positives.
    """
    if isinstance(gt, DatasetGT):
        dataset, fps, videos, gt = dataset or gt.name, fps if fps is not None else gt.fps, gt.videos, gt.intervals
    pred = [with_type(p, fps) for p in pred]
    gt = [with_type(g, fps) for g in gt]
    known = set(videos) if videos is not None else set()
    known |= {g.video for g in gt}
    unknown = sorted({p.video for p in pred} - known)
    rows: list[LogRow] = []
    counts = {t: [0, 0, 0] for t in TYPES}  # tp, predicted, ground truth
    pred_by, gt_by = _group(pred), _group(gt)
    for video in sorted({p.video for p in pred} | {g.video for g in gt}):
        for kind in TYPES:
            ps, gs = pred_by.get((video, kind), []), gt_by.get((video, kind), [])
            pairs = match(ps, gs, threshold)
            hit_p, hit_g = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
            rows += [LogRow(video, kind, gs[j], ps[i], value) for i, j, value in pairs]
            rows += [LogRow(video, kind, None, p) for i, p in enumerate(ps) if i not in hit_p]
            rows += [LogRow(video, kind, g, None) for j, g in enumerate(gs) if j not in hit_g]
            c = counts[kind]
            c[0], c[1], c[2] = c[0] + len(pairs), c[1] + len(ps), c[2] + len(gs)
    rows.sort(key=_log_order)
    total = [sum(c[k] for c in counts.values()) for k in range(3)]
    return SpottingScore(dataset, figures(*counts["micro"]), figures(*counts["macro"]), figures(*total), rows,
                         unknown)


def _group(intervals: Iterable[Interval]) -> dict[tuple[str, str], list[Interval]]:
    groups: dict[tuple[str, str], list[Interval]] = {}
    for iv in intervals:
        groups.setdefault((iv.video, iv.type), []).append(iv)
    return groups


def _log_order(row: LogRow):
    onset = row.pred.onset if row.pred is not None else row.gt.onset
    return row.video, onset, row.gt.onset if row.gt is not None else -1, row.type


def score_datasets(pred: Iterable[Interval], sets: Sequence[DatasetGT], threshold: float = THRESHOLD
                   ) -> tuple[dict[str, SpottingScore], dict]:
    """Score predictions against several data sets' ground truths at once.

    Each prediction goes to the data set that knows its video id. With one data set, predictions on unknown ids
    go to it (false positives there); with several, they are false positives of the combined figures only, under
    the name '(unknown videos)'. Returns the per-data-set scores and the combined
    {'micro', 'macro', 'overall'} figures (sums over the data sets).
    """
    pred = list(pred)
    owner = {}
    for s in sets:
        for v in s.video_ids():
            owner.setdefault(v, s.name)
    by_set: dict[str, list[Interval]] = {s.name: [] for s in sets}
    stray = []
    for p in pred:
        name = owner.get(p.video)
        if name is None and len(sets) == 1:
            name = sets[0].name
        (by_set[name] if name is not None else stray).append(p)
    scores = {s.name: score_spotting(by_set[s.name], s, threshold=threshold) for s in sets}
    if stray:
        fps = next((s.fps for s in sets if s.fps), None)
        scores["(unknown videos)"] = score_spotting(stray, [], fps, dataset="(unknown videos)", threshold=threshold)
    combined = {}
    for kind in ("micro", "macro", "overall"):
        parts = [getattr(s, kind) for s in scores.values()]
        combined[kind] = figures(*(sum(p[k] for p in parts) for k in ("tp", "predicted", "ground_truth")))
    return scores, combined


# ------------------------------------------------------------------------------------------------ ground truth

def load_ground_truth(path, fps: float | None = None) -> list[DatasetGT]:
    """The ground truth `evaluate-spot --gt` names: a long-video sheet, a data set folder (every long-video sheet
    under it, one DatasetGT each), or an intervals CSV (video,onset,offset[,apex,type]: a data set named after the
    file). `fps` overrides the data sets' frame rates (used to type intervals that have no type)."""
    from mertool.datasets.longvideo import find_long_sheets, headers_found, load_long_videos
    from mertool.errors import MertoolError
    from mertool.spotting.intervals import read_intervals_csv

    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv" and _is_intervals_csv(path):
        return [DatasetGT(path.stem, read_intervals_csv(path), fps)]
    if path.is_dir():
        sheets = find_long_sheets(path)
        if not sheets:
            raise MertoolError(f"{path}: no long-video sheet (CAS(ME)^2, SAMM Long Videos, CAS(ME)^3 part A) found "
                               f"under the folder{headers_found(path)}")
        sets = [load_long_videos(sheet, kind, frames=path) for sheet, kind in sheets]
        names = [s.dataset for s in sets]
        if len(set(names)) < len(names):
            raise MertoolError(f"{path}: several sheets of one data set ({', '.join(str(p) for p, _ in sheets)}); "
                               f"pass the sheet itself")
    else:
        sets = [load_long_videos(path)]
    return [DatasetGT(s.dataset, s.intervals, fps or s.fps, set(s.videos),
                      {e.interval: e.emotion for e in s.expressions if e.emotion}) for s in sets]


def _is_intervals_csv(path: Path) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        header = {c.strip().lower() for c in f.readline().split(",")}
    return {"video", "onset", "offset"} <= header


def format_figures(result: Mapping) -> str:
    """The figures of `evaluate` as a text table, one block per data set when there are several."""
    blocks = [(name, figs) for name, figs in result.get("datasets", {}).items()]
    blocks.append(("all" if blocks else "", {k: result[k] for k in ("micro", "macro", "overall")}))
    lines = []
    for name, figs in blocks:
        if name:
            lines.append(f"{name}:")
        lines.append(f"  {'':8} {'TP':>5} {'pred':>6} {'GT':>6} {'precision':>9} {'recall':>7} {'F1':>7}")
        for kind in ("micro", "macro", "overall"):
            f = figs[kind]
            lines.append(f"  {kind:8} {f['tp']:5d} {f['predicted']:6d} {f['ground_truth']:6d} "
                         f"{_num(f['precision']):>9} {_num(f['recall']):>7} {_num(f['f1']):>7}")
    return "\n".join(lines)


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# ------------------------------------------------------------------------------------------------ MEGC log

def format_megc_log(scores: Iterable[SpottingScore]) -> str:
    """The MEGC log text of one or more data sets (format in the module docstring)."""
    lines = []
    for score in scores:
        lines.append(MEGC_IDS.get(score.dataset, score.dataset or "-"))
        for r in score.rows:
            gt = f"{r.gt.onset} {r.gt.offset}" if r.gt is not None else "- -"
            pr = f"{r.pred.onset} {r.pred.offset}" if r.pred is not None else "- -"
            lines.append(f"{r.video} {gt} {pr} {r.result} {r.type}")
    return "\n".join(lines) + "\n"


def write_megc_log(path, scores: Iterable[SpottingScore]) -> Path:
    """Write the MEGC log (atomically)."""
    return write_text(path, format_megc_log(scores))


def evaluate(pred: Iterable[Interval], gt: DatasetGT | Sequence[DatasetGT], log_path=None,
             threshold: float = THRESHOLD) -> dict:
    """Score predictions, write the MEGC log to `log_path` (when given), and return the JSON-ready figures:
    {'micro', 'macro', 'overall'} (all data sets together), 'datasets' {name: {'micro', 'macro', 'overall'}} when
    there are several, and 'unknown_videos' (prediction ids no ground truth knows)."""
    sets = [gt] if isinstance(gt, DatasetGT) else list(gt)
    scores, combined = score_datasets(pred, sets, threshold)
    if log_path is not None:
        write_megc_log(log_path, scores.values())
    out = dict(combined)
    if len(scores) > 1:
        out["datasets"] = {name: s.figures() for name, s in scores.items()}
    out["unknown_videos"] = sorted({v for s in scores.values() for v in s.unknown_videos})
    return out


# ------------------------------------------------------------------------------------------------ STR

def recognition_f1(pairs: Iterable[tuple[str, str]], classes: Sequence[str] | None = None) -> dict:
    """UF1 and UAR of (true class, predicted class) pairs.

    UF1 = mean over classes of 2·TP_c / (2·TP_c + FP_c + FN_c); UAR = mean over classes with true samples of
    TP_c / (true samples of c). Classes default to those occurring as truth or prediction. None when no pairs.
    """
    pairs = list(pairs)
    names = list(classes) if classes is not None else sorted({c for pair in pairs for c in pair})
    f1s, recalls = [], []
    for c in names:
        tp = sum(1 for t, p in pairs if t == c and p == c)
        fp = sum(1 for t, p in pairs if t != c and p == c)
        fn = sum(1 for t, p in pairs if t == c and p != c)
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
        if tp + fn:
            recalls.append(tp / (tp + fn))
    return {"pairs": len(pairs), "classes": names,
            "uf1": sum(f1s) / len(f1s) if f1s else None, "uar": sum(recalls) / len(recalls) if recalls else None}


def evaluate_str(predictions: Iterable[tuple[Interval, str]], gt: DatasetGT | Sequence[DatasetGT], log_path=None,
                 classes: Sequence[str] | None = None, threshold: float = THRESHOLD) -> dict:
    """Spot-then-recognise: score classified predictions against ground truths that carry classes.

    `predictions` are (interval, predicted class) for every spotted interval; each DatasetGT needs `classes`
    (its intervals' true classes: `load_ground_truth` fills them from the sheets' emotion columns). Returns what
    `evaluate` returns plus 'str' {micro, macro, overall} (see `str_score`), also per data set under 'datasets'
    when there are several, and writes the MEGC log to `log_path` when given. A ground truth without a class
    leaves its pair out of the recognition F1 (it still counts for spotting); the count is under 'unlabelled'.
    """
    from dataclasses import replace

    predictions = list(predictions)
    said = {replace(p, type=None): c for p, c in predictions}  # typing by duration may replace the interval
    sets = [gt] if isinstance(gt, DatasetGT) else list(gt)
    scores, combined = score_datasets([p for p, _ in predictions], sets, threshold)
    if log_path is not None:
        write_megc_log(log_path, scores.values())
    truth = {iv: c for s in sets for iv, c in (s.classes or {}).items()}
    per_set, all_pairs, unlabelled = {}, [], 0
    for name, score in scores.items():
        pairs = []
        for p, g in score.true_positives():
            if g in truth:
                pairs.append((p, said[replace(p, type=None)], g, truth[g]))
            else:
                unlabelled += 1
        per_set[name] = str_score(score, pairs, classes)
        all_pairs += pairs
    out = dict(combined)
    out["str"] = str_score(combined, all_pairs, classes)
    if len(scores) > 1:
        out["datasets"] = {name: {**s.figures(), "str": per_set[name]} for name, s in scores.items()}
    out["unknown_videos"] = sorted({v for s in scores.values() for v in s.unknown_videos})
    out["unlabelled"] = unlabelled
    return out


def str_score(spotting: SpottingScore | Mapping, pairs: Iterable[tuple[Interval, str, Interval, str]],
              classes: Sequence[str] | None = None) -> dict:
    """Spot-then-recognise score from a spotting score and the classified TP pairs.

    `pairs` are (predicted interval, predicted class, ground-truth interval, ground-truth class), one per TP of
    `spotting` (its `true_positives()`, each classified). Returns per 'micro', 'macro', 'overall':
    {'spotting_f1', 'uf1', 'uar', 'pairs', 'str'}, STR = spotting F1 x UF1 (None when either is None).
    """
    figs = spotting.figures() if isinstance(spotting, SpottingScore) else spotting
    pairs = list(pairs)
    out = {}
    for kind in ("micro", "macro", "overall"):
        chosen = [(gc, pc) for _p, pc, g, gc in pairs if kind == "overall" or g.type == kind]
        rec = recognition_f1(chosen, classes)
        f1 = figs[kind]["f1"]
        out[kind] = {"spotting_f1": f1, "uf1": rec["uf1"], "uar": rec["uar"], "pairs": rec["pairs"],
                     "str": f1 * rec["uf1"] if f1 is not None and rec["uf1"] is not None else None}
    return out
