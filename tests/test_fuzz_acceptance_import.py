"""Fuzzing `simspec acceptance import` (issue 32, "bad metric files"): the shipped vLLM sample,
per-round SGLang accept lengths, SGLang log lines and per-position lists, mutated line by line
and byte by byte (values made negative, non-finite, fractional or huge; lines deleted,
duplicated, swapped, truncated; labels changed; binary bytes put in).

Every case ends in an acceptance whose figures hold together (rates in [0, 1], the survival
curve non-increasing, E[tokens/round] = 1 + sum_k S_k) or in one InputError naming the file
(or the flag), the line or key, and a reason; never a traceback, never past its deadline. The
cases come from a fixed seed (SIMSPEC_FUZZ_SEED picks others for a local hunt).
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from clihelpers import cli
from deadline import within
from simspec.errors import InputError
from simspec.imported import import_file
from simspec.sim.acceptance import chain_survival

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "vllm-eagle3-sample.prom"
SEED = int(os.environ.get("SIMSPEC_FUZZ_SEED", "32"))
DEADLINE_S = 5
N = {"vllm": 600, "sglang": 200, "log": 100, "list": 150, "cli": 20}
OUTCOMES: Counter = Counter()

VALUES = ["-1", "-0", "0", "NaN", "+Inf", "-Inf", "Inf", "1e400", "1.5", "2e1", "9" * 30, "abc", "", "0x10",
          "1_000", "7 7 7", "3 1700000000000", "nan", "1e-300", "18446744073709551616", "½", "1,0"]
BYTES = [b"\x00", b"\xff\xfe", b"\x80", b"\xe2\x80", b"\r", b"\t", b"{", b"}", b'"', b"\\", b"=", b",", b"#",
         b"\xef\xbb\xbf", "\u202e".encode(), "日本".encode()]


def _lines_op(rng: random.Random, lines: list[str]) -> list[str]:
    lines = list(lines)
    op = rng.choice(["delete", "duplicate", "swap", "value", "label", "scale", "add", "comment"])
    i = rng.randrange(len(lines)) if lines else 0
    if not lines:
        return ["1"]
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(rng.randrange(len(lines) + 1), lines[i])
    elif op == "swap":
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "value":
        head, _, _ = lines[i].rpartition(" ")
        lines[i] = f"{head or lines[i]} {rng.choice(VALUES)}"
    elif op == "label":
        for old, new in (('position="', f'position="{rng.choice(["7", "x", "-1", "00", "", "4"])}'),
                         ('engine="', f'engine="{rng.choice(["0", "1", "2", ""])}'),
                         ('model_name="', 'model_name="other')):
            if old in lines[i] and rng.random() < 0.6:
                lines[i] = lines[i].replace(old, new, 1)
                break
        else:
            lines[i] = lines[i].replace("}", rng.choice(["", ',x="1"}', '}}', ',}']), 1)
    elif op == "scale":
        head, _, val = lines[i].rpartition(" ")
        try:
            lines[i] = f"{head} {float(val) * rng.choice([0, 0.5, 2, 10, 1e6]):.1f}"
        except ValueError:
            pass
    elif op == "add":
        lines.insert(i, rng.choice(["garbage", "x 1", "vllm:spec_decode_num_drafts_total 5",
                                    'vllm:spec_decode_num_accepted_tokens_per_pos_total{position="9"} 1',
                                    "# TYPE vllm:spec_decode_num_drafts_total gauge", "accept len: 3.00", ""]))
    else:
        lines[i] = "# " + lines[i]
    return lines


def _bytes_op(rng: random.Random, data: bytes) -> bytes:
    op = rng.choice(["truncate", "insert", "delete", "flip"])
    i = rng.randrange(len(data) + 1)
    if op == "truncate":
        return data[:i]
    if op == "insert":
        return data[:i] + rng.choice(BYTES) * rng.randint(1, 3) + data[i:]
    if op == "delete":
        return data[:i] + data[i + rng.randint(1, 5):]
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]


def mutate(rng: random.Random, text: str) -> bytes:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        lines = _lines_op(rng, lines)
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if rng.random() < 0.25:
        data = _bytes_op(rng, data)
    return data


def sglang_text(rng: random.Random) -> str:
    g = rng.randint(1, 6)
    lengths = [rng.randint(1, g + 1) for _ in range(rng.randint(1, 40))]
    head = f"# speculative_num_steps={g}\n" if rng.random() < 0.3 else ""
    return head + "\n".join(map(str, lengths)) + "\n"


def log_text(rng: random.Random) -> str:
    rows = [f"[2026-01-01] Decode batch, #running-req: {rng.randint(1, 64)}, #token: 100, token usage: 0.01, "
            f"accept len: {rng.uniform(1, 5):.2f}, accept rate: 0.5, gen throughput (token/s): 1.0, #queue-req: 0,"
            for _ in range(rng.randint(1, 6))]
    rows.insert(0, "[2026-01-01] server_args=ServerArgs(speculative_num_steps=4, speculative_eagle_topk=1)")
    return "\n".join(rows) + "\n"


def list_text(rng: random.Random) -> str:
    key = rng.choice(["per_position", "survival"])
    vals, s = [], 1.0
    for _ in range(rng.randint(1, 6)):
        s *= rng.uniform(0.3, 1.0)
        vals.append(round(s if key == "survival" else rng.uniform(0, 1), 4))
    return f'source = "paper {rng.randint(1, 99)}"\n{key} = {vals}\n'


def check(path: Path, data: bytes, fmt: str | None) -> str:
    """One case: a consistent acceptance or one InputError; returns the outcome's name."""
    path.write_bytes(data)
    with within(DEADLINE_S, f"{fmt} case"):
        try:
            imp = import_file(path, fmt)
        except InputError as exc:
            line = exc.line()
            assert exc.reason and exc.reason.strip(), line
            assert all(c.isprintable() for c in line), repr(line)
            assert "Traceback" not in line
            assert exc.file == str(path) or (exc.file is None and exc.key and exc.key.startswith("--")), line
            if exc.key and exc.key.startswith("line "):
                n = int(exc.key.split()[1])
                assert 1 <= n <= data.count(b"\n") + 1, line
            return "refused"
    acc = imp.acceptance
    if acc.per_position is None:
        assert fmt in ("sglang", None) and math.isfinite(acc.mean_accepted) and acc.mean_accepted >= 0
        return "mean-only"
    rates = acc.per_position
    assert rates and all(math.isfinite(a) and 0 <= a <= 1 for a in rates), rates
    s = chain_survival(rates, acc.gamma)
    assert all(s[i + 1] <= s[i] + 1e-15 for i in range(len(s) - 1))
    assert 1 + s.sum() == pytest.approx(1 + acc.mean_accepted, rel=1e-9, abs=1e-12)
    if acc.counts and "drafts" in acc.counts and "accepted_per_position" in acc.counts:
        c = acc.counts["accepted_per_position"]
        assert s[:len(c)] == pytest.approx([x / acc.counts["drafts"] for x in c], rel=1e-9, abs=1e-15)
    return "imported"


def _cases(kind: str):
    rng = random.Random(f"{SEED}-{kind}")
    base = FIXTURE.read_text()
    for i in range(N[kind]):
        if kind == "vllm":
            yield i, mutate(rng, base), rng.choice(["vllm", "vllm", None])
        elif kind == "sglang":
            text = sglang_text(rng)
            yield i, (mutate(rng, text) if rng.random() < 0.7 else text.encode()), "sglang"
        elif kind == "log":
            text = log_text(rng)
            if rng.random() < 0.5:  # the one value a log line is read for
                bad = rng.choice(VALUES + ["0.50", "9.00", "5.01"])
                text = text.replace("accept len: ", f"accept len: {bad}, was ", 1)
            yield i, (mutate(rng, text) if rng.random() < 0.7 else text.encode()), rng.choice(["sglang", None])
        else:
            text = list_text(rng)
            yield i, (mutate(rng, text) if rng.random() < 0.7 else text.encode()), "list"


@pytest.mark.parametrize("kind", ["vllm", "sglang", "log", "list"])
def test_mutated_files_import_consistently_or_are_refused_in_one_line(tmp_path, kind):
    seen: Counter = Counter()
    for i, data, fmt in _cases(kind):
        path = tmp_path / (f"case{i}.toml" if kind == "list" else f"case{i}.txt")
        try:
            seen[check(path, data, fmt)] += 1
        except AssertionError as exc:
            raise AssertionError(f"{kind} case {i} (seed {SEED}, format {fmt}): {data[:300]!r}: {exc}") from None
    OUTCOMES.update({f"{kind}:{k}": v for k, v in seen.items()})
    # the cases reach both ends: files that still import and files that are refused
    assert seen["refused"] >= N[kind] // 10, seen
    assert seen["imported"] + seen["mean-only"] >= N[kind] // 10, seen


def test_the_command_on_mutated_files_exits_0_or_2_with_one_line(tmp_path):
    rng = random.Random(f"{SEED}-cli")
    base = FIXTURE.read_text()
    codes: Counter = Counter()
    for i in range(N["cli"]):
        src = tmp_path / f"in{i}.prom"
        src.write_bytes(mutate(rng, base))
        out = tmp_path / f"out{i}.json"
        with within(DEADLINE_S * 2, "cli case"):
            r = cli("acceptance", "import", str(src), "--out", str(out))
        codes[r.returncode] += 1
        assert r.returncode in (0, 2), r.stderr
        if r.returncode == 2:
            assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {src}"), r.stderr
            assert not out.exists()
        else:
            assert out.exists() and f"wrote {out}" in r.stdout
    assert codes[2] >= 1 and codes[0] >= 1, codes
