"""Serving-loop invariants: conservation, exact plain throughput, batching, KV, replicas, seeds."""

import numpy as np
import pytest

from tests.simhelpers import run, single_stream


def batch_scenario(batch=8, requests=40, gamma=3, alpha=0.7, out=None, arrival="closed", **extra):
    d = {
        "target": {"cost": {"step_ms": 20.0}},
        "draft": {"kind": "model" if gamma else "none", "cost": {"step_ms": 2.0}},
        "acceptance": {"iid": alpha},
        "speculation": {"draft_len": gamma},
        "workload": {"requests": requests, "arrival": arrival,
                     "prompt_len": {"dist": "uniform", "min": 10, "max": 300},
                     "output_len": out or {"dist": "lognormal", "median": 100, "sigma": 0.8, "min": 1, "max": 900}},
        "serving": {"max_batch": batch, "seed": 3},
    }
    if arrival == "closed":
        d["workload"]["concurrency"] = batch
    if not gamma:
        d["draft"] = {"kind": "none"}
        del d["acceptance"]
    for k, v in extra.items():
        d.setdefault(k, {}).update(v)
    return d


@pytest.mark.parametrize("gamma", [0, 1, 4])
@pytest.mark.parametrize("arrival", ["closed", "poisson", "burst"])
def test_every_request_ends_at_its_output_length(gamma, arrival):
    extra = {"workload": {"rate": 2.0}} if arrival == "poisson" else {}
    res = run(batch_scenario(gamma=gamma, arrival=arrival, **extra))
    rec = res.records
    assert np.all(rec.tokens == rec.output_len)
    assert res.summary["output_tokens"] == int(rec.output_len.sum())
    assert res.summary["requests"] == 40
    assert np.all(rec.first_token >= rec.arrival) and np.all(rec.finish >= rec.first_token)
    # a request never runs more rounds than tokens it decodes
    assert np.all(rec.rounds <= rec.output_len - 1)
    assert np.all(rec.accepted <= rec.output_len - 1)


@pytest.mark.parametrize("batch", [1, 4, 16])
def test_plain_throughput_is_batch_over_step_exactly(batch):
    d = {
        "target": {"cost": {"step_ms": 25.0}},
        "workload": {"requests": batch * 5, "arrival": "closed", "concurrency": batch,
                     "prompt_len": 64, "output_len": 500},
        "serving": {"max_batch": batch, "seed": 0},
    }
    res = run(d)
    assert res.summary["throughput_tok_s"] == pytest.approx(batch / 0.025, rel=1e-9)
    assert res.summary["tpot_p50_s"] == pytest.approx(0.025, rel=1e-9)
    assert res.summary["ttft_p50_s"] == pytest.approx(0.025, rel=1e-9)


def test_batch_never_exceeds_max_batch_and_kv_limits_concurrency():
    # KV room for exactly two requests of 64 + 500 (+ 1 slot per verify token): plain
    # decoding then runs two at a time however large max_batch is.
    d = {
        "target": {"cost": {"step_ms": 10.0}},
        "workload": {"requests": 8, "arrival": "burst", "prompt_len": 64, "output_len": 500},
        "serving": {"max_batch": 8, "kv_capacity_tokens": 2 * 565, "seed": 0},
    }
    res = run(d)
    assert res.summary["throughput_tok_s"] == pytest.approx(2 / 0.010, rel=1e-9)


def test_kv_capacity_derived_from_memory():
    d = {
        "target": {"cost": {"step_ms": 10.0},
                   "dims": {"layers": 2, "kv_heads": 1, "head_dim": 64, "dtype_bytes": 2, "weights_gb": 0.0}},
        "placement": {"devices": {"dev0": {"memory_gb": 2 * 565 * 512 / 0.9 / 1e9}}},
        "workload": {"requests": 8, "arrival": "burst", "prompt_len": 64, "output_len": 500},
        "serving": {"max_batch": 8, "seed": 0},
    }
    res = run(d)
    assert res.summary["throughput_tok_s"] == pytest.approx(2 / 0.010, rel=1e-6)


def test_two_replicas_double_throughput():
    d = {
        "target": {"cost": {"step_ms": 10.0}},
        "workload": {"requests": 20, "arrival": "closed", "concurrency": 2, "prompt_len": 8, "output_len": 300},
        "serving": {"max_batch": 1, "seed": 0},
    }
    one = run(d).summary["throughput_tok_s"]
    d["placement"] = {"replicas": 2}
    two = run(d).summary["throughput_tok_s"]
    assert two == pytest.approx(2 * one, rel=1e-9)


def test_light_poisson_load_ttft_is_prefill_time():
    d = batch_scenario(gamma=0, arrival="poisson", requests=30, out=20, workload={"rate": 0.01})
    res = run(d)
    assert res.summary["ttft_p99_s"] == pytest.approx(0.020, rel=1e-9)


def test_same_device_draft_and_verify_serialise_busy_fraction():
    res = run(single_stream(0.8, 4, 0.5, tokens=20_000))
    assert res.summary["busy_dev0"] == pytest.approx(1.0)


def test_separate_devices_alternate_without_overlap():
    d = single_stream(0.8, 4, 0.25, tokens=50_000)
    d["placement"] = {"devices": {"gpu": {}, "cpu": {}}, "target": "gpu", "draft": "cpu"}
    s = run(d).summary
    # per round: draft 4 * 2.5 ms on cpu, verify 10 ms on gpu -> half and half
    assert s["busy_gpu"] == pytest.approx(0.5, rel=0.01)
    assert s["busy_cpu"] == pytest.approx(0.5, rel=0.01)


def test_same_seed_same_numbers_different_seed_differs():
    d = batch_scenario(arrival="poisson", workload={"rate": 3.0})
    a = run(d).summary
    b = run(d).summary
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b
    c = run(d, serving__seed=4).summary
    c.pop("wall_s")
    assert c != a


def test_larger_batch_raises_throughput_with_per_seq_cost():
    small = run(batch_scenario(batch=1, requests=16)).summary["throughput_tok_s"]
    large = run(batch_scenario(batch=16, requests=16)).summary["throughput_tok_s"]
    assert large > 5 * small


def test_plain_decoding_replays_trace_lengths(tmp_path):
    """gamma = 0 on a trace workload: no oracle, yet the same requests at the same lengths
    as a speculative run with the same seed (so the two compare like for like)."""
    from simspec.config import parse_scenario
    from simspec.sim.run import simulate
    from tests.test_trace_oracle import make_trace, scenario

    path = make_trace(tmp_path / "syn.parquet")
    spec = simulate(parse_scenario(scenario(path, gamma=3, requests=45), "s.toml"))
    d = scenario(path, gamma=3, requests=45)
    d["speculation"]["draft_len"] = 0
    d["draft"] = {"kind": "none"}
    plain = simulate(parse_scenario(d, "s.toml"))
    assert np.array_equal(plain.records.output_len, spec.records.output_len)
    assert np.array_equal(plain.records.prompt_len, spec.records.prompt_len)
    assert plain.summary["mean_tokens_per_round"] == 1.0


@pytest.mark.parametrize("gamma", [0, 3])
def test_phase_seconds_add_up_to_sim_time_at_one_stream(gamma):
    """At concurrency 1 (no overlap) every moment is one phase: prefill + draft + verify = time,
    and with constant costs each phase is its step cost times its count."""
    d = batch_scenario(batch=1, requests=6, gamma=gamma, out=50)
    res = run(d)
    s = res.summary
    total = s["phase_prefill_s"] + s["phase_draft_s"] + s["phase_verify_s"]
    assert total == pytest.approx(s["sim_time_s"], rel=1e-9)
    rounds = int(res.records.rounds.sum())
    assert s["phase_verify_s"] == pytest.approx(0.020 * rounds, rel=1e-9)
    assert s["phase_draft_s"] == pytest.approx(0.002 * gamma * rounds, rel=1e-9)
    assert s["phase_prefill_s"] == pytest.approx(0.020 * 6 + (0.002 * 6 if gamma else 0), rel=1e-9)
