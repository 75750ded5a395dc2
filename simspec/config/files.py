"""Reading input files: a TOML file -> a mapping (every failure one InputError line), and the
data files (profiles, traces) a scenario names, found relative to the scenario file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from simspec.errors import InputError
from simspec.limits import read_bytes

# The scenario keys that name data files: (section, key).
PATH_KEYS = (("target", "profile"), ("draft", "profile"), ("acceptance", "trace"), ("acceptance", "imported"))


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning every failure into one InputError line. Only a regular file
    of at most limits.INPUT_BYTES is read (/dev/zero, a FIFO or a folder is refused unread)."""
    p = Path(path)
    data = read_bytes(p)
    try:
        # universal newlines, as Path.read_text reads them
        return tomllib.loads(data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(p), None, f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InputError(str(p), None, "not a text file") from None
    except RecursionError:
        raise InputError(str(p), None, "not valid TOML: nested too deeply") from None


def resolve_data_path(ref: str, scenario_file: str | Path | None) -> Path:
    """A profile/trace path as written in a scenario: relative to the scenario file's folder
    when it exists there (a file's references belong to the file), else to the CWD."""
    p = Path(ref)
    if p.is_absolute() or scenario_file is None:
        return p
    alt = Path(scenario_file).parent / p
    try:
        return alt if alt.exists() else p
    except OSError:  # a name the file system cannot hold (too long): it exists nowhere
        return p
