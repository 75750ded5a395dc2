"""Engine exports against the version table: every key written exists in that version, the
per-batch schedule survives each engine's reading of it, the synthetic-acceptance configs carry
the trace's per-position rates, and the schedule is dropped when it gains too little."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from simspec import drafters
from simspec.study import export, schedule
from simspec.study.engines import Context, sglang, synthetic, trtllm, versions, vllm
from simspec.study.engines.answer import SCHEDULE_MIN_GAIN, answer
from simspec.study.schedule import Point
from simspec.study.spec import load_study
from simspec.trace.schema import load_trace, write_trace
from simspec.trace.summary import per_position

ALL = [(e.name, v) for e in versions.ENGINES.values() for v in e.versions]


@pytest.fixture
def eagle_kind():
    """A drafter kind every engine runs with its EAGLE method (none is registered today):
    exercises the paths only EAGLE takes (SGLang's adaptive config)."""
    drafters.register(drafters.Kind("eaglet", "eaglet", "an EAGLE head", arg="model", separate_model=True,
                                    vllm_method="eagle", sglang_algorithm="EAGLE", trtllm_decoding_type="Eagle3"))
    yield "eaglet"
    del drafters.KINDS["eaglet"]


def points(kind: str, table: dict[int, dict[int, float]]) -> list[Point]:
    """{batch: {gamma: tok/s}} -> points (gamma 0 = plain decoding)."""
    return [Point(b, "none" if g == 0 else kind, g, thr, 0.01) for b, row in table.items() for g, thr in row.items()]


# batch 1..64: K = 4 pays at small batch, 2 in the middle, none at 64 (gains far above the threshold)
SHIFTING = {1: {0: 10, 2: 16, 4: 20}, 2: {0: 19, 2: 30, 4: 36}, 8: {0: 70, 2: 100, 4: 90},
            16: {0: 130, 2: 160, 4: 120}, 64: {0: 400, 2: 330, 4: 250}}
# the best K moves, but by less than the threshold
FLAT = {1: {0: 10, 2: 16, 3: 16.5}, 8: {0: 70, 2: 100, 3: 101}, 16: {0: 130, 2: 160, 3: 159}}


def ctx_for(kind: str, table: dict, best: dict | None = None, rates=(0.8, 0.7, 0.6, 0.5)) -> Context:
    best = best or {"gamma": 2, "drafter": kind, "max_batch": 16}
    a = answer(best, points(kind, table), {kind})
    return Context(best, a, None, list(rates)[: a.max_k], "test rates")


def flags_of(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition(" ")
            out[k] = v or None
    return out


def written(engine: str, e) -> dict[str, dict]:
    """Every file of an export, parsed: name -> its keys/flags/variables."""
    out = {}
    for name, text in e.files.items():
        if name.endswith(".json") and name not in (sglang.ADAPTIVE, sglang.TOKEN_MAP_IDS):
            out[name] = json.loads(text)
        elif name.endswith(".yaml"):
            out[name] = (yaml.safe_load(text) or {}).get("speculative_config", {})
        elif name == sglang.MAIN:
            out[name] = flags_of(text)
        elif name.endswith(".sh"):
            out[name] = {l.split()[1].split("=")[0]: l.split("=", 1)[1] for l in text.splitlines() if l.startswith("export ")}
    return out


@pytest.mark.parametrize("engine,version", ALL)
@pytest.mark.parametrize("shape", ["shifting", "flat", "off", "fallback", "tree"])
def test_every_written_key_exists_in_that_version(engine, version, shape, eagle_kind):
    kind = {"fallback": "model"}.get(shape, eagle_kind if shape != "tree" else "model")
    if shape == "off":
        ctx = ctx_for(kind, {1: {0: 10, 2: 8}, 8: {0: 70, 2: 50}})
    elif shape == "fallback":
        best = {"gamma": 3, "drafter": "early_exit", "exit_layer": 12}
        pts = points("model", SHIFTING) + [Point(1, "early_exit", 3, 99.0, 0.01)]
        a = answer(best, pts, export.runnable(engine))
        ctx = Context(best, a, None, [0.8, 0.7, 0.6, 0.5], "r")
    elif shape == "tree":
        ctx = ctx_for(kind, FLAT, {"gamma": 3, "drafter": "model", "tree": "2,1,1"})
    else:
        ctx = ctx_for(kind, SHIFTING if shape == "shifting" else FLAT)
    e = export.BUILDERS[engine](ctx, version)
    allowed = versions.writable(engine, version)
    for name, keys in written(engine, e).items():
        assert set(keys) <= allowed, (name, set(keys) - allowed)
        for key, value in keys.items():
            known = versions.values(engine, key)
            assert not known or value in known, (name, key, value)
    if shape == "fallback":
        assert any("early_exit" in n for n in e.notes)
    if shape == "off":
        assert e.k_at is None and e.synthetic is None


@pytest.mark.parametrize("engine,version", ALL)
def test_the_table_cites_a_source_for_every_key(engine, version):
    for k in versions.engine(engine).keys:
        assert k.source.strip(), k.name
        for v in (k.since, k.until):
            assert v is None or versions.parse_version(v)
    assert versions.engine(engine).versions == tuple(sorted(versions.engine(engine).versions, key=versions.parse_version))


def test_vllm_keys_follow_the_versions():
    assert "disable_by_batch_size" not in versions.writable("vllm", "0.11.0")  # a no-op there: never written
    assert "disable_by_batch_size" in versions.allowed("vllm", "0.11.0")
    assert "speculative_token_tree" in versions.writable("vllm", "0.11.0")
    assert "speculative_token_tree" not in versions.allowed("vllm", "0.21.0")
    assert "num_speculative_tokens_per_batch_size" not in versions.allowed("vllm", "0.21.0")
    assert "num_speculative_tokens_per_batch_size" in versions.allowed("vllm", "0.24.0")
    assert "synthetic_acceptance_rates" in versions.allowed("vllm", "0.21.0")
    assert "synthetic_acceptance_rates" in versions.allowed("vllm", "9.0.0")  # newer than known: the newest
    tree = ctx_for("model", FLAT, {"gamma": 3, "drafter": "model", "tree": "2,1,1"})
    assert tree.answer.single_k == 3  # the tree's depth: the study's tree is exported
    old = vllm.build(tree, "0.11.0").config
    assert old["speculative_token_tree"] == "[(0,), (1,), (0, 0), (1, 0), (0, 0, 0), (1, 0, 0)]"
    assert old["num_speculative_tokens"] == 6
    new = vllm.build(tree, "0.28.0")
    assert "speculative_token_tree" not in new.config and any("no token tree" in n for n in new.notes)


@pytest.mark.parametrize("version", versions.TRTLLM.versions)
def test_per_batch_schedule_round_trips(version, eagle_kind):
    ctx = ctx_for(eagle_kind, SHIFTING)
    a = ctx.answer
    assert a.schedule_pays and a.ranges == [[1, 7, 4], [8, 63, 2], [64, 64, 0]]
    want = {b: a.k_at(b) for b in range(1, 65)}
    assert [want[b] for b in SHIFTING] == [a.per[b].gamma for b in SHIFTING]
    # vLLM: inclusive [start, end, K], num_speculative_tokens the maximum
    cfg = vllm.build(ctx, "0.24.0").config
    sched = cfg["num_speculative_tokens_per_batch_size"]
    assert cfg["num_speculative_tokens"] == max(k for _, _, k in sched) == 4
    for b in range(1, 65):
        assert min(next(k for lo, hi, k in sched if lo <= b <= hi), cfg["num_speculative_tokens"]) == want[b]
    # SGLang: one slot per lowest batch size; the router takes the largest key <= batch
    sg = sglang.build(ctx, "0.5.16")
    slots = json.loads(sg.files[sglang.ADAPTIVE])
    keys = sorted(int(k) for k in slots)
    for b in range(1, 65):
        key = max(k for k in keys if k <= b)
        assert slots[str(key)]["candidate_steps"] == [want[b]]
    fl = flags_of(sg.files[sglang.MAIN])
    assert "--speculative-adaptive" in fl and fl["--speculative-adaptive-config"] == sglang.ADAPTIVE
    assert fl["--speculative-num-steps"] == "4"
    assert sglang.ADAPTIVE not in sglang.build(ctx, "0.5.10").files  # no per-batch adaptive config there
    # TensorRT-LLM: keys read as lower bounds (1.2) or upper bounds (1.3), as its drafter looks them up
    tr = trtllm.build(ctx, version)
    sc = yaml.safe_load(tr.files[trtllm.MAIN])["speculative_config"]["draft_len_schedule"]
    keys = sorted(sc)
    assert sc[keys[0]] == yaml.safe_load(tr.files[trtllm.MAIN])["speculative_config"]["max_draft_len"]
    for b in range(1, 65):
        if trtllm.upper_bounds(version):  # model_engine: the first key >= batch, off above the last
            got = next((sc[k] for k in keys if b <= k), 0)
        else:  # Drafter.get_draft_len_for_batch_size: the largest key <= batch
            got = sc[max(k for k in keys if k <= b)]
        assert got == want[b] == tr.k_at(b), (b, got, want[b])


def test_no_schedule_below_the_threshold():
    ctx = ctx_for("model", FLAT)
    a = ctx.answer
    assert len({p.gamma for p in a.per.values()}) > 1 and 0 < a.max_gain < SCHEDULE_MIN_GAIN
    assert not a.schedule_pays and a.single_k == 3
    assert vllm.build(ctx, "0.28.0").config["num_speculative_tokens"] == 3
    assert "num_speculative_tokens_per_batch_size" not in vllm.build(ctx, "0.28.0").config
    assert "draft_len_schedule" not in yaml.safe_load(trtllm.build(ctx, "1.3.0").files[trtllm.MAIN])["speculative_config"]
    low = answer({"gamma": 2, "drafter": "model"}, points("model", FLAT), {"model"}, threshold=0.001)
    assert low.schedule_pays  # the same points pass a lower threshold
    from simspec.report.study import schedule_section

    ex = export.Exports(answers={"vllm": a})
    text = "\n".join(schedule_section(ex))
    assert "**No schedule**" in text and "6.6%" in text and "#49548" in text
    for b in a.buckets:
        assert f"| {b.batch} | {b.best.gamma} |" in text
    ex = export.Exports(answers={"vllm": ctx_for("model", SHIFTING).answer})
    assert "**Schedule recommended**" in "\n".join(schedule_section(ex))


# -- synthetic acceptance from a trace ----------------------------------------------------------

def _trace(path, vocab=1000):
    rng = np.random.default_rng(1)
    rows = []
    for s in range(30):
        t, p = int(rng.integers(40, 120)), int(rng.integers(5, 40))
        r = np.minimum(rng.geometric(0.55, size=t) - 1, 127)
        rows.append({"seq": s, "prompt_len": p, "output_len": t, "prompt_ids": rng.integers(0, 50, size=p),
                     "tokens": rng.integers(0, 50, size=t), "rank:m": r,
                     "rank:m/k64": np.where(rng.random(t) < 0.85, r, 127)})
    order = [int(x) for x in rng.permutation(vocab)[:256]]
    write_trace(path, rows, ["m", "m/k64"], [],
                {"vocab": vocab, "target": "synthetic", "vocabs": [64, "full"], "calibration": {"order": order}})
    return order


TRACE_STUDY = """
name = "tr"
trials = 4
[scenario.target]
cost = {{ step_ms = 10.0, per_seq_ms = 0.2 }}
[scenario.serving]
seed = 0
[workload]
requests = 24
concurrency = 4
dataset = "trace"
[search]
gamma = {{ low = 0, high = 4 }}
drafter = ["model"]
vocab = [64, 1000]
max_batch = [1, 4]
[drafters.model]
name = "org/m"
cost = {{ step_ms = 1.0 }}
acceptance = {{ trace = "t.parquet", drafter = "m" }}
vocab_size = 1000
head_ms = 0.3
[objectives]
throughput = "maximize"
"""


def test_synthetic_configs_carry_the_traces_per_position_rates(tmp_path):
    order = _trace(tmp_path / "t.parquet")
    (tmp_path / "tr.toml").write_text(TRACE_STUDY.format())
    spec = load_study(tmp_path / "tr.toml")
    best = {"gamma": 3, "drafter": "model", "vocab": 64, "max_batch": 4}
    pts = points("model", {1: {0: 10, 2: 14, 3: 15}, 4: {0: 38, 2: 50, 3: 52}})
    from simspec.study.evaluate import Evaluator

    ex = export.export(spec, None, best, pts, Evaluator(spec))
    cond = per_position(load_trace(tmp_path / "t.parquet"), "m/k64", 3)  # the trimmed head's column
    assert ex.rates["model"] == pytest.approx(cond) and "m/k64" in ex.rates_source["model"]
    v = ex.get("vllm")
    syn = json.loads(v.files[vllm.SYNTHETIC])
    assert syn["rejection_sample_method"] == "synthetic" and syn["num_speculative_tokens"] == 3
    assert syn["synthetic_acceptance_rates"] == pytest.approx(np.cumprod(cond), abs=1e-6)
    assert all(a >= b for a, b in zip(syn["synthetic_acceptance_rates"], syn["synthetic_acceptance_rates"][1:]))
    assert {k: syn[k] for k in v.config} == v.config  # the served config, plus the synthetic sampler
    g = ex.get("sglang")
    env = written("sglang", g)[sglang.SYNTHETIC]
    assert float(env["SGLANG_SIMULATE_ACC_LEN"]) == pytest.approx(1 + np.cumprod(cond).sum(), abs=1e-4)
    # the trimmed vocabulary wins: SGLang's token map holds the trace's top-64 ids
    assert json.loads(g.files[sglang.TOKEN_MAP_IDS]) == order[:64]
    assert flags_of(g.files[sglang.MAIN])["--speculative-token-map"] == sglang.TOKEN_MAP
    assert any("trimmed-head" in n for n in v.notes)
    # the prediction: the exported K at every bucket, acceptance i.i.d. per position
    rows = {(r.engine, r.batch): r for r in ex.prediction}
    assert set(rows) == {("vllm", 1), ("vllm", 4), ("sglang", 1), ("sglang", 4)}
    r = rows[("vllm", 4)]
    assert r.k == 3 and r.throughput_tok_s > 0 and not math.isnan(r.tpot_p50_s)
    assert r.tokens_per_round == pytest.approx(1 + np.cumprod(cond).sum(), rel=0.08)


def test_rates_from_synthetic_acceptance_sources(tmp_path):
    (tmp_path / "s.toml").write_text(TRACE_STUDY.replace(
        'acceptance = {{ trace = "t.parquet", drafter = "m" }}', "acceptance = {{ per_position = [0.9, 0.6] }}").format())
    _trace(tmp_path / "t.parquet")
    spec = load_study(tmp_path / "s.toml")
    rates, src = synthetic.conditional_rates(spec, schedule.point_knobs({}, {}, "model", 4), 4)
    assert rates == [0.9, 0.6, 0.6, 0.6] and "per_position" in src
    assert synthetic.unconditional(rates, 3) == pytest.approx([0.9, 0.54, 0.324])
    assert synthetic.acceptance_length(rates, 3) == pytest.approx(1 + 0.9 + 0.54 + 0.324)


def test_bad_engine_and_version_are_one_line_errors():
    from simspec.errors import InputError

    with pytest.raises(InputError, match="not one of vllm, sglang, trtllm"):
        export.parse_versions(["tgi"], None)
    with pytest.raises(InputError, match="older than the oldest"):
        export.parse_versions(["vllm"], "0.9.2")
    with pytest.raises(InputError, match="exactly one --engine"):
        export.parse_versions(None, "0.24.0")
    with pytest.raises(InputError, match="ENGINE=VERSION"):
        export.parse_pins(["vllm"])
    assert export.parse_pins(["sglang=0.5.10"]) == {"vllm": None, "sglang": "0.5.10", "trtllm": None}
    assert versions.parse_version("v0.24.1rc2") == (0, 24, 1)


def test_a_rerun_removes_the_export_files_it_no_longer_writes(tmp_path, eagle_kind):
    adaptive = export.Exports(engines=[sglang.build(ctx_for(eagle_kind, SHIFTING), "0.5.16")])
    assert sglang.ADAPTIVE in export.write(adaptive, tmp_path)
    static = export.Exports(engines=[sglang.build(ctx_for(eagle_kind, SHIFTING), "0.5.10")])
    names = export.write(static, tmp_path)
    assert sglang.ADAPTIVE not in names and not (tmp_path / sglang.ADAPTIVE).exists()
    assert (tmp_path / sglang.MAIN).read_text() == static.engines[0].files[sglang.MAIN]
