"""The Typer application every command module registers on."""
import typer

app = typer.Typer(
    name="mertool",
    help="Micro-expression recognition: preprocess datasets, train with leave-one-subject-out, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
