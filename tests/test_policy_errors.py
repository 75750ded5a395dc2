"""The dynamic policies through `simspec simulate`: bad parameters and combinations are one line
naming the file, the key and the reason (exit 2); adaptive length over synthetic acceptance is
seeded (same seed, same numbers) and drafts shorter where acceptance is low; a fixed-seed fuzz
of policy tables ends every case in success or one such error, each under a deadline."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path

import pytest

from deadline import within
from fuzzhelpers import check_input_error, dumps, run_main
from simspec import policies
from simspec.config import load_scenario, parse_scenario
from simspec.errors import InputError
from simspec.sim.run import simulate

SYNTHETIC = {
    "target": {"cost": {"step_ms": 10.0, "per_token_ms": 0.5}, "layers": 30},
    "draft": {"kind": "early_exit", "exit_layer": 10},
    "acceptance": {"iid": 0.2},
    "speculation": {"draft_len": 6, "policy": {"name": "adaptive"}},
    "workload": {"requests": 6, "arrival": "closed", "concurrency": 2, "prompt_len": 16, "output_len": 64},
    "serving": {"max_batch": 2, "seed": 3},
}


def write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(dumps(doc))
    return p


def patched(**sections) -> dict:
    d = copy.deepcopy(SYNTHETIC)
    for k, v in sections.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


@pytest.mark.parametrize("doc, key, needle", [
    (patched(speculation={"draft_len": 6, "policy": {"name": "adaptive", "ema": 0}}),
     "speculation.policy.ema", "outside 0.05..1"),
    (patched(speculation={"draft_len": 6, "policy": {"name": "adaptive", "start": 2.5}}),
     "speculation.policy.start", "is not an integer"),
    (patched(speculation={"draft_len": 6, "policy": {"name": "adaptive", "gamma": 2}}),
     "speculation.policy.gamma", "has no parameter 'gamma'"),
    (patched(speculation={"draft_len": 6, "policy": {"name": "dynamic_exit", "decay": 0.1}}),
     "speculation.policy.decay", "outside 0.5..1"),
    (patched(speculation={"draft_len": 6, "policy": {"name": "dynamic_exit"}}),
     "acceptance", "replays a trace's early-exit columns"),
    (patched(speculation={"tree": [2, 1], "policy": {"name": "adaptive"}}, acceptance={"rank_probs": [0.5, 0.2]}),
     "speculation.tree", "sizes chains"),
    (patched(draft={"kind": "model", "cost": {"step_ms": 1}}, speculation={"draft_len": 4, "policy": {"name": "dynamic_exit"}}),
     "speculation.policy.name", "applies to [draft] kind 'early_exit'"),
    (patched(speculation={"draft_len": 0, "policy": {"name": "adaptive"}}),
     "speculation.policy", "chooses draft shapes"),
    (patched(workload={"requests": 2, "dataset": "trace"}), "workload.dataset", "[acceptance] trace"),
])
def test_bad_policy_is_one_line_exit_2(tmp_path, doc, key, needle):
    path = write(tmp_path, doc)
    code, out, err = run_main("simulate", str(path))
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    assert lines[0].startswith(f"error: {path}: {key}: "), lines[0]
    assert needle in lines[0], lines[0]


def test_adaptive_on_synthetic_acceptance_is_seeded_and_drafts_shorter_when_rejected():
    base = parse_scenario(SYNTHETIC, "s.toml")
    a, b = simulate(base), simulate(base)
    assert a.summary["mean_tokens_per_round"] == b.summary["mean_tokens_per_round"]
    assert a.summary["sim_time_s"] == b.summary["sim_time_s"]
    other = simulate(base.with_(serving={"seed": 4}, file="s.toml"))
    assert other.summary["sim_time_s"] != a.summary["sim_time_s"]
    fixed = simulate(parse_scenario(patched(speculation={"draft_len": 6}), "s.toml"))
    # at 20 % acceptance six draft steps a round are mostly wasted: the EMA shortens them
    assert a.summary["sim_time_s"] < 0.8 * fixed.summary["sim_time_s"]
    high = simulate(parse_scenario(patched(acceptance={"iid": 0.95}), "s.toml"))
    assert high.summary["mean_tokens_per_round"] > 2 * a.summary["mean_tokens_per_round"]


# -- fuzz: random policy tables, fixed seed ------------------------------------------------------

VALUES = [0, 1, -1, 2, 7, 64, 65, 1025, 0.0, 0.05, 0.5, 1.0, 1.5, -0.5, 1e300, math.inf, math.nan, True,
          False, "x", "", [1], {"a": 1}]
NAMES = ["ema", "start", "margin", "tiers", "prior", "decay", "step_cost", "min_layer", "max_layer", "name",
         "bogus", "ÿ"]


def test_fuzz_policy_tables(tmp_path):
    rng = random.Random(31)
    outcomes = {"ok": 0, "error": 0}
    for case in range(120):
        policy = {"name": rng.choice(["adaptive", "adaptive", "dynamic_exit", "fixed", "nope", 3])}
        entry = policies.POLICIES.get(policy["name"])
        for _ in range(rng.randrange(0, 4)):
            if entry is not None and rng.random() < 0.6:  # a valid value of a real parameter
                p = rng.choice(entry.params)
                v = rng.uniform(p.low, p.high)
                policy[p.name] = int(round(v)) if p.kind is int else v
            else:
                policy[rng.choice(NAMES)] = rng.choice(VALUES)
        doc = patched(speculation={"draft_len": rng.choice([0, 1, 3, 6]), "policy": policy},
                      acceptance=rng.choice([{"iid": 0.6}, {"per_position": [0.9, 0.5]}]))
        if policy.get("name") == "dynamic_exit" and rng.random() < 0.5:
            doc["draft"] = {"kind": "ngram"}
        try:
            path = write(tmp_path, doc)
        except (TypeError, ValueError):  # a value TOML cannot write (nan is fine, a dict key not)
            continue
        with within(10, f"case {case}: {policy}"):
            try:
                simulate(load_scenario(path), str(path))
                outcomes["ok"] += 1
            except InputError as exc:
                check_input_error(exc, [path], keyed=True)
                outcomes["error"] += 1
    assert outcomes["ok"] >= 15 and outcomes["error"] >= 30, outcomes
