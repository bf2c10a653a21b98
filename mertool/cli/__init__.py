"""Command-line entry point. The CLI only parses arguments and calls library functions."""
from __future__ import annotations

import importlib
import sys

import typer

from mertool import __version__
from mertool.cli.app import app
from mertool.errors import MertoolError

# Each module registers its commands on `app`.
_COMMAND_MODULES = ["data_cmds", "model_cmds", "train_cmds", "synth_cmds", "predict_cmds", "bench_cmds",
                    "evaluate_spot_cmds", "spot_cmds"]
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"mertool.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command module not written yet must not break the others
        if exc.name != f"mertool.cli.{_name}":
            raise


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mertool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """mertool: micro-expression recognition toolkit."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code: 0 on success, 2 for a user error (one line on stderr) or a usage error.

    Typer's standalone mode handles usage errors itself (its usage box on stderr, exit 2) with the click it
    vendors (`typer._click` since typer 0.2x), so this function never names a click exception class.
    """
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:  # standalone mode ends every run with sys.exit
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except MertoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    return 0
