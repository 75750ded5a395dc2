"""A new drafter kind is one table entry + its live drafter + its replay rule, and nothing else.

The toy kind below ("repeat": propose the last token again, gamma times) is defined entirely in
this file — no simspec module names it — and yet scenario files, trace replay, the simulator,
the study's search space, validation plans and the live engine all take it, and the live
engine's tokens per round equal the simulator's replay of the same traced sequences exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simspec import drafters

SIMSPEC = Path(__file__).resolve().parents[1] / "simspec"


# -- the three things a kind needs ------------------------------------------------------

def repeat_accepts(prompt: np.ndarray, tokens: np.ndarray, n: int) -> np.ndarray:
    """Replay rule: at generated position i the drafter proposes ctx[-1] again and again; the
    greedy verifier accepts the leading run of tokens[i:] equal to it."""
    ctx = np.concatenate([np.asarray(prompt), np.asarray(tokens)])
    p = len(prompt)
    out = np.zeros(len(tokens), dtype=np.int16)
    for i in range(len(tokens)):
        last = ctx[p + i - 1]
        k = 0
        while i + k < len(tokens) and tokens[i + k] == last:
            k += 1
        out[i] = k
    return out


def make_repeat_drafter(target, spec, kv, draft, rows):
    from simspec.live.drafters import Draft, Drafter

    class RepeatDrafter(Drafter):
        name = "repeat"

        def draft(self, seqs, pending, tree, mode):
            g = tree.max_depth
            return Draft([[t] * (g + 1) for t in pending], [[True] * (g + 1) for _ in pending])

    return RepeatDrafter()


REPEAT = drafters.Kind("repeat", "repeat", "last-token repetition", model_free=True, trees=False,
                       live=make_repeat_drafter, replay=repeat_accepts)


@pytest.fixture
def repeat_kind():
    drafters.register(REPEAT)
    yield REPEAT
    drafters.KINDS.pop("repeat")


# -- the rest of simspec takes it unchanged ----------------------------------------------

def test_no_simspec_module_names_the_toy_kind():
    assert not [p for p in SIMSPEC.rglob("*.py") if "repeat_accepts" in p.read_text() or '"repeat"' in p.read_text()]


def test_unregistered_kind_is_refused_with_the_known_ones():
    from simspec.config import parse_scenario
    from simspec.errors import InputError

    with pytest.raises(InputError) as e:
        parse_scenario({"target": {"cost": {"step_ms": 1}}, "draft": {"kind": "repeat"},
                        "workload": {"prompt_len": 4, "output_len": 4}}, "s.toml")
    assert e.value.key == "draft.kind" and "'none', 'model', 'early_exit', 'ngram', 'suffix', 'eagle3', 'mtp' or 'parallel'" in e.value.reason


def test_spec_string_and_scenario(repeat_kind):
    from simspec.config import parse_scenario

    assert str(drafters.DraftSpec.parse("repeat")) == "repeat"
    sc = parse_scenario({"target": {"cost": {"step_ms": 10}}, "draft": {"kind": "repeat"},
                         "acceptance": {"iid": 0.5}, "speculation": {"draft_len": 3},
                         "workload": {"requests": 20, "prompt_len": 8, "output_len": 64}}, "s.toml")
    from simspec.sim.run import simulate

    s = simulate(sc).summary
    # model-free: drafting costs nothing, so a round costs one 10 ms verify pass
    assert s["phase_draft_s"] == 0.0
    assert s["mean_tokens_per_round"] > 1.0


def test_study_searches_it(repeat_kind, tmp_path):
    from simspec.study.space import grid
    from simspec.study.spec import load_study

    p = tmp_path / "s.toml"
    p.write_text("""
name = "toy"
trials = 4
[scenario.target]
cost = { step_ms = 10.0 }
[scenario.workload]
requests = 8
prompt_len = 16
output_len = 32
[search]
gamma = [0, 2, 4]
drafter = ["repeat", "ngram"]
[drafters.repeat]
acceptance = { iid = 0.4 }
[drafters.ngram]
acceptance = { iid = 0.3 }
""")
    spec = load_study(p)
    kinds = {pt.get("drafter") for pt in grid(spec)}
    assert kinds == {None, "repeat", "ngram"}


def test_live_run_is_lossless_and_matches_replay_exactly(repeat_kind, tmp_path):
    pytest.importorskip("torch")
    from tracehelpers import capture_tiny

    from simspec.live.runner import run_config
    from simspec.live.tree import Tree
    from simspec.models import load_model
    from simspec.sim.run import simulate
    from simspec.trace.schema import load_trace
    from simspec.validation.plan import LiveConfig
    from simspec.validation.scenarios import trace_column

    texts = ["aaaa bbbb aaaa", "hello hello hello hello", "1 1 1 1 1 2 2 2 2", "xxxxxxxxxxxxxxxx"]
    capture_tiny(tmp_path, texts, target="tiny:llama:4", prompts=4, max_new_tokens=24, drafters=[],
                 exit_layers=[], vocabs=[None], temperatures=[], batch=2, dtype="fp32")
    trace = load_trace(tmp_path / "tiny.parquet")
    cfg = LiveConfig(dtype="fp32", draft="repeat", gamma=3)
    assert cfg.label() == "fp32 repeat g3" and trace_column(cfg) == "repeat"

    tgt = load_model("tiny:llama:4", dtype="fp32")
    prompts = [trace.seq_prompt(i).tolist() for i in range(4)]
    report = run_config(tgt, cfg.spec, Tree.chain(3), prompts, 24, batch=1, eos=trace.meta.get("stop_ids") or None,
                        check_greedy=True, warmup=False)
    assert all(report.greedy_equal)
    assert report.outputs == [trace.seq_tokens(i).tolist()[:24] for i in range(4)]

    from simspec.config import parse_scenario

    sc = parse_scenario({
        "target": {"cost": {"step_ms": 10.0}}, "draft": {"kind": "repeat"},
        "acceptance": {"trace": str(tmp_path / "tiny.parquet"), "drafter": "repeat", "sequences": [0, 1, 2, 3]},
        "speculation": {"draft_len": 3, "first_round": "with_prefill", "clip_to_budget": True},
        "workload": {"requests": 4, "arrival": "closed", "concurrency": 1, "dataset": "trace", "max_output_len": 24},
    }, "s.toml")
    predicted = simulate(sc).summary["mean_tokens_per_round"]
    assert report.stats.tokens_per_round == pytest.approx(predicted, rel=1e-12)
    assert predicted > 1.0  # the toy drafter is accepted at all on these prompts
