"""Published results a run is placed among: the paper's Table 1 (CASME II, 5 classes), kept in
recipes/published/table1.yaml with the numbers exactly as the paper prints them.

    context = standing({"accuracy": 0.80, "macro_f1": 0.79}, dataset="casme2", n_classes=5)

Theirs are as published (most of those codebases choose each fold's epoch on its own test subject); ours is what
evaluate measured (last epoch of a fixed schedule), so the rank is labelled and never mixed into our figures.
"""
from __future__ import annotations

from mertool.errors import MertoolError
from mertool.recipe import find_recipe, read_yaml

TABLE1 = "published/table1.yaml"
THEIRS = "as published; most with test-fold epoch selection"
OURS = "ours (last epoch of a fixed schedule)"


def load_published(name: str = TABLE1) -> dict:
    """The published table: title, dataset, number of classes, note, methods [{name, accuracy %, f1}]."""
    path = find_recipe(name)
    raw = read_yaml(path)
    methods = raw.get("methods")
    if not isinstance(methods, list) or not methods:
        raise MertoolError(f"{path}: methods: expected a list of {{name, accuracy, f1}}")
    for i, m in enumerate(methods):
        if not isinstance(m, dict) or not {"name", "accuracy", "f1"} <= set(m):
            raise MertoolError(f"{path}: methods[{i}] = {m!r}: expected {{name, accuracy, f1}}")
    return raw


def standing(metrics: dict, dataset: str | None, n_classes: int, table: str = TABLE1,
             au_source: str | None = None) -> dict | None:
    """Our accuracy and macro F1 ranked among the table's methods by accuracy; None when the table does not apply
    (another dataset or class count). `au_source`: what our run read as the test clips' AU input, in words."""
    pub = load_published(table)
    if dataset != pub.get("dataset") or int(n_classes) != int(pub.get("classes", 0)):
        return None
    rows = [{"method": str(m["name"]), "accuracy": float(m["accuracy"]) / 100, "f1": float(m["f1"]), "ours": False}
            for m in pub["methods"]]
    ours = OURS if not au_source else f"{OURS[:-1]}; {au_source})"
    rows.append({"method": ours, "accuracy": float(metrics["accuracy"]), "f1": float(metrics["macro_f1"]),
                 "ours": True})
    rows.sort(key=lambda r: -r["accuracy"])  # stable: ours goes below a published tie
    rank = next(i for i, r in enumerate(rows, 1) if r["ours"])
    return {"title": pub.get("title", table), "note": " ".join(str(pub.get("note", "")).split()), "label": THEIRS,
            "rank": rank, "of": len(rows), "rows": rows, "au_source": au_source}


def render_standing(context: dict, console) -> None:
    """The table with our row marked, then what the numbers are."""
    from rich.table import Table

    t = Table(title=f"Where this run stands: {context['title']} (theirs {context['label']})")
    for col in ("rank", "method", "accuracy %", "F1"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for i, r in enumerate(context["rows"], 1):
        name = f"» {r['method']}" if r["ours"] else r["method"]
        t.add_row(str(i), name, f"{100 * r['accuracy']:.2f}", f"{r['f1']:.4f}")
    console.print(t)
    au = f"; our run {context['au_source']}" if context.get("au_source") else ""
    console.print(f"ours ranks {context['rank']} of {context['of']} by accuracy (our F1 = macro F1 over all classes"
                  f"{au}); {context['note']}")
