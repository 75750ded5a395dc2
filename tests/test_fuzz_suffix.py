"""Fuzz: bad suffix-decoding parameters are one InputError naming the file and the key (exit 2
from the CLI); good ones simulate. Fixed seed (derandomized), a deadline per case."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import fuzzhelpers as fz
from deadline import within
from simspec.config import parse_scenario
from simspec.errors import InputError
from simspec.sim.run import simulate

FILE = "suffix.toml"
TRACE = str(Path(__file__).resolve().parents[1] / "traces" / "qwen2.5-coder-1.5b__humaneval-b1-fp32.parquet")
KEYS = ("suffix_decoding_max_tree_depth", "suffix_decoding_max_cached_requests",
        "suffix_decoding_max_spec_factor", "suffix_decoding_min_token_prob")
CASES: Counter = Counter()


def base() -> dict:
    return {
        "target": {"cost": {"step_ms": 20.0, "per_token_ms": 0.5}},
        "draft": {"kind": "suffix"},
        "acceptance": {"trace": TRACE, "drafter": "suffix", "sequences": [0, 1]},
        "speculation": {"draft_len": 4},
        "workload": {"requests": 2, "arrival": "closed", "concurrency": 1, "dataset": "trace"},
        "serving": {"max_batch": 1, "seed": 0},
    }


VALUES = st.one_of(
    st.integers(-3, 40), st.sampled_from([0, 1, 256, 257, 10**6, 10**6 + 1, 10**30]),
    st.floats(-2, 70, allow_nan=False), st.sampled_from([float("nan"), float("inf"), -0.0, 1.0000001]),
    st.booleans(), st.text(max_size=4), st.lists(st.integers(0, 3), max_size=2),
)


@st.composite
def case(draw) -> dict:
    doc = base()
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True)):
        doc["draft"][key] = draw(VALUES)
    extra = draw(st.sampled_from([None, "kind", "overlap", "tree", "column"]))
    if extra == "kind":
        doc["draft"]["kind"] = "ngram"
        doc["acceptance"]["drafter"] = "ngram"
    elif extra == "overlap":
        doc["placement"] = {"devices": {"a": {}, "b": {}}, "target": "a", "draft": "b", "overlap": True}
    elif extra == "tree":
        doc["speculation"]["tree"] = [2, 1, 1, 1]
    elif extra == "column":
        doc["acceptance"]["drafter"] = "ngram"
    return doc


@settings(derandomize=True, database=None, max_examples=120, deadline=None)
@given(case())
def test_each_case_simulates_or_is_one_input_error(doc):
    with within(20, "case"):
        try:
            simulate(parse_scenario(copy.deepcopy(doc), FILE), FILE)
            CASES["ok"] += 1
        except InputError as exc:
            fz.check_input_error(exc, [fz.REPO / FILE], keyed=True)
            if any(k in doc["draft"] for k in KEYS) and exc.key and exc.key.startswith("draft.suffix"):
                CASES["suffix key"] += 1
            CASES["input error"] += 1


def test_the_fuzz_ran_both_outcomes():
    print("fuzz cases:", dict(CASES))
    assert CASES["ok"] >= 10 and CASES["input error"] >= 30 and CASES["suffix key"] >= 20, CASES


def test_cli_bad_parameter_is_one_line_exit_2(tmp_path):
    doc = base()
    doc["draft"]["suffix_decoding_min_token_prob"] = 1.5
    f = tmp_path / "bad.toml"
    f.write_text(fz.dumps(doc))
    code, out, err = fz.run_main("simulate", str(f))
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    assert str(f) in lines[0] and "draft.suffix_decoding_min_token_prob" in lines[0]
