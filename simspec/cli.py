"""The `simspec` command line. Each area registers its commands from `simspec/commands/`.

Command modules must stay cheap to import (no torch at import time): heavy imports go
inside the command functions.
"""

from __future__ import annotations

import importlib
import sys

import typer

from simspec.errors import InputError

app = typer.Typer(
    name="simspec",
    help="Simulate, tune and validate speculative LLM inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# One line per area; each module defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = [
    "simspec.commands.simulate",
    "simspec.commands.models",
    "simspec.commands.profile",
    "simspec.commands.run",
    "simspec.commands.trace",
    "simspec.commands.study",
    "simspec.commands.export",
    "simspec.commands.predict",
    "simspec.commands.validate",
    "simspec.commands.acceptance",
]



@app.callback()
def _root() -> None:
    """Simulate, tune and validate speculative LLM inference."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _literal_brackets(app: typer.Typer) -> None:
    """Help text is shown as written: Rich would read `[capacity]` or `[[config]]` (TOML tables
    the help names) as markup tags and drop them, so every command's and option's help has its
    brackets escaped (`[` -> `\\[`)."""
    import inspect

    from rich.markup import escape

    for cmd in app.registered_commands:
        if cmd.help:
            cmd.help = escape(cmd.help)
        elif cmd.callback is not None and cmd.callback.__doc__:
            cmd.help = escape(inspect.cleandoc(cmd.callback.__doc__))
        if cmd.callback is None:
            continue
        for param in inspect.signature(cmd.callback).parameters.values():
            info = param.default
            if isinstance(getattr(info, "help", None), str):
                info.help = escape(info.help)
    for group in app.registered_groups:
        if group.help:
            group.help = escape(group.help)
        if group.typer_instance is not None:
            _literal_brackets(group.typer_instance)


_literal_brackets(app)


def main() -> None:
    """Console entry point: bad input is one line on stderr and exit code 2."""
    try:
        app()
    except InputError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
