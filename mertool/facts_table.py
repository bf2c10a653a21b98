"""The two-column table of facts that end-of-run reports (`preprocess`, `spot-cache`) and `cache info` print: the
name in bold, the value as text, no header row."""
from __future__ import annotations


def facts_table(title: str, rows):
    """A rich Table titled `title` with one (name, value) row per item of `rows`; values are shown with str()."""
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for name, value in rows:
        t.add_row(name, str(value))
    return t


def run_time(seconds: float, frames_per_second: float | None, workers: int) -> str:
    """'12.3 s (45.6 frames/s, 2 workers)', or '12.3 s' where no frame rate was measured."""
    return f"{seconds:.1f} s" + (f" ({frames_per_second:.1f} frames/s, {workers} workers)" if frames_per_second
                                 else "")
