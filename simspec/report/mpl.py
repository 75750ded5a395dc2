"""matplotlib, imported only when a figure is drawn (Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

from simspec.atomic import write_via


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, **savefig) -> Path:
    """Write the figure atomically (its format from the suffix) and close it."""
    try:
        write_via(path, lambda tmp: fig.savefig(tmp, **savefig))
    finally:
        pyplot().close(fig)
    return path
