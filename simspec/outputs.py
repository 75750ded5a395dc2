"""Where a command writes, checked before it works, and run folders that say when they are whole.

A command that finds out after minutes of work that its `--out` cannot be written throws the
work away with a traceback; `check_dir` and `check_file` refuse such a place up front, in one
line naming the flag, the path and the reason (an `InputError`, exit 2). They probe by doing
what the writer will do (create the missing folders, create a file beside the target) and undo
it, so a refusal leaves nothing behind.

A run folder holds a set of files written one by one (each whole, see simspec.atomic), so a
run killed between two of them leaves a folder that looks finished. `begin` removes the folder's
completion marker before the first file is written and `finish` writes it after the last one:
a folder without COMPLETE.json is unfinished, whatever else it holds, and readers say so.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterable

from simspec.atomic import write_text
from simspec.errors import InputError

MARKER = "COMPLETE.json"


def _why(exc: OSError, doing: str) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "a name in the path is too long for this file system"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return f"{doing} ({exc.strerror or exc})"


def _stat(path: Path, flag: str, shown: Path) -> os.stat_result | None:
    """os.stat, None when nothing is there; a path that cannot even be looked up is refused."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(str(shown), flag, _why(exc, "cannot be looked up")) from None


def _missing(path: Path) -> list[Path]:
    """`path` and its parents that do not exist yet, innermost first (what mkdir will make)."""
    missing = []
    p = path
    while True:
        try:
            os.stat(p)
            return missing
        except FileNotFoundError:
            missing.append(p)
        except OSError:
            return missing  # stat itself failed (ENOTDIR, ENAMETOOLONG): mkdir reports it
        if p.parent == p:
            return missing
        p = p.parent


def _probe(folder: Path) -> None:
    """A file can be created (and removed) in `folder`, as the atomic writer will."""
    fd, name = tempfile.mkstemp(prefix=".simspec-probe-", dir=folder)
    os.close(fd)
    os.unlink(name)


def check_dir(flag: str, path: str | os.PathLike) -> Path:
    """`path` is, or can be made, a folder that files can be written into. Creates nothing
    that is not already there when it returns; InputError (flag, path, reason) otherwise."""
    path = Path(path)
    _check_dir(flag, path, path)
    return path


def _check_dir(flag: str, path: Path, shown: Path) -> None:
    st = _stat(path, flag, shown)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise InputError(str(shown), flag, "exists and is not a folder" if shown == path
                         else f"{path} is not a folder")
    created = _missing(path)
    try:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(str(shown), flag, _why(exc, "the folder cannot be created")) from None
        try:
            _probe(path)
        except OSError as exc:
            raise InputError(str(shown), flag, _why(exc, f"no file can be created in {path}")) from None
    finally:
        _undo_mkdir(created)


def _undo_mkdir(created: list[Path]) -> None:
    """Remove the folders the probe made, innermost first, each only while empty: another run
    that made the same folder meanwhile (and wrote into it) keeps it."""
    for p in created:
        try:
            os.rmdir(p)
        except OSError:
            pass


def check_file(flag: str, path: str | os.PathLike) -> Path:
    """`path` can be written as a file (atomically: a temporary beside it renamed over it): its
    folder can take files, and `path` is not a folder nor a special file (a device, a pipe)."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise InputError(str(path), flag, "names a folder, not a file")
    st = _stat(path, flag, path)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(str(path), flag, "is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(str(path), flag, "exists and is not a regular file (a device, pipe or socket)")
    if len(os.fsencode(path.name)) + len(".tmp") > _name_max(path.parent):
        raise InputError(str(path), flag, "a name in the path is too long for this file system")
    _check_dir(flag, path.parent, path)
    return path


def _name_max(folder: Path) -> int:
    """The longest file name the file system of `folder` (or its nearest existing parent) takes."""
    p = folder
    while p.parent != p:
        try:
            return os.pathconf(p, "PC_NAME_MAX")
        except (OSError, ValueError):
            p = p.parent
    return 255


# -- run folders written as a set --------------------------------------------------------

def begin(folder: Path, marker: str = MARKER) -> None:
    """Mark `folder` unfinished before a run writes into it (a rerun of a finished one too).
    `marker`: another name where one folder holds several sets (validate: one per plan)."""
    (Path(folder) / marker).unlink(missing_ok=True)


def finish(folder: Path, files: Iterable[str], command: str, marker: str = MARKER) -> Path:
    """Mark `folder` finished: written after every file of the set, naming them."""
    return write_text(Path(folder) / marker, json.dumps({
        "command": command, "files": list(files),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1) + "\n")


def is_complete(folder: Path, marker: str = MARKER) -> bool:
    """Whether the last run that wrote `folder` finished."""
    return (Path(folder) / marker).is_file()


def unfinished(folder: Path, rerun: str) -> str:
    """The reason a reader gives for an unfinished folder."""
    return f"unfinished run folder (no {MARKER}: the run that wrote it was killed or failed); {rerun} to complete it"
