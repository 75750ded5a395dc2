"""The shipped traces: readable, compact, and replayed exactly by the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simspec.config import parse_scenario
from simspec.sim.run import simulate
from simspec.trace.schema import load_trace
from simspec.trace.summary import tokens_per_round

TRACES = Path(__file__).resolve().parents[1] / "traces"
QWEN_HE = TRACES / "qwen2.5-coder-1.5b__humaneval.parquet"


def expected_tokens_per_round(ranks: np.ndarray, lengths: np.ndarray, g: int) -> float:
    """Straight from the rank column: walk each sequence round by round (first token = prefill)."""
    tokens = rounds = 0
    off = 0
    for t in lengths.tolist():
        r = ranks[off:off + t]
        n = 1
        while n < t:
            k = 0
            while k < g and n + k < t and r[n + k] == 0:
                k += 1
            e = min(k + 1, t - n)
            n, tokens, rounds = n + e, tokens + e, rounds + 1
        off += t
    return tokens / rounds


needs_trace = pytest.mark.skipif(not QWEN_HE.exists(), reason=f"{QWEN_HE.name} not captured yet (issue 4)")


@needs_trace
def test_shipped_traces_are_compact_and_valid():
    files = sorted(TRACES.glob("*.parquet"))
    assert QWEN_HE in files
    assert sum(f.stat().st_size + f.with_suffix(".json").stat().st_size for f in files) < 20e6
    for f in files:
        t = load_trace(f)
        assert t.meta["kind"] == "simspec-trace" and t.meta["capture_seconds"]["total"] > 0
        assert f.name.startswith(t.meta["target"] + "__")


@needs_trace
@pytest.mark.parametrize("drafter,gamma", [("qwen2.5-coder-0.5b", 4), ("qwen2.5-coder-0.5b", 8),
                                           ("exit26", 2), ("qwen2.5-coder-0.5b/k8192", 5)])
def test_batch1_simulation_matches_qwen_humaneval_trace(drafter, gamma):
    trace = load_trace(QWEN_HE)
    base = drafter.split("/")[0]
    k = int(drafter.split("/k")[1]) if "/k" in drafter else None
    draft = {"kind": "early_exit", "exit_layer": 26} if base.startswith("exit") else \
        {"kind": "model", "cost": {"step_ms": 100.0}}
    if k:
        draft["vocab"] = k
    sc = parse_scenario({
        "target": {"cost": {"step_ms": 240.0}, "layers": 28},
        "draft": draft,
        "acceptance": {"trace": str(QWEN_HE), "drafter": drafter},
        "speculation": {"draft_len": gamma},
        "workload": {"requests": trace.n_seq, "concurrency": 1, "dataset": "trace"},
        "serving": {"max_batch": 1, "seed": 0},
    }, "qwen.toml")
    sim = simulate(sc).summary["mean_tokens_per_round"]
    want = expected_tokens_per_round(trace.ranks[drafter], trace.output_len, gamma)
    assert sim == pytest.approx(want, rel=0.02)
    assert tokens_per_round(trace, drafter, [gamma])[gamma] == pytest.approx(want, rel=1e-12)


@needs_trace
def test_sequences_replay_in_order_and_bad_index_is_an_input_error():
    trace = load_trace(QWEN_HE)
    seqs = [7, 3, 42]
    sc = parse_scenario({
        "target": {"cost": {"step_ms": 240.0}, "layers": 28},
        "draft": {"kind": "model", "cost": {"step_ms": 100.0}},
        "acceptance": {"trace": str(QWEN_HE), "drafter": "qwen2.5-coder-0.5b", "sequences": seqs},
        "speculation": {"draft_len": 3},
        "workload": {"requests": 6, "concurrency": 1, "dataset": "trace"},
        "serving": {"max_batch": 1, "seed": 0},
    }, "qwen.toml")
    res = simulate(sc)
    frame = res.requests_frame()  # one row per request id, in order
    want_out = trace.output_len[seqs + seqs]
    assert frame["output_len"].to_numpy().tolist() == want_out.tolist()
    assert res.summary["mean_tokens_per_round"] == pytest.approx(
        expected_tokens_per_round(
            np.concatenate([trace.ranks["qwen2.5-coder-0.5b"][trace.offsets[s]:trace.offsets[s + 1]] for s in seqs]),
            trace.output_len[seqs], 3), rel=1e-9)

    from simspec.errors import InputError
    bad = sc.model_copy(update={"acceptance": sc.acceptance.model_copy(update={"sequences": [0, trace.n_seq]})})
    with pytest.raises(InputError, match="acceptance.sequences"):
        simulate(bad, "qwen.toml")
