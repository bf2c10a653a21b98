"""The one-line errors mertool can print, read from the code: every `MertoolError(...)` message as a template.

    python tools/troubleshooting.py            # list every message with where it is raised
    python tools/troubleshooting.py --missing  # the messages docs/troubleshooting.md does not cover yet

A message is a template: the literal text of the f-string, with each formatted value written `…`. The guide covers
a message when its template appears in it (spaces collapsed; write it in backquotes, or in double backquotes when it
holds one). tests/test_docs.py runs `missing()`.
"""
from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "troubleshooting.md"


@dataclass(frozen=True)
class Message:
    where: str      # mertool/file.py:line
    function: str   # the enclosing function
    template: str   # literal text, `…` for each formatted value


def _text(node: ast.AST) -> str | None:
    """The template of a message expression, or None when it is built elsewhere (a variable, a call)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = ""
        for v in node.values:
            if isinstance(v, ast.Constant):
                out += str(v.value)
            else:
                out += "…"
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        a, b = _text(node.left), _text(node.right)
        return None if a is None or b is None else a + b
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        a = _text(node.left)
        return None if a is None else re.sub(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfgi]", "…", a)
    return None


def normalise(template: str) -> str:
    """Collapse spaces and runs of `…`, so a message wrapped over several lines matches the guide's one line."""
    t = " ".join(template.split())
    t = re.sub(r"…(\s*…)+", "…", t)
    return t.strip()


def messages(root: Path = ROOT) -> list[Message]:
    found = []
    for path in sorted((root / "mertool").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        funcs: list[tuple[int, int, str]] = [(n.lineno, n.end_lineno, n.name) for n in ast.walk(tree)
                                            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name != "MertoolError":
                continue
            text = _text(node.args[0])
            if text is None:
                continue  # a message passed through (re-raised with added context): its parts are listed where made
            inner = [fn for fn in funcs if fn[0] <= node.lineno <= fn[1]]
            fn = min(inner, key=lambda x: x[1] - x[0])[2] if inner else "<module>"
            found.append(Message(f"{path.relative_to(root)}:{node.lineno}", fn, normalise(text)))
    return found


def covered_text(guide: Path = GUIDE) -> str:
    return " ".join(guide.read_text().split()) if guide.is_file() else ""


def missing(root: Path = ROOT, guide: Path = GUIDE) -> list[Message]:
    text = covered_text(guide)
    return [m for m in messages(root) if m.template not in text]


def main(argv: list[str]) -> int:
    ms = missing() if "--missing" in argv else messages()
    for m in ms:
        print(f"{m.where} ({m.function}): {m.template}")
    return 1 if ("--missing" in argv and ms) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
