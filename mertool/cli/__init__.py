"""Command-line entry point. The CLI only parses arguments and calls library functions."""
from __future__ import annotations

import importlib
import sys

import typer

from mertool import __version__
from mertool.cli.app import app
from mertool.errors import MertoolError

# Each module registers its commands on `app`.
_COMMAND_MODULES = ["data_cmds", "model_cmds", "train_cmds", "synth_cmds", "predict_cmds", "bench_cmds"]
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
    """Run the CLI; user errors print one line to stderr and exit 2."""
    try:
        # in non-standalone mode click returns (not raises) the code of a `raise typer.Exit(1)` in a command
        rc = app(args=argv, standalone_mode=False)
    except MertoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors
        import click
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return rc if isinstance(rc, int) else 0
