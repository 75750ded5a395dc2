"""Engine exports of the production kinds (EAGLE-3 heads, MTP layers, parallel drafters):
every key and name written exists in the named version (versions.py), each engine gets its
own method / algorithm / decoding type, and a version that lacks the kind says so in one line."""

from __future__ import annotations

import pytest

from simspec.study import export
from simspec.study.engines import Context, sglang, trtllm, versions, vllm
from simspec.study.engines.answer import answer
from simspec.study.schedule import Point
from simspec.study.schema import DrafterSpec
from test_engine_exports import FLAT, SHIFTING, points, written

ALL = [(e.name, v) for e in versions.ENGINES.values() for v in e.versions]
KINDS = ("eagle3", "mtp", "parallel")


def ctx(kind: str, engine: str, version: str, table: dict = SHIFTING, best: dict | None = None) -> Context:
    best = best or {"gamma": 2, "drafter": kind, "max_batch": 16}
    a = answer(best, points(kind, table), export.runnable(engine, version))
    return Context(best, a, None, [0.8, 0.7, 0.6, 0.5][: max(a.max_k, 1)], "test rates")


def build(kind: str, engine: str, version: str, **kw):
    return export.BUILDERS[engine](ctx(kind, engine, version, **kw), version)


@pytest.mark.parametrize("engine,version", ALL)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("table", [SHIFTING, FLAT], ids=["shifting", "flat"])
def test_only_keys_and_names_the_version_accepts(engine, version, kind, table):
    e = build(kind, engine, version, table=table)
    allowed = versions.writable(engine, version)
    for name, keys in written(engine, e).items():
        assert set(keys) <= allowed, (name, set(keys) - allowed)
        for key, value in keys.items():
            known = versions.values(engine, key, version)
            assert not known or value in known, (name, key, value)
    assert all("\n" not in n for n in e.notes)


def test_eagle3_tree_in_a_vllm_that_has_token_trees():
    c = ctx("eagle3", "vllm", "0.11.0", FLAT, {"gamma": 3, "drafter": "eagle3", "tree": "2,1,1"})
    cfg = vllm.build(c, "0.11.0").config
    assert cfg["method"] == "eagle3" and cfg["num_speculative_tokens"] == 6 and "speculative_token_tree" in cfg
    assert set(cfg) <= versions.writable("vllm", "0.11.0")


@pytest.mark.parametrize("version", versions.VLLM.versions)
def test_vllm_methods(version):
    eagle = build("eagle3", "vllm", version).config
    assert eagle["method"] == "eagle3" and eagle["model"] == "<eagle3 head path>"
    assert eagle["draft_tensor_parallel_size"] == 1
    mtp = build("mtp", "vllm", version).config
    assert mtp["method"] == "mtp" and "model" not in mtp  # the MTP layers are the target's own
    par = build("parallel", "vllm", version)
    if versions.at_least(version, "0.21.0"):
        assert par.config["method"] == "dflash" and par.config["model"] == "<parallel head path>"
    else:  # dflash is not a method of that version: nothing written, one line says why
        assert par.config == {} and par.k_at is None
        assert any(f"vLLM {version} has no 'parallel' drafter" in n for n in par.notes)


def test_vllm_schedule_for_a_head_on_a_version_with_it():
    cfg = build("eagle3", "vllm", "0.28.0").config
    assert cfg["num_speculative_tokens_per_batch_size"] == [[1, 7, 4], [8, 63, 2], [64, 64, 0]]
    assert cfg["num_speculative_tokens"] == 4


@pytest.mark.parametrize("version", versions.SGLANG.versions)
def test_sglang_algorithms(version):
    eagle = build("eagle3", "sglang", version).config
    assert eagle["--speculative-algorithm"] == "EAGLE3" and eagle["--speculative-draft-model-path"] == "<eagle3 head path>"
    mtp = build("mtp", "sglang", version).config
    assert mtp["--speculative-algorithm"] == "NEXTN" and "--speculative-draft-model-path" not in mtp
    assert mtp["--speculative-eagle-topk"] == 1
    par = build("parallel", "sglang", version, table=FLAT)
    if versions.at_least(version, "0.5.16"):
        assert par.config["--speculative-algorithm"] == "DFLASH"
        assert par.config["--speculative-num-draft-tokens"] == par.k_at(1) + 1  # block = K drafts + the seed
        assert "--speculative-num-steps" not in par.config and "--speculative-eagle-topk" not in par.config
        assert par.synthetic is None and any("DFLASH (the variable is read in the EAGLE" in n for n in par.notes)
    else:
        assert par.config == {} and any(f"SGLang {version} has no 'parallel' drafter" in n for n in par.notes)


@pytest.mark.parametrize("version", versions.TRTLLM.versions)
def test_trtllm_decoding_types(version):
    eagle = build("eagle3", "trtllm", version).config
    assert eagle["decoding_type"] == "Eagle3" and eagle["speculative_model"] == "<eagle3 head path>"
    flat = build("mtp", "trtllm", version, table=FLAT)
    assert flat.config == {"decoding_type": "MTP", "num_nextn_predict_layers": flat.k_at(1)}
    shifting = build("mtp", "trtllm", version)  # a schedule would pay: MTP takes one K, and says so
    assert "draft_len_schedule" not in shifting.config
    assert any("num_nextn_predict_layers" in n for n in shifting.notes)
    par = build("parallel", "trtllm", version)  # TensorRT-LLM has no parallel drafter here
    assert par.config == {} and par.k_at is None
    assert any(f"TensorRT-LLM {version} has no 'parallel' drafter" in n for n in par.notes)


def test_the_table_says_when_each_name_arrived():
    assert "dflash" not in versions.values("vllm", "method", "0.11.0")
    assert "dflash" in versions.values("vllm", "method", "0.21.0")
    assert {"eagle3", "mtp"} <= set(versions.values("vllm", "method", "0.11.0"))
    assert "DFLASH" not in versions.values("sglang", "--speculative-algorithm", "0.5.10")
    assert "DFLASH" in versions.values("sglang", "--speculative-algorithm", "0.5.16")
    assert export.runnable("vllm", "0.11.0") >= {"eagle3", "mtp"} and "parallel" not in export.runnable("vllm", "0.11.0")
    assert "parallel" in export.runnable("vllm", "0.28.0") and "parallel" not in export.runnable("trtllm", "1.3.0")
    method = next(k for k in versions.VLLM.keys if k.name == "method")
    assert "dflash" in method.unconfirmed and "002e77c1" in method.source


def test_a_version_without_the_kind_falls_back_to_one_it_runs():
    """A study that also searched MTP: vLLM 0.11.0 runs that instead of the parallel drafter."""
    pts = points("parallel", SHIFTING) + [Point(b, "mtp", 2, 0.9 * thr, 0.01) for b, row in SHIFTING.items()
                                          for g, thr in row.items() if g == 2]
    best = {"gamma": 4, "drafter": "parallel"}
    a = answer(best, pts, export.runnable("vllm", "0.11.0"))
    e = vllm.build(Context(best, a, None, [0.8, 0.7, 0.6, 0.5], "r"), "0.11.0")
    assert e.config["method"] == "mtp" and any("has no 'parallel' drafter: its export uses 'mtp'" in n for n in e.notes)


def test_sglang_and_trtllm_modules_agree_with_the_registry():
    assert sglang.algorithms()["mtp"] == "NEXTN" and trtllm.decoding_types()["mtp"] == "MTP"
    assert "parallel" not in trtllm.decoding_types()


@pytest.mark.parametrize("engine,version", ALL)
def test_a_trimmed_eagle3_head_is_its_checkpoints_vocabulary(engine, version):
    best = {"gamma": 2, "drafter": "eagle3", "vocab": 32000, "max_batch": 16}
    c = ctx("eagle3", engine, version, best=best)
    c.drafter = DrafterSpec(name="heads/eagle3-8b", vocab_size=128256, acceptance={"per_position": [0.8]})
    assert c.trimmed == 32000
    e = export.BUILDERS[engine](c, version)
    assert any("checkpoint's own" in n and "K = 32000" in n for n in e.notes)
    assert not any("full vocabulary" in n or "token-map" in n for n in e.notes)
    assert "heads/eagle3-8b" in "".join(e.files.values())


def test_the_eagle3_h100_study_answers_k_per_batch_and_exports_for_vllm(tmp_path):
    """studies/eagle3-h100.toml end to end (few trials): a K for each batch bucket, and a
    vLLM config of method eagle3 that the named version accepts."""
    import csv
    import json
    from pathlib import Path

    from clihelpers import cli

    study = Path(__file__).resolve().parents[1] / "studies" / "eagle3-h100.toml"
    out = tmp_path / "run"
    r = cli("study", str(study), "--trials", "6", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((out / "schedule.csv").open()))
    assert {int(x["batch"]) for x in rows} == {1, 4, 16, 64}
    for b in (1, 4, 16, 64):  # every gamma 0..4 (the imported gamma) at every bucket, and speculation pays
        at = {int(x["gamma"]): float(x["throughput_tok_s"]) for x in rows if int(x["batch"]) == b}
        assert set(at) == set(range(5)) and max(at, key=at.get) > 0
    for version in ("0.11.0", "0.24.0"):
        to = tmp_path / version
        r = cli("export", str(study), "--engine", "vllm", "--engine-version", version, "--out", str(out), "--to", str(to))
        assert r.returncode == 0, r.stderr
        cfg = json.loads((to / "vllm_speculative_config.json").read_text())
        assert cfg["method"] == "eagle3" and cfg["model"] == "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"
        assert set(cfg) <= versions.writable("vllm", version) and 1 <= cfg["num_speculative_tokens"] <= 4
