"""EAGLE-3 heads, MTP layers and parallel (one-pass block) drafters, simulated from dims.

A head prices as its decoder layers of the target's cost model (+ its LM head: the draft
vocabulary's rows for EAGLE-3, the target's own for MTP) or as its own dims; a parallel
drafter's round is ONE forward of gamma query tokens. Each price is recomputed here with
the roofline itself, not read back from the simulator. None of these kinds can be traced or
run live here: asking for that is one line naming file (or flag), key and reason, exit 2.
"""

from __future__ import annotations

import copy

import pytest

from clihelpers import cli
from simspec.config import parse_scenario
from simspec.devices import arch, catalog
from simspec.devices.roofline import RooflineCost
from simspec.errors import InputError
from simspec.sim.build import build_round_cost, kv_capacity
from simspec.sim.run import simulate

CTX = 512  # a context the round cost buckets to itself (a multiple of 32)
HEAD_DIMS = {"layers": 2, "hidden": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128,
             "intermediate": 14336, "vocab": 128256, "tied": False}


def scenario(kind: str, gamma: int = 3, **draft) -> dict:
    """A Llama-3-8B-class target on an H100, priced by the roofline from its dims alone."""
    return {
        "target": {"model": "llama-3-8b"},
        "draft": {"kind": kind, **draft},
        "acceptance": {"per_position": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2][:max(gamma, 1)]},
        "speculation": {"draft_len": gamma},
        "placement": {"devices": {"gpu": {"catalog": "h100-sxm"}}, "target": "gpu"},
        "workload": {"requests": 8, "arrival": "closed", "concurrency": 4, "prompt_len": 64, "output_len": 48},
        "serving": {"max_batch": 4, "seed": 0},
    }


def roofline(dims: arch.ArchDims | None = None) -> RooflineCost:
    """The H100's roofline of Llama-3-8B (or of `dims`), built here, not by the simulator."""
    return RooflineCost(dims or arch.resolve("llama-3-8b"), catalog.get("h100-sxm"), "bf16")


def round_cost(d: dict):
    return build_round_cost(parse_scenario(d, "s.toml"), "s.toml")


# -- cost per round, against the roofline --------------------------------------------------

@pytest.mark.parametrize("batch", [1, 8, 64])
@pytest.mark.parametrize("gamma", [1, 4])
def test_mtp_step_is_one_forward_of_one_target_layer_and_its_head(batch, gamma):
    one = roofline().latency_s("decode", batch, 1, CTX, layers=1)  # the target's full LM head
    assert round_cost(scenario("mtp", gamma)).draft_s(batch, CTX) == pytest.approx(gamma * one, rel=1e-12)
    if gamma == 1:  # the round is exactly one forward
        assert round_cost(scenario("mtp", 1)).draft_s(batch, CTX) == one


@pytest.mark.parametrize("batch", [1, 16])
def test_eagle3_head_prices_its_layer_and_its_draft_vocabulary(batch):
    rc = round_cost(scenario("eagle3", 4, vocab=32000))
    step = roofline().latency_s("decode", batch, 1, CTX, layers=1, head_rows=32000)
    assert rc.draft_s(batch, CTX) == pytest.approx(4 * step, rel=1e-12)
    full = round_cost(scenario("eagle3", 4))  # no `vocab`: the target's 128256 rows
    assert full.draft_s(batch, CTX) > rc.draft_s(batch, CTX)


@pytest.mark.parametrize("batch", [1, 8, 64])
@pytest.mark.parametrize("gamma", [2, 4, 8])
def test_parallel_round_is_one_forward_of_gamma_queries(batch, gamma):
    rc = round_cost(scenario("parallel", gamma))
    assert rc.level_queries == [gamma] and rc.verify_queries == gamma + 1
    one = roofline().latency_s("decode", batch, gamma, CTX, layers=1)
    assert rc.draft_s(batch, CTX) == one
    # not gamma sequential steps: far below what a chain of the same layer costs
    chain = round_cost(scenario("mtp", gamma)).draft_s(batch, CTX)
    assert rc.draft_s(batch, CTX) < chain / (gamma / 2)


def test_parallel_draft_cost_does_not_grow_like_gamma():
    costs = {g: round_cost(scenario("parallel", g)).draft_s(8, CTX) for g in (1, 2, 4, 8)}
    assert costs[8] < 1.5 * costs[1]  # memory-bound: 8 queries cost about what 1 does
    assert costs[1] <= costs[2] <= costs[4] <= costs[8]


def test_parallel_with_its_own_dims_is_one_forward_of_those():
    rc = round_cost(scenario("parallel", 6, dims=HEAD_DIMS))
    own = roofline(arch.ArchDims(**HEAD_DIMS))
    for batch in (1, 32):
        assert rc.draft_s(batch, CTX) == own.latency_s("decode", batch, 6, CTX)
    # five layers of the target's dims (DFlash-sized) cost more than one, still one forward
    five = round_cost(scenario("parallel", 6, layers=5))
    assert five.draft_s(4, CTX) == roofline().latency_s("decode", 4, 6, CTX, layers=5)


def test_head_on_a_profiled_target_prices_its_layers_of_the_profile(tmp_path):
    from profhelpers import write_synthetic
    from simspec.sim.costs import load_profile_cost

    path = write_synthetic(tmp_path / "t.parquet")
    d = scenario("mtp", 2)
    d["target"] = {"profile": str(path)}
    prof = load_profile_cost(path)
    assert round_cost(d).draft_s(4, CTX) == pytest.approx(2 * prof.latency_s("decode", 4, 1, CTX, layers=1))


def test_synthetic_target_cost_scales_by_layers():
    d = scenario("eagle3", 2)
    d["target"] = {"cost": {"step_ms": 32.0}, "layers": 32}
    assert round_cost(d).draft_s(1, CTX) == pytest.approx(2 * 1.0e-3)


def test_simulation_runs_and_tokens_per_round_follow_per_position_acceptance():
    for kind in ("eagle3", "mtp", "parallel"):
        s = simulate(parse_scenario(scenario(kind, 3), "s.toml"), "s.toml").summary
        # E[accepted] for 0.9, 0.8, 0.7: 0.9 + 0.72 + 0.504 = 2.124 (+1 bonus), within noise
        assert 2.6 < s["mean_tokens_per_round"] < 3.6, kind
        assert s["phase_draft_s"] > 0 and s["throughput_tok_s"] > 0


def test_a_head_takes_room_from_the_kv_cache():
    plain = parse_scenario(scenario("ngram", 3), "s.toml")
    head = parse_scenario(scenario("eagle3", 3), "s.toml")
    a = kv_capacity(plain, build_round_cost(plain, "s.toml"), "s.toml")
    b = kv_capacity(head, build_round_cost(head, "s.toml"), "s.toml")
    layer_share = roofline().weights_bytes / 32  # one of the target's 32 layers' share
    per_token = roofline().kv_bytes_per_token
    assert a - b == pytest.approx(layer_share / per_token, abs=1)


# -- what cannot be asked of them ----------------------------------------------------------

@pytest.mark.parametrize("change, key, words", [
    ({"acceptance": {"trace": "t.parquet", "drafter": "eagle3"}}, "acceptance.trace", "no trace column"),
    ({"speculation": {"tree": [2, 1]}, "draft": {"kind": "mtp"},
      "acceptance": {"rank_probs": [0.6, 0.2]}}, "speculation.tree", "chains only"),
    ({"draft": {"kind": "parallel", "layers": 2, "dims": HEAD_DIMS}}, "draft", "`layers`"),
    ({"draft": {"kind": "ngram", "layers": 2}}, "draft", "`layers`"),
    ({"draft": {"kind": "mtp", "vocab": 32000}}, "draft", "runs the target's"),
    ({"draft": {"kind": "eagle3", "dims": {"layers": 1, "kv_heads": 8, "head_dim": 128}}}, "draft", "hidden, heads"),
    ({"placement": {"devices": {"gpu": {"catalog": "h100-sxm"}, "b": {"catalog": "l4"}},
                    "target": "gpu", "draft": "b"}}, "placement.draft", "target's device"),
    ({"placement": {"devices": {"gpu": {"catalog": "h100-sxm"}, "b": {"catalog": "l4"}},
                    "target": "gpu", "draft": "b", "overlap": True}, "draft": {"kind": "eagle3", "dims": HEAD_DIMS}},
     "placement.overlap", "hidden states"),
    ({"target": {"cost": {"step_ms": 10.0}}}, "target.layers", "target.layers"),
])
def test_scenario_refusals_name_the_key(change, key, words):
    d = scenario("eagle3", 2)
    for sec, v in change.items():
        d[sec] = v
    with pytest.raises(InputError) as e:
        parse_scenario(copy.deepcopy(d), "s.toml")
    assert e.value.file == "s.toml" and e.value.key == key and words in e.value.reason


def test_head_deeper_than_its_target_is_refused():
    d = scenario("mtp", 2, layers=40)
    with pytest.raises(InputError) as e:
        round_cost(d)
    assert e.value.key == "draft.layers" and "32 layers" in e.value.reason


def test_trace_replay_of_an_untraceable_kind_is_one_line_exit_2(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[target]\nmodel = "llama-3-8b"\n[draft]\nkind = "eagle3"\n[acceptance]\ntrace = "t.parquet"\n'
                 'drafter = "eagle3"\n[speculation]\ndraft_len = 2\n[placement.devices.gpu]\ncatalog = "h100-sxm"\n'
                 '[placement]\ntarget = "gpu"\n[workload]\nprompt_len = 8\noutput_len = 8\n')
    r = cli("simulate", str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and str(p) in line and "acceptance.trace" in line and "no trace column" in line


@pytest.mark.parametrize("kind", ["eagle3", "mtp", "parallel"])
def test_live_run_of_these_kinds_is_one_line_exit_2(kind):
    r = cli("run", "--target", "tiny:llama", "--draft", kind)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and "--draft" in line and "no live drafter" in line


def test_validation_plan_with_such_a_kind_is_one_line_exit_2(tmp_path):
    p = tmp_path / "plan.toml"
    p.write_text('name = "x"\ntarget = "qwen2.5-coder-1.5b"\ntrace = "t.parquet"\n'
                 '[[config]]\ndtype = "bf16"\ndraft = "parallel"\ngamma = 4\n')
    r = cli("validate", str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and str(p) in line and "config[0]" in line and "no live drafter" in line


def test_study_drafter_of_an_untraceable_kind_with_a_trace_is_refused(tmp_path):
    from simspec.study.spec import load_study

    (tmp_path / "s.toml").write_text('[target]\nmodel = "llama-3-8b"\n[placement.devices.gpu]\ncatalog = "h100-sxm"\n'
                                     '[placement]\ntarget = "gpu"\n[workload]\nprompt_len = 8\noutput_len = 8\n')
    study = tmp_path / "study.toml"
    study.write_text('scenario = "s.toml"\ntrials = 2\n[search]\ngamma = [0, 2]\ndrafter = ["mtp"]\n'
                     '[drafters.mtp]\nacceptance = { trace = "t.parquet", drafter = "mtp" }\n')
    with pytest.raises(InputError) as e:
        load_study(study)
    assert e.value.key == "drafters.mtp.acceptance.trace" and "no trace column" in e.value.reason
