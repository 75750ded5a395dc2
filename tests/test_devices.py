"""Device catalog, roofline pricing, placement that changes speed, and transfer costs."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from profhelpers import write_synthetic
from simspec import drafters
from simspec.config import parse_scenario
from simspec.devices import arch, catalog
from simspec.devices.roofline import RooflineCost
from simspec.errors import InputError
from simspec.sim.build import build_round_cost
from simspec.sim.run import simulate

ROOT = Path(__file__).resolve().parents[1]


def hetero(draft_device: str = "l4", **placement) -> dict:
    """An H100 target and a separate drafter, both priced from model dims alone."""
    return {
        "target": {"model": "llama-3-8b"},
        "draft": {"kind": "model", "model": "llama-3.2-1b"},
        "acceptance": {"iid": 0.0},
        "speculation": {"draft_len": 4},
        "placement": {"devices": {"gpu": {"catalog": "h100-sxm"}, "edge": {"catalog": draft_device}},
                      "target": "gpu", "draft": "edge", **placement},
        # contexts stay inside one 32-token bucket, and acceptance 0 never leaves a drafter
        # behind: every round drafts at the same cost
        "workload": {"requests": 2, "arrival": "closed", "concurrency": 1, "prompt_len": 16, "output_len": 24},
        "serving": {"max_batch": 1, "seed": 0},
    }


# -- the catalog ---------------------------------------------------------------------------

def test_catalog_has_the_devices_with_sources():
    names = catalog.names()
    for want in ("epyc-2c", "a100-80g", "h100-sxm", "h200", "l4", "l40s", "mi300x", "apple-m2-ultra"):
        assert want in names
    for n in names:
        d = catalog.get(n)
        assert d.memory_bw > 0 and d.flops and all(v > 0 for v in d.flops.values())
        for fig in ("flops", "memory", "link", "price"):
            assert d.sources.get(fig), f"{n}: no source for {fig}"


def test_catalog_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text('[x]\nflops = { bf16 = 1e12 }\nmemory_gb_s = 10\nbandwith = 3\n')
    with pytest.raises(ValueError, match="unknown key 'bandwith'"):
        catalog.raw_entries(bad)


@pytest.mark.parametrize("device, key, reason", [
    ({"catalog": "h1000"}, "placement.devices.gpu.catalog", "unknown catalog device 'h1000'"),
    ({"catalog": "h100-sxm", "flop": 1}, "placement.devices.gpu.flop", "unknown key"),
    ({"memory_gb_s": 100}, "placement.devices.gpu", "needs `flops` and `memory_gb_s`"),
    ({"catalog": "l4", "efficiency": {"matmul": {"bw": 0.5}}}, "placement.devices.gpu.efficiency.matmul", "gemv"),
    ({"catalog": "l4", "flops": {"int4": 1e12}}, "placement.devices.gpu.flops.int4", "bf16"),
])
def test_device_errors_name_key_and_reason(device, key, reason):
    d = hetero()
    d["placement"]["devices"]["gpu"] = device
    with pytest.raises(InputError) as e:
        parse_scenario(d, "s.toml")
    assert e.value.key == key and reason in e.value.reason, e.value.line()


def test_roofline_target_needs_a_priced_device():
    d = hetero()
    d["placement"]["devices"]["gpu"] = {}
    with pytest.raises(InputError, match="placement.devices.gpu.*catalog"):
        parse_scenario(d, "s.toml")


def test_unknown_model_dims_is_an_input_error():
    d = hetero()
    d["target"]["model"] = "no-such-model"
    with pytest.raises(InputError) as e:
        simulate(parse_scenario(d, "s.toml"), "s.toml")
    assert e.value.key == "target.model" and "not a known model" in e.value.reason


def test_inline_device_overrides_catalog():
    d = hetero()
    d["placement"]["devices"]["edge"] = {"catalog": "l4", "memory_gb_s": 600, "price_per_hour": 9.0}
    sc = parse_scenario(d)
    info = sc.placement.devices["edge"].info("edge")
    assert info.memory_bw == 600e9 and info.flops == catalog.get("l4").flops
    assert sc.placement.devices["edge"].price == 9.0
    assert parse_scenario(hetero()).placement.devices["edge"].price == catalog.get("l4").price_per_hour


# -- placement changes speed -------------------------------------------------------------------

def test_moving_the_drafter_scales_draft_time_by_the_roofline_ratio():
    a = simulate(parse_scenario(hetero("l4"))).summary
    b = simulate(parse_scenario(hetero("epyc-2c"))).summary
    dims = arch.resolve("llama-3.2-1b")
    step = {n: RooflineCost(dims, catalog.get(n)).latency_s("decode", 1, 1, 32) for n in ("l4", "epyc-2c")}
    ratio = step["epyc-2c"] / step["l4"]
    assert ratio > 5  # a CPU drafter is far slower than an L4 one
    # the draft phase also holds the per-round transfer; take it out on both sides
    sa, sb = parse_scenario(hetero("l4")), parse_scenario(hetero("epyc-2c"))
    ca, cb = build_round_cost(sa, None), build_round_cost(sb, None)
    rounds = a["mean_tokens_per_round"] and (a["output_tokens"] - 2) / a["mean_tokens_per_round"]
    da = a["phase_draft_s"] - rounds * ca.transfer_s(1)
    db = b["phase_draft_s"] - rounds * cb.transfer_s(1)
    assert db / da == pytest.approx(ratio, rel=1e-6)
    assert a["target_estimate"] == 1.0 and a["draft_estimate"] == 1.0
    assert a["phase_verify_s"] == pytest.approx(b["phase_verify_s"])  # the target did not move


def test_runs_from_model_dims_alone():
    d = hetero()
    d["target"] = {"dims": {"layers": 32, "kv_heads": 8, "head_dim": 128, "hidden": 4096, "heads": 32,
                            "intermediate": 14336, "vocab": 128256, "tied": False}}
    s = simulate(parse_scenario(d)).summary
    ref = simulate(parse_scenario(hetero())).summary
    assert s["throughput_tok_s"] == pytest.approx(ref["throughput_tok_s"])


def test_price_and_cost_per_mtok_follow_the_catalog():
    s = simulate(parse_scenario(hetero())).summary
    price = catalog.get("h100-sxm").price_per_hour + catalog.get("l4").price_per_hour
    assert s["cost_per_mtok"] == pytest.approx(price * s["sim_time_s"] / 3600 / s["output_tokens"] * 1e6)


def test_tensor_parallel_splits_weights_and_pays_allreduce():
    dims = arch.resolve("llama-3-8b")
    h100 = catalog.get("h100-sxm")
    one = RooflineCost(dims, h100)
    two = RooflineCost(dims, h100, tensor_parallel=2)
    b1, b2 = one.breakdown("decode", 1, 1, 512), two.breakdown("decode", 1, 1, 512)
    assert b2["linear"] == pytest.approx(b1["linear"] / 2)
    assert b1["comm"] == 0 and b2["comm"] == pytest.approx(32 * 2 * (4096 * 2 / h100.link_bw + 2 * h100.link_latency_s))
    d = hetero()
    d["target"]["tensor_parallel"] = 2
    s2, s1 = simulate(parse_scenario(d)).summary, simulate(parse_scenario(hetero())).summary
    assert s2["phase_verify_s"] < s1["phase_verify_s"]
    price2 = 2 * catalog.get("h100-sxm").price_per_hour + catalog.get("l4").price_per_hour
    assert s2["cost_per_mtok"] == pytest.approx(price2 * s2["sim_time_s"] / 3600 / s2["output_tokens"] * 1e6)


def test_tensor_parallel_needs_a_roofline_target():
    d = hetero()
    d["target"] = {"cost": {"step_ms": 10.0}, "tensor_parallel": 2}
    with pytest.raises(InputError, match="roofline what-ifs"):
        parse_scenario(d)


# -- transfers -------------------------------------------------------------------------------

def test_transfer_cost_of_tokens_between_devices():
    sc = parse_scenario(hetero())
    cost = build_round_cost(sc, None)
    h, l4 = catalog.get("h100-sxm"), catalog.get("l4")
    bw, lat = min(h.link_bw, l4.link_bw), max(h.link_latency_s, l4.link_latency_s)
    want = (lat + 4 * 4 / bw) + (lat + 5 * 4 / bw)  # 4 draft ids there, 5 verified ids back
    assert cost.transfer_s(1) == pytest.approx(want)
    assert cost.transfer_s(8) > cost.transfer_s(1)


def test_hidden_states_cross_for_hidden_reading_drafters():
    kind = drafters.Kind("hidden_model", "hdraft", "a hidden-state drafter", arg="model",
                         separate_model=True, crosses="hidden")
    drafters.register(kind)
    try:
        d = hetero()
        d["draft"]["kind"] = "hidden_model"
        cost = build_round_cost(parse_scenario(d), None)
        plain = build_round_cost(parse_scenario(hetero()), None)
        l4 = catalog.get("l4")
        extra = 5 * 4096 * 2 / l4.link_bw  # 5 verified tokens' hidden states (bf16, width 4096)
        assert cost.transfer_s(1) - plain.transfer_s(1) == pytest.approx(extra)
    finally:
        drafters.KINDS.pop("hidden_model")


@pytest.mark.parametrize("dtype, value_bytes", [("fp32", 4), ("bf16", 2)])
def test_hidden_states_weigh_what_the_profiles_dtype_says(tmp_path, dtype, value_bytes):
    """A profiled target's hidden state is its width x its capture dtype (was 2 bytes always)."""
    path = write_synthetic(tmp_path / f"{dtype}.parquet")  # 64 wide
    side = path.with_suffix(".json")
    side.write_text(json.dumps(json.loads(side.read_text()) | {"dtype": dtype}))
    kind = drafters.Kind("hidden_model", "hdraft", "a hidden-state drafter", arg="model",
                         separate_model=True, crosses="hidden")
    drafters.register(kind)
    try:
        d = hetero()
        d["target"] = {"profile": str(path)}
        plain = build_round_cost(parse_scenario(copy.deepcopy(d)), None)
        d["draft"]["kind"] = "hidden_model"
        cost = build_round_cost(parse_scenario(d), None)
        assert cost.link.hidden_bytes == 64 * value_bytes
        extra = 5 * 64 * value_bytes / catalog.get("l4").link_bw  # 5 verified tokens' hidden states
        assert cost.transfer_s(1) - plain.transfer_s(1) == pytest.approx(extra)
    finally:
        drafters.KINDS.pop("hidden_model")


def test_bare_devices_transfer_nothing():
    d = hetero()
    d["target"] = {"cost": {"step_ms": 10.0}}
    d["draft"] = {"kind": "model", "cost": {"step_ms": 1.0}}
    d["placement"]["devices"] = {"gpu": {}, "edge": {}}
    assert build_round_cost(parse_scenario(d), None).transfer_s(1) == 0.0


def test_overlap_hides_drafting_only_when_pre_drafts_survive():
    never = hetero()
    assert simulate(parse_scenario(hetero(overlap=True))).summary["sim_time_s"] == pytest.approx(
        simulate(parse_scenario(never)).summary["sim_time_s"])  # acceptance 0: nothing survives
    # a drafter faster than verification (1B on an H200): pre-drafting hides it
    good = {**hetero("h200"), "acceptance": {"iid": 0.9}}
    ovl = {**hetero("h200", overlap=True), "acceptance": {"iid": 0.9}}
    assert simulate(parse_scenario(ovl)).summary["sim_time_s"] < simulate(parse_scenario(good)).summary["sim_time_s"]
    # one slower than verification (1B on an L4): its pre-draft, one step longer than a
    # round's drafting, is the critical path, and overlap loses
    slow = {**hetero("l4"), "acceptance": {"iid": 0.9}}
    slow_ovl = {**hetero("l4", overlap=True), "acceptance": {"iid": 0.9}}
    assert simulate(parse_scenario(slow_ovl)).summary["sim_time_s"] > simulate(parse_scenario(slow)).summary["sim_time_s"]


# -- the fit to a measured profile -------------------------------------------------------------

PROFILE = ROOT / "profiles/intel-xeon/qwen2.5-coder-1.5b-bf16.parquet"


@pytest.mark.skipif(not PROFILE.exists(), reason="shipped profile missing")
def test_fit_to_shipped_profile_and_fitted_device_in_a_scenario():
    from simspec.devices.fit import fit_profile

    rep = fit_profile(PROFILE, catalog.get("xeon-amx-2c"))
    assert rep.grid_points > 300 and rep.grid_median <= 0.10
    assert rep.holdout_points >= 30 and rep.holdout_median <= 0.10
    d = {
        "target": {"model": str(PROFILE)},
        "workload": {"requests": 1, "prompt_len": 64, "output_len": 32},
        "placement": {"devices": {"cpu": {"catalog": "xeon-amx-2c", "fit": str(PROFILE)}}, "target": "cpu"},
    }
    s = simulate(parse_scenario(d)).summary
    assert s["target_estimate"] == 0.0  # fitted to a measurement
    from simspec.sim.costs import load_profile_cost

    measured = load_profile_cost(PROFILE).latency_s("decode", 1, 1, 512)
    model = build_round_cost(parse_scenario(d), None).target
    assert model.latency_s("decode", 1, 1, 512) == pytest.approx(measured, rel=0.10)
