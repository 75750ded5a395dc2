"""Files written whole or not at all: write beside the target, then rename over it.

A reader (or a run killed mid-write) sees the old file or the new one, never half of one.
The temporary name keeps the extension, `<stem>.tmp<suffix>` (trials.tmp.parquet,
history.tmp.png), so writers that infer the format from it (matplotlib's savefig, np.save)
write the right one. The name is fixed, so a leftover of a killed write is replaced by the
next one: one writer per path at a time (concurrent writers hold a lock, as models/store does).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable


def temp_path(path: Path) -> Path:
    """Where `write_via` writes before the rename."""
    return path.with_name(f"{path.stem}.tmp{path.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_via(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to make the file (or folder) at a temporary path, then rename it onto
    `path`; parent folders are created. On an error the temporary is removed and `path` is
    left as it was. A folder replaces the folder at `path` (removed just before the rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    _remove(tmp)
    try:
        write(tmp)
        if tmp.is_dir() and path.exists():
            _remove(path)  # os.replace cannot move a folder onto a non-empty one
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """`text` (UTF-8) at `path`, atomically."""
    return write_via(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
