"""Usage errors of every command: Typer's usage box on stderr, exit 2, no Python traceback.

The commands are enumerated from the Typer app itself, so a command added later is tested without editing this file.
Three cases each: a missing argument (or an option's missing value, for commands with nothing required), an unknown
option, and a bad value (a choice outside its choices, text for a number, a value given to a flag, or an extra
argument; `cache merge` takes only paths, so it has no bad value).
"""
from __future__ import annotations

import subprocess
import sys
import typing

import pytest
import typer.main

from mertool.cli import app, main


def _leaf_commands(cmd=None, path=()):
    cmd = cmd or typer.main.get_command(app)
    if hasattr(cmd, "commands"):
        for name, sub in sorted(cmd.commands.items()):
            yield from _leaf_commands(sub, path + (name,))
    else:
        yield path, cmd


COMMANDS = {" ".join(path): cmd for path, cmd in _leaf_commands()}


def _annotation(param):
    ann = param.type_descriptor.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) is typing.Union and len(args) == 1:  # Optional[X] -> X
        ann = args[0]
    return ann


def _is_option(param) -> bool:
    return type(param).__name__ == "TyperOption"


def _required_args(cmd) -> list[str]:
    """Placeholder values for every required parameter, so the one error left is the one under test."""
    out = []
    for p in cmd.params:
        if p.required:
            out += [p.opts[0], "x"] if _is_option(p) else ["x"]
    return out


def _bad_value(cmd) -> tuple[list[str], str]:
    """(arguments, expected message) with one bad value."""
    for p in cmd.params:
        if _is_option(p) and typing.get_origin(_annotation(p)) is typing.Literal:
            return [p.opts[0], "no-such-choice"], "Invalid value"
    for p in cmd.params:
        if _is_option(p) and not p.is_flag and _annotation(p) in (int, float):
            return [p.opts[0], "not-a-number"], "Invalid value"
    for p in cmd.params:
        if _is_option(p) and p.is_flag:
            return [f"{p.opts[0]}=yes"], "does not take a value"
    if not any(p.nargs == -1 for p in cmd.params):
        return ["extra-argument"] * 3, "unexpected extra argument"
    return [], ""


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out + err


def test_every_command_is_enumerated():
    assert {"train-loso", "evaluate", "predict", "bench", "preprocess", "cache info"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_missing_argument_is_a_usage_error(name, capsys):
    cmd = COMMANDS[name]
    argv = name.split()
    if not any(p.required for p in cmd.params):  # nothing required: leave an option's value out instead
        opt = next(p for p in cmd.params if _is_option(p) and not p.is_flag)
        argv.append(opt.opts[0])
    rc, text = _run(capsys, argv)
    assert rc == 2, text
    assert "─ Error ─" in text and "Traceback" not in text
    assert ("Usage:" in text and "Missing" in text) or "requires an argument" in text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_unknown_option_is_a_usage_error(name, capsys):
    rc, text = _run(capsys, name.split() + ["--bogus"])
    assert rc == 2, text
    assert "Usage:" in text and "No such option: --bogus" in text and "Traceback" not in text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bad_value_is_a_usage_error(name, capsys):
    cmd = COMMANDS[name]
    bad, message = _bad_value(cmd)
    if not bad:
        pytest.skip(f"{name}: every parameter is a path or a list of paths; no text is a bad value")
    rc, text = _run(capsys, name.split() + _required_args(cmd) + bad)
    assert rc == 2, text
    assert "─ Error ─" in text and message in text and "Traceback" not in text


def test_usage_error_from_the_installed_entry_point():
    """The console script path (`python -m mertool.cli`): usage box on stderr, nothing on stdout, exit 2."""
    r = subprocess.run([sys.executable, "-m", "mertool.cli", "train-loso", "--select", "best", "x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Usage:" in r.stderr and "Invalid value for '--select'" in r.stderr and "Traceback" not in r.stderr


def test_user_error_is_one_line_exit_2(tmp_path, capsys):
    rc, text = _run(capsys, ["evaluate", str(tmp_path / "nothing")])
    assert rc == 2
    assert text.strip().startswith("error: ") and len(text.strip().splitlines()) == 1


def test_version_exits_0(capsys):
    rc, text = _run(capsys, ["--version"])
    assert rc == 0 and text.startswith("mertool ")
