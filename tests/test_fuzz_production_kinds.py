"""Fuzz the scenario keys of the eagle3 / mtp / parallel kinds: every case simulates or ends in
exactly one InputError line naming the file, a key and a reason (fixed seed, per-case deadline).

Cases start from a valid scenario of each kind (a Llama-3-8B-class target priced by the H100
roofline) and change what these kinds read: `layers`, `vocab`, `dims` (whole, partial or odd),
`cost`, `profile`, a tree, a trace, overlap, the drafter's device, a synthetic target cost
with or without `layers`; plus random mutations along the scenario schema. Workloads are tiny.
"""

from __future__ import annotations

import copy
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

import fuzzhelpers as fz
from deadline import within
from simspec.config import Scenario, parse_scenario
from simspec.errors import InputError
from simspec.sim.run import simulate

FILE = "kinds.toml"
CASES: Counter = Counter()
DIMS = {"layers": 1, "hidden": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128, "intermediate": 14336,
        "vocab": 128256, "tied": False}


def base(kind: str) -> dict:
    return {
        "target": {"model": "llama-3-8b"},
        "draft": {"kind": kind},
        "acceptance": {"per_position": [0.8, 0.6]},
        "speculation": {"draft_len": 3},
        "placement": {"devices": {"gpu": {"catalog": "h100-sxm"}, "edge": {"catalog": "l4"}}, "target": "gpu"},
        "workload": {"requests": 3, "arrival": "closed", "concurrency": 2, "prompt_len": 16, "output_len": 12},
        "serving": {"max_batch": 2, "seed": 0},
    }


SMALL_INTS = st.one_of(st.integers(-2, 70), st.sampled_from([0, 1, 2, 32, 33, 10**9]))
CHANGES = st.sampled_from([
    ("draft", "layers"), ("draft", "vocab"), ("draft", "dims"), ("draft", "dims_partial"), ("draft", "cost"),
    ("draft", "model"), ("draft", "profile"), ("speculation", "tree"), ("acceptance", "trace"),
    ("acceptance", "rank_probs"), ("placement", "draft"), ("placement", "overlap"), ("target", "cost"),
    ("target", "cost_layers"), ("speculation", "draft_len"),
])


@st.composite
def case(draw) -> dict:
    doc = base(draw(st.sampled_from(["eagle3", "mtp", "parallel"])))
    for sec, what in draw(st.lists(CHANGES, min_size=0, max_size=4)):
        if what in ("layers", "vocab", "draft_len"):
            doc[sec][what] = draw(SMALL_INTS)
        elif what == "dims":
            dims = dict(DIMS)
            dims[draw(st.sampled_from(list(DIMS)))] = draw(st.one_of(SMALL_INTS, st.booleans()))
            doc[sec]["dims"] = dims
        elif what == "dims_partial":
            doc[sec]["dims"] = {"layers": 1, "kv_heads": 8, "head_dim": 128}
        elif what == "cost":
            doc[sec]["cost"] = {"step_ms": draw(st.floats(-1, 5, allow_nan=False))}
        elif what == "model":
            doc[sec]["model"] = draw(st.sampled_from(["llama-3.2-1b", "no-such-model", ""]))
        elif what == "profile":
            doc[sec]["profile"] = draw(st.sampled_from(["missing.parquet", "profiles"]))
        elif what == "tree":
            doc[sec]["tree"] = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
        elif what == "trace":
            doc[sec] = {"trace": "t.parquet", "drafter": doc["draft"]["kind"]}
        elif what == "rank_probs":
            doc[sec] = {"rank_probs": [0.6, 0.2]}
        elif what == "draft":
            doc[sec]["draft"] = "edge"
        elif what == "overlap":
            doc[sec]["overlap"] = True
        elif what == "cost_layers":
            doc[sec] = {"cost": {"step_ms": 10.0}, **({"layers": 32} if draw(st.booleans()) else {})}
    return draw(fz.mutated(doc, fz.schema_paths(Scenario), max_mutations=2)) if draw(st.booleans()) else doc


@settings(derandomize=True, database=None, max_examples=250)
@given(case())
def test_each_case_simulates_or_is_one_input_error(doc):
    with within(10, "case"):
        try:
            sc = parse_scenario(copy.deepcopy(doc), FILE)
            if sc.workload.requests is not None and sc.workload.requests > 8:
                CASES["valid, not run"] += 1
                return
            simulate(sc, FILE)
            CASES["ok"] += 1
        except InputError as exc:
            fz.check_input_error(exc, [fz.REPO / FILE], keyed=True)
            CASES["input error"] += 1


def test_the_fuzz_ran_both_outcomes():
    """The cases above reach both ends (run after them: pytest keeps file order)."""
    print("fuzz cases:", dict(CASES))
    assert CASES["ok"] >= 20 and CASES["input error"] >= 50, CASES
