"""Fuzzing the output places of every command that writes (issue 29: unwritable outputs).

Generated from a fixed seed (random.Random(SEED); SIMSPEC_FUZZ_SEED replays another): output
paths under /proc and /sys, under a regular file, an existing file where a folder is expected
and a folder where a file is, devices, FIFOs, dangling links, over-long names and paths, and
writable places (new nested folders, existing ones, odd but legal names). Root ignores chmod,
so read-only places are kernel file systems, not permission bits.

Each case runs `simspec ...` in this process through the console entry point under a deadline
(SIGALRM) and must end either in success (a folder output then holds COMPLETE.json) or in exit 2
with one line naming the flag; never a traceback, and a refusal leaves the case's folder as
it was (nothing created, nothing half written).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections import Counter
from pathlib import Path

import pytest

import fuzzhelpers as fz
from deadline import within
from simspec.outputs import MARKER
from studyhelpers import finished_study

SEED = int(os.environ.get("SIMSPEC_FUZZ_SEED", "29"))
N_CASES = 96
DEADLINE_S = 10

TINY = (fz.REPO / "studies" / "quickstart.toml").read_text().replace("requests = 64", "requests = 4")


def deadline(seconds: int):
    return within(seconds)


def _listing(root: Path) -> list[tuple[str, bytes | None]]:
    return sorted((str(p), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                  for p in root.rglob("*"))


# -- places: (path, ok) for a folder output and for a file output ------------------------

def _name(rng: random.Random) -> str:
    return rng.choice(["x", "out", "run 1", "r\u00e9sultat", "a-b_c.d", "\u6a21\u578b", "x" * rng.randint(1, 60)])


def bad_place(rng: random.Random, root: Path, want: str) -> tuple[str, str]:
    """A place that cannot take a `want` ("dir" or "file") output; (path, kind)."""
    ext = ".parquet" if want == "file" else ""
    (root / "file").write_text("keep\n")
    (root / "dir").mkdir(exist_ok=True)
    kinds = ["proc", "proc_self", "sys", "under_file", "under_file_deep", "long_name", "long_path",
             "long_name_nested", "wrong_type"]
    if want == "file":
        kinds += ["devnull", "devzero", "fifo", "trailing_dot"]
    kind = rng.choice(kinds)
    if kind == "proc":
        return f"/proc/{_name(rng)}{ext}", kind
    if kind == "proc_self":
        return f"/proc/self/{_name(rng)}/{_name(rng)}{ext}", kind
    if kind == "sys":
        return f"/sys/{_name(rng)}{ext}", kind
    if kind == "under_file":
        return str(root / "file" / f"{_name(rng)}{ext}"), kind
    if kind == "under_file_deep":
        return str(root / "file" / _name(rng) / f"{_name(rng)}{ext}"), kind
    if kind == "long_name":
        return str(root / ("n" * rng.randint(256, 600) + ext)), kind
    if kind == "long_name_nested":
        return str(root / _name(rng) / ("n" * rng.randint(256, 400)) / f"x{ext}"), kind
    if kind == "long_path":  # every name legal, the whole path past PATH_MAX
        return str(root.joinpath(*["p" * 200] * rng.randint(21, 30)) / f"x{ext}"), kind
    if kind == "wrong_type":
        return str(root / ("file" if want == "dir" else "dir")), kind
    if kind == "devnull":
        return "/dev/null", kind
    if kind == "devzero":
        return "/dev/zero", kind
    if kind == "fifo":
        fifo = root / f"fifo{rng.randint(0, 9)}"
        if not fifo.exists():
            os.mkfifo(fifo)
        return str(fifo), kind
    return str(root / "dir" / "."), kind  # trailing_dot: a folder named as a file


def good_place(rng: random.Random, root: Path, want: str) -> tuple[str, str]:
    ext = ".parquet" if want == "file" else ""
    kind = rng.choice(["new", "nested", "existing", "odd_name"])
    if kind == "existing":
        p = root / "there"
        if want == "dir":
            p.mkdir(exist_ok=True)
            (p / "summary.json").write_text("old")
        else:
            p = root / "there.parquet"
            p.write_bytes(b"old")
        return str(p), kind
    if kind == "nested":
        return str(root.joinpath(*[_name(rng) for _ in range(rng.randint(2, 5))]) / f"o{ext}"), kind
    if kind == "odd_name":
        return str(root / (rng.choice([" lead", "semi;colon", "new\nline", "tab\there", "-dash"]) + ext)), kind
    return str(root / f"{_name(rng)}{ext}"), kind


# -- commands ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return finished_study(tmp_path_factory.mktemp("fz-done"), "fzo", trials=4, requests=16, out_max=48)


def _json(p: str) -> str:
    return p[: -len(".parquet")] + ".json" if p.endswith(".parquet") else p


def commands(scn: Path, study: Path, run: Path, plan: Path, profile: Path):
    """(name, flag, want, args(path), may_run): may_run says a writable place is run (cheap)."""
    return [
        ("simulate --out", "--out", "dir", lambda p: ["simulate", str(scn), "--out", p], True),
        ("simulate --requests-out", "--requests-out", "file",
         lambda p: ["simulate", str(scn), "--json", "--requests-out", p], True),
        ("study --out", "--out", "dir", lambda p: ["study", str(study), "--out", p, "--no-progress"], False),
        ("export --to", "--to", "dir", lambda p: ["export", str(study), "--out", str(run), "--to", p], True),
        ("predict --to", "--to", "dir",
         lambda p: ["predict", str(study), "--out", str(run), "--to", p, "--no-progress"], False),
        ("run --out", "--out", "file", lambda p: ["run", "--target", "tiny:llama", "--out", _json(p)], False),
        ("trace --out", "--out", "file", lambda p: ["trace", "--target", "tiny:llama", "--out", p], False),
        ("validate --out", "--out", "dir", lambda p: ["validate", str(plan), "--out", p], False),
        ("profile --calibrate --out", "--out", "file",
         lambda p: ["profile", "--calibrate", str(profile), "--out", p], False),
    ]


def test_fuzz_output_places(finished):
    study, run = finished
    rng = random.Random(SEED)
    base = Path(tempfile.mkdtemp(prefix="simspec-fzout-"))
    scn = base / "tiny.toml"
    scn.write_text(TINY)
    plan = fz.REPO / "studies" / "validation" / "qwen1.5b-humaneval.toml"
    profile = next((fz.REPO / "profiles").rglob("*.parquet"))
    cmds = commands(scn, study, run, plan, profile)
    seen: Counter = Counter()
    for i in range(N_CASES):
        name, flag, want, args, may_run = cmds[i % len(cmds)]
        root = base / f"case{i}"
        root.mkdir()
        good = may_run and rng.random() < 0.35
        path, kind = (good_place if good else bad_place)(rng, root, want)
        before = _listing(root)
        with deadline(DEADLINE_S):
            code, stdout, stderr = fz.run_main(*args(path))
        case = f"case {i} ({name}, {kind}, seed {SEED}): {path[:120]!r}"
        assert "Traceback" not in stderr, f"{case}\n{stderr}"
        seen[f"{name}: {'ok' if good else 'refused'}"] += 1
        if good:
            assert code == 0, f"{case}\n{stderr}"
            if want == "dir" and name == "simulate --out":
                assert (Path(path) / MARKER).is_file(), case
            continue
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], \
            f"{case}: exit {code}\n{stderr}"
        assert stdout == "", f"{case}: worked before refusing:\n{stdout}"
        assert _listing(root) == before, f"{case}: a refusal left something behind"
    assert sum(seen.values()) >= 70, seen
    assert all(seen[f"{n}: refused"] >= 5 for n, *_ in cmds), seen
