"""Profiles that know their machine: "auto" picks the profile of this machine (else the nearest)
and says which; a profile placed on a catalog device it was not captured on is one warning line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clihelpers import cli
from profhelpers import write_synthetic
from simspec import machine
from simspec.profile.select import choose

XEON = {"cpu": "Intel(R) Xeon(R) Platinum 8480+", "vendor": "GenuineIntel", "arch": "x86_64", "cores": 2,
        "isa": ["amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"]}


def _profile(path: Path, ident: dict | None, date: str = "2026-01-01T00:00:00+00:00", calibrated: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_synthetic(path)
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    if ident is not None:
        meta["machine"] = ident
    meta["date"] = date
    if calibrated:
        meta["calibrated"] = {"from": "x"}
    side.write_text(json.dumps(meta))
    return path


def test_verdicts():
    here = machine.identify(probe=False)
    assert machine.compare(here, here).level == "same"
    v = machine.compare(XEON, here)
    assert v.foreign and any("processor" in r for r in v.reasons)
    legacy = machine.from_sidecar({"device_name": "Intel(R) Xeon(R) Processor", "token_block": 16})
    assert legacy["vendor"] == "GenuineIntel" and legacy["legacy"]
    # the legacy AMX hint against a host of the same name without AMX: other kernels run
    no_amx = {"cpu": "Intel(R) Xeon(R) Processor", "vendor": "GenuineIntel", "isa": ["avx512_vnni", "avx512f", "avx2", "fma"]}
    v = machine.compare(legacy, no_amx)
    assert v.foreign and any("amx" in r for r in v.reasons)
    assert not machine.compare(legacy, {**no_amx, "isa": ["amx_bf16", *no_amx["isa"]]}).foreign
    assert not machine.compare(machine.from_sidecar({"device_name": "Intel(R) Xeon(R) Processor"}), no_amx).foreign
    assert machine.slug(XEON) == "intel-xeon-platinum" and machine.matches_title(XEON, "Intel Xeon with AMX")
    assert not machine.matches_title(XEON, "NVIDIA H100 SXM5 80GB")


def test_auto_prefers_this_machine_then_a_full_capture_then_the_newest(tmp_path):
    here = machine.identify(probe=False)
    root = tmp_path / "profiles"
    _profile(root / "intel-xeon" / "m-fp32.parquet", XEON, "2026-12-01T00:00:00+00:00")
    mine = _profile(root / "this" / "m-fp32.parquet", here, "2026-01-01T00:00:00+00:00")
    _profile(root / "this-cal" / "m-fp32.parquet", here, "2026-12-01T00:00:00+00:00", calibrated=True)
    c = choose("m-fp32", tmp_path / "s.toml", "target.profile", here)
    assert c.path == mine and c.verdict.level == "same" and not c.calibrated
    (root / "this").joinpath("m-fp32.parquet").unlink()
    c = choose("m-fp32", tmp_path / "s.toml", "target.profile", here)
    assert c.calibrated and c.path.parent.name == "this-cal"
    for p in (root / "this-cal").iterdir():
        p.unlink()
    c = choose("m-fp32", tmp_path / "s.toml", "target.profile", here)
    assert c.verdict.foreign and "ANOTHER machine" in c.note(here)


def _simulate(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    sc = tmp_path / "s.toml"
    sc.write_text(body + '\n[workload]\nrequests = 4\nprompt_len = 16\noutput_len = 8\n')
    return cli("simulate", str(sc), cwd=tmp_path)  # in this process: tests/clihelpers.py


def test_simulate_says_which_profile_auto_used(tmp_path):
    _profile(tmp_path / "profiles" / "here" / "m-fp32.parquet", machine.identify(probe=False))
    r = _simulate(tmp_path, '[target]\nname = "m-fp32"\nprofile = "auto"\n')
    assert r.returncode == 0, r.stderr
    assert "target.profile: profile" in r.stderr and "this machine" in r.stderr
    r = _simulate(tmp_path, '[target]\nprofile = "auto"\n')
    assert r.returncode == 2 and "no profile target.parquet" in r.stderr  # the default name, "target"


def test_profile_on_a_device_it_was_not_captured_on_warns(tmp_path):
    p = _profile(tmp_path / "xeon.parquet", XEON)
    r = _simulate(tmp_path, f'[target]\nprofile = "{p}"\n[placement]\ndevices = {{ gpu0 = {{ catalog = "h100-sxm" }} }}\n'
                            'target = "gpu0"\n')
    assert r.returncode == 0, r.stderr
    warn = [l for l in r.stderr.splitlines() if l.startswith("warning:")]
    assert len(warn) == 1 and "Intel(R) Xeon(R) Platinum 8480+" in warn[0] and "H100" in warn[0]
    r = _simulate(tmp_path, f'[target]\nprofile = "{p}"\n[placement]\ndevices = {{ cpu0 = {{ catalog = "xeon-amx-2c" }} }}\n'
                            'target = "cpu0"\n')
    assert r.returncode == 0 and "warning" not in r.stderr
