"""Prometheus text exposition format (what an engine's /metrics answers) -> samples, each with
the line it came from, so every complaint about a file names the line.

Only the subset an exporter writes is read: `# HELP` / `# TYPE` / other comments, `# EOF`
(OpenMetrics), and sample lines `name{label="value",...} value [timestamp]`. A line that is
none of these is refused, as is a label set given twice in one sample. Values are Go floats
as the format defines them (`NaN`, `+Inf`, `-Inf` included); what a count may be is the
caller's business (simspec.imported.vllm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simspec.errors import InputError

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_VALUE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?[iI][nN][fF]|[nN][aA][nN]")
_TIMESTAMP = re.compile(r"-?\d+")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted (name, value) pairs
    value: float
    line: int

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)

    def series(self) -> str:
        """The sample as the exposition writes it (name and labels), for messages."""
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.name}{{{inner}}}" if inner else self.name


@dataclass(frozen=True)
class Exposition:
    samples: list[Sample]
    types: dict[str, tuple[str, int]]  # family name -> (declared type, line)


def _labels(text: str, i: int, file: str, n: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """Parse `{...}` starting at text[i] == '{'; return the sorted pairs and the index after '}'."""
    pairs: dict[str, str] = {}
    i += 1
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "}":
            return tuple(sorted(pairs.items())), i + 1
        m = _LABEL.match(text, i)
        if m is None:
            raise InputError(file, f"line {n}", "a label name was expected inside {...}")
        key, i = m.group(), m.end()
        if not text.startswith('="', i):
            raise InputError(file, f"line {n}", f'label {key!r}: expected ="value"')
        i += 2
        out = []
        while True:
            if i >= len(text):
                raise InputError(file, f"line {n}", f"label {key!r}: its value has no closing quote")
            ch = text[i]
            if ch == '"':
                i += 1
                break
            if ch == "\\":
                esc = text[i + 1:i + 2]
                if esc not in _ESCAPES:
                    raise InputError(file, f"line {n}", f"label {key!r}: unknown escape \\{esc}")
                out.append(_ESCAPES[esc])
                i += 2
                continue
            out.append(ch)
            i += 1
        if key in pairs:
            raise InputError(file, f"line {n}", f"label {key!r} is given twice")
        pairs[key] = "".join(out)
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ",":
            i += 1
        elif i < len(text) and text[i] == "}":
            return tuple(sorted(pairs.items())), i + 1
        else:
            raise InputError(file, f"line {n}", "expected ',' or '}' after a label")


def parse(text: str, file: str, keep: str = "") -> Exposition:
    """Every line checked; samples whose name starts with `keep` kept (all when empty)."""
    samples: list[Sample] = []
    types: dict[str, tuple[str, int]] = {}
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].split(None, 3)
            if parts[:1] == ["TYPE"] and len(parts) >= 3:
                if parts[1] in types:
                    raise InputError(file, f"line {n}", f"# TYPE of {parts[1]} given twice (first at line {types[parts[1]][1]})")
                types[parts[1]] = (parts[2], n)
            continue
        m = _NAME.match(line)
        if m is None:
            raise InputError(file, f"line {n}", "not a metric sample (expected name{labels} value)")
        name, i = m.group(), m.end()
        labels: tuple[tuple[str, str], ...] = ()
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i, file, n)
        rest = line[i:].split()
        if not line[i:i + 1].isspace() or not 1 <= len(rest) <= 2:
            raise InputError(file, f"line {n}", f"{name}: expected one value (and an optional timestamp) after the name")
        if not _VALUE.fullmatch(rest[0]):
            raise InputError(file, f"line {n}", f"{name}: {rest[0][:40]!r} is not a number")
        if len(rest) == 2 and not _TIMESTAMP.fullmatch(rest[1]):
            raise InputError(file, f"line {n}", f"{name}: {rest[1][:40]!r} is not a timestamp")
        if name.startswith(keep):
            samples.append(Sample(name, labels, float(rest[0]), n))
    return Exposition(samples, types)
