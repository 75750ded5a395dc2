"""Scenario builders shared by the simulator tests."""

from __future__ import annotations

import copy

from simspec.config import parse_scenario
from simspec.sim.run import simulate


def single_stream(alpha=0.8, gamma=5, c=0.0, tokens=200_000, step_ms=10.0, **acc) -> dict:
    """One closed-loop user, batch 1, constant costs: where the closed forms hold."""
    d = {
        "target": {"cost": {"step_ms": step_ms}},
        "draft": {"kind": "model" if gamma else "none", "cost": {"step_ms": c * step_ms}},
        "acceptance": acc or {"iid": alpha},
        "speculation": {"draft_len": gamma},
        "workload": {"requests": 1, "arrival": "closed", "concurrency": 1,
                     "prompt_len": 16, "output_len": tokens},
        "serving": {"max_batch": 1, "seed": 0},
    }
    if not gamma:
        d["draft"] = {"kind": "none"}
        d.pop("acceptance")
    return d


def run(d: dict, **patch):
    d = copy.deepcopy(d)
    for path, value in patch.items():
        node = d
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return simulate(parse_scenario(d, "test.toml"))
