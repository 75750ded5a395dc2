"""The policy registry and `[speculation.policy]`: names, parameters and ranges checked, each
error one line naming the key."""

from __future__ import annotations

import pytest

from simspec import policies
from simspec.config.scenario import parse_scenario
from simspec.errors import InputError
from simspec.policies import Param, Policy

BASE = dict(target={"cost": {"step_ms": 1}}, draft={"kind": "ngram"}, acceptance={"iid": 0.5},
            workload={"requests": 4, "prompt_len": 8, "output_len": 8})


@pytest.fixture
def demo():
    p = policies.register(Policy("demo_policy", "a test policy", kinds=("ngram",), params=(
        Param("ema", float, 0.0, 1.0, 0.5, "EMA weight"), Param("tiers", int, 1, 8, 4, "tiers"))))
    yield p
    del policies.POLICIES["demo_policy"]


def scenario(policy, **sections):
    d = dict(BASE, speculation={"draft_len": 4, "policy": policy}, **sections)
    return parse_scenario(d, "x.toml")


def test_values_defaults_and_given(demo):
    assert scenario({"name": "demo_policy"}).speculation.policy.values() == {"ema": 0.5, "tiers": 4}
    assert scenario({"name": "demo_policy", "tiers": 2}).speculation.policy.values() == {"ema": 0.5, "tiers": 2}


@pytest.mark.parametrize("policy, sections, line", [
    ({"name": "demo_policy", "ema": 2.0}, {}, "x.toml: speculation.policy.ema: 2.0 outside 0..1 (EMA weight)"),
    ({"name": "demo_policy", "tiers": 1.5}, {}, "x.toml: speculation.policy.tiers: 1.5 is not an integer"),
    ({"name": "demo_policy", "tiers": True}, {}, "x.toml: speculation.policy.tiers: True is not an integer"),
    ({"name": "demo_policy", "x": 1}, {}, "x.toml: speculation.policy.x: policy 'demo_policy' has no parameter 'x' (has: ema, tiers)"),
    ({"name": "nope"}, {}, "x.toml: speculation.policy.name: unknown policy 'nope'"),
    ({"name": "demo_policy"}, {"draft": {"kind": "early_exit", "exit_layer": 2}},
     "x.toml: speculation.policy.name: policy 'demo_policy' applies to [draft] kind 'ngram', not 'early_exit'"),
])
def test_bad_policy_is_one_line(demo, policy, sections, line):
    with pytest.raises(InputError) as e:
        scenario(policy, **sections)
    assert e.value.line().startswith(line)
    assert "\n" not in e.value.line()


def test_policy_needs_speculation(demo):
    d = dict(BASE, speculation={"policy": {"name": "demo_policy"}})
    with pytest.raises(InputError, match="speculation.policy: policy 'demo_policy' chooses draft shapes"):
        parse_scenario(d, "x.toml")
