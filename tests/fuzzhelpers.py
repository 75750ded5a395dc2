"""Building blocks of the input fuzzer (tests/test_fuzz_inputs.py).

Documents are mutated from valid examples (the shipped scenario, study and validation plan)
along the keys the real pydantic schemas define, then written out as TOML (or as corrupted
bytes); profiles and traces are copied from the shipped files and corrupted as tables, as
sidecars and as bytes. Every generated case runs a public entry point in this process and
must end in success or in exactly one `InputError` (see `check_input_error`).
"""

from __future__ import annotations

import copy
import io
import json
import math
import sys
import tomllib
import typing
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from simspec.errors import InputError

REPO = Path(__file__).resolve().parents[1]


# -- TOML out ---------------------------------------------------------------------------

def _toml_str(s: str) -> str:
    # JSON escapes are TOML escapes, except that TOML wants DEL escaped too
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


class Deep:
    """A value nested `depth` levels deep ([[[...1...]]] or {a = {a = ...}}), rendered without
    recursion (the generator must not be what hits Python's recursion limit)."""

    def __init__(self, depth: int, kind: str) -> None:
        self.depth, self.kind = depth, kind

    def toml(self) -> str:
        if self.kind == "list":
            return "[" * self.depth + "1" + "]" * self.depth
        return "{ a = " * self.depth + "1" + " }" * self.depth

    def __repr__(self) -> str:
        return f"Deep({self.depth}, {self.kind!r})"


def toml_value(v: Any) -> str:
    if isinstance(v, Deep):
        return v.toml()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = [f"{_toml_str(str(k))} = {toml_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(type(v))


def dumps(doc: dict) -> str:
    """A mapping as TOML: one `"key" = <inline value>` line per top-level key (None dropped)."""
    return "".join(f"{_toml_str(str(k))} = {toml_value(v)}\n" for k, v in doc.items() if v is not None)


def read(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


# -- the schemas' keys ------------------------------------------------------------------

def _leaves(ann) -> list:
    """The leaf types of an annotation: int, float, str, bool, ('literal', values), list, dict, models."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _leaves(typing.get_args(ann)[0])
    if origin is typing.Literal:
        return [("literal", typing.get_args(ann))]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [x for a in typing.get_args(ann) for x in _leaves(a)]
    if origin in (list, tuple):
        return [list]
    if origin is dict:
        return [dict]
    if ann is type(None):
        return []
    return [ann]


def schema_paths(model: type[BaseModel], prefix: tuple = ()) -> list[tuple[tuple, list]]:
    """(key path, leaf types) for every field of `model` and of the models nested in it."""
    out = []
    for name, f in model.model_fields.items():
        leaves = _leaves(f.annotation)
        if not all(isinstance(x, type) and issubclass(x, (BaseModel, dict)) for x in leaves):
            out.append((prefix + (name,), leaves))  # (whole sections are replaced by "existing")
        for leaf in leaves:
            if isinstance(leaf, type) and issubclass(leaf, BaseModel) and len(prefix) < 4:
                out += schema_paths(leaf, prefix + (name,))
    return out


# -- values -----------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
HUGE_INTS = st.sampled_from([0, -1, 1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63), -(10**30)])
ODD_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e-300, 1e300, 1.7976931348623157e308,
                              -1e300, 0.5, 1.0000001, -0.5])
ODD_STRINGS = st.sampled_from(["", " ", "none", "model", "early_exit", "ngram", "trace", "closed", "poisson",
                               "uniform", "lognormal", "bf16", "fp32", "../x", "/abs", "日本語", "\u202e\u0000",
                               "a" * 500, "1e3", "nan", "{gamma}", "{nope}", "4,2,1", "2,x", "model:x", "exit3"])


SCALARS = st.one_of(st.integers(min_value=-2**70, max_value=2**70), HUGE_INTS,
                    st.floats(allow_nan=True, allow_infinity=True), ODD_FLOATS, st.booleans(), TEXT, ODD_STRINGS)
NASTY = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.lists(st.floats(min_value=-2.0, max_value=2.0, allow_nan=False), min_size=0, max_size=6),
    st.lists(st.lists(st.floats(allow_nan=True), min_size=0, max_size=3), max_size=4),
    st.dictionaries(TEXT, SCALARS, max_size=3),
    st.just([]), st.just({}),
    st.builds(Deep, st.sampled_from([3, 30, 200, 1200]), st.sampled_from(["list", "dict"])),
)


def value_for(leaves: list) -> st.SearchStrategy:
    """Values that fit a field's type but sit at or beyond its edges, or another type."""
    opts: list[st.SearchStrategy] = []
    for leaf in leaves:
        if leaf is int:
            opts += [HUGE_INTS, st.integers(min_value=-3, max_value=70)]
        elif leaf is float:
            opts += [ODD_FLOATS, st.floats(min_value=-1.0, max_value=2.0), st.integers(min_value=-2, max_value=300)]
        elif leaf is bool:
            opts.append(st.booleans())
        elif leaf is str:
            opts.append(ODD_STRINGS)
        elif isinstance(leaf, tuple) and leaf[0] == "literal":
            opts.append(st.sampled_from(list(leaf[1])))
        elif leaf is list:
            opts += [st.lists(st.integers(min_value=-2, max_value=40), max_size=6),
                     st.lists(st.floats(min_value=-0.5, max_value=1.5), max_size=6)]
    return st.one_of(opts * 3 + [NASTY])  # mostly the right type, at or beyond its edges


# -- mutating a document ----------------------------------------------------------------

def all_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out += all_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out += all_paths(v, prefix + (i,))
    return out


def set_path(doc: Any, path: tuple, value: Any) -> None:
    cur = doc
    for k in path[:-1]:
        if isinstance(cur, dict):
            if not isinstance(cur.get(k), (dict, list)):
                cur[k] = {}
            cur = cur[k]
        elif isinstance(cur, list) and isinstance(k, int) and k < len(cur) and isinstance(cur[k], (dict, list)):
            cur = cur[k]
        else:
            return
    last = path[-1]
    if isinstance(cur, dict):
        cur[last] = value
    elif isinstance(cur, list) and isinstance(last, int) and last < len(cur):
        cur[last] = value


def del_path(doc: Any, path: tuple) -> None:
    cur = doc
    for k in path[:-1]:
        try:
            cur = cur[k]
        except (KeyError, IndexError, TypeError):
            return
    try:
        del cur[path[-1]]
    except (KeyError, IndexError, TypeError):
        pass


@st.composite
def mutated(draw, base: dict, schema: list[tuple[tuple, list]], max_mutations: int = 3) -> dict:
    """A deep copy of `base` with 0..max_mutations changes along existing or schema keys."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 2, max_mutations, 0]))):
        existing = all_paths(doc)
        op = draw(st.sampled_from(["tweak"] * 5 + ["schema"] * 4 + ["existing", "delete", "unknown_key", "swap"]))
        leaves = [p for p in existing if isinstance(_get(doc, p), (int, float, str))]
        if op == "tweak" and leaves:
            p = draw(st.sampled_from(leaves))
            v = _get(doc, p)
            kind = bool if isinstance(v, bool) else int if isinstance(v, int) else float if isinstance(v, float) else str
            set_path(doc, p, draw(value_for([kind])))
        elif op == "schema" and schema:
            path, leaves = draw(st.sampled_from(schema))
            set_path(doc, path, copy.deepcopy(draw(value_for(leaves))))
        elif op == "existing" and existing:
            set_path(doc, draw(st.sampled_from(existing)), copy.deepcopy(draw(NASTY)))
        elif op == "delete" and existing:
            del_path(doc, draw(st.sampled_from(existing)))
        elif op == "unknown_key":
            tables = [()] + [p for p in existing if isinstance(_get(doc, p), dict)]
            set_path(doc, draw(st.sampled_from(tables)) + (draw(st.one_of(TEXT, ODD_STRINGS)),), copy.deepcopy(draw(SCALARS)))
        elif op == "swap" and existing:
            p = draw(st.sampled_from(existing))
            v = _get(doc, p)
            set_path(doc, p, copy.deepcopy([v] if not isinstance(v, list) else (v[0] if v else {})))
    return doc


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def file_bytes(draw, doc: dict) -> bytes:
    """The document as TOML, sometimes damaged as bytes (truncated, invalid UTF-8, junk)."""
    data = dumps(doc).encode("utf-8")
    how = draw(st.sampled_from(["clean"] * 6 + ["truncate", "junk", "empty", "bom"]))
    if how == "truncate" and data:
        data = data[: draw(st.integers(min_value=0, max_value=len(data) - 1))]
    elif how == "junk":
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif how == "empty":
        data = b""
    elif how == "bom":
        data = b"\xef\xbb\xbf" + data
    return data


# -- checking an outcome ----------------------------------------------------------------

def parses_as_toml(path: Path) -> bool:
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
        return True
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


class ContractViolation(AssertionError):
    """An InputError that breaks the contract: `what` is multiline | no-reason | no-file | no-key."""

    def __init__(self, what: str, line: str) -> None:
        super().__init__(f"{what}: {line!r}")
        self.what, self.line = what, line


def check_input_error(exc: InputError, files: list[Path], keyed: bool) -> None:
    """The contract of a bad input: one line naming a file and (for a parsed document) a key, with a reason."""
    line = exc.line()
    if any(not c.isprintable() for c in line):  # a newline, a carriage return, an escape ...
        raise ContractViolation("multiline", line)
    if not (exc.reason and exc.reason.strip()) or "Traceback" in line:
        raise ContractViolation("no-reason", line)
    if not exc.file:
        raise ContractViolation("no-file", line)
    if keyed and exc.file == str(files[0]) and not exc.key:
        raise ContractViolation("no-key", line)
    if not any(exc.file == str(f) or Path(exc.file).name == f.name for f in files):
        raise ContractViolation("no-file", line)


def run_main(*args: str) -> tuple[int, str, str]:
    """`simspec ARGS` in this process, through the console entry point: (code, stdout, stderr)."""
    from simspec import cli

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["simspec", *args]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


# -- bugs found by fuzzing whose fix lives in a file this suite does not own ---------------

class KnownBug:
    """A crash fuzzing found, fixed by a patch to another file (see the report).

    `reproduce()` runs the minimal input; while it still crashes with the same exception
    the bug is *active* and fuzz cases that hit exactly it (same type, raised through
    `where`) are counted as "known bug: NAME" instead of failing. Once the patch is applied
    the reproducer passes, the bug is no longer active, and such a crash fails again."""

    def __init__(self, name: str, exc_type: type, where: str, reproduce, patch: str, text: str = "") -> None:
        self.name, self.exc_type, self.where, self.reproduce = name, exc_type, where, reproduce
        self.patch, self.text = patch, text
        self._active: bool | None = None

    def matches(self, exc: BaseException) -> bool:
        """Same exception type, raised through `where` (file:function; for a ContractViolation,
        the same `what`), with `text` in its message."""
        import re
        import traceback

        if not isinstance(exc, self.exc_type) or not re.search(self.text, str(exc)):
            return False
        if isinstance(exc, ContractViolation):
            return exc.what == self.where
        frames = traceback.extract_tb(exc.__traceback__)
        return any(self.where in f"{f.filename}:{f.name}" for f in frames)

    @property
    def active(self) -> bool:
        if self._active is None:
            try:
                self.reproduce()
                self._active = False
            except InputError:
                self._active = False
            except Exception as exc:  # noqa: BLE001 - that is the point
                self._active = self.matches(exc)
        return self._active


KNOWN_BUGS: list[KnownBug] = []


def known(name: str, exc_type: type, where: str, patch: str, text: str = ""):
    """Register a reproducer (a function that crashes while the bug is there)."""
    def deco(fn):
        KNOWN_BUGS.append(KnownBug(name, exc_type, where, fn, patch, text))
        return fn
    return deco


def outcome(fn, counter) -> str:
    """fn() -> its outcome label, or "known bug: NAME" for an active known bug's crash."""
    try:
        return fn()
    except InputError:
        raise
    except Exception as exc:
        for bug in KNOWN_BUGS:
            if bug.active and bug.matches(exc):
                counter["known bug: " + bug.name] += 1
                return "known bug"
        raise
