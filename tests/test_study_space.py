"""The search space: conditional knobs the Optuna way, knob values -> valid scenarios."""

from __future__ import annotations

import optuna
import pytest

from simspec.study import space, trial
from simspec.study.evaluate import Evaluator
from simspec.study.spec import load_study
from studyhelpers import small_study


@pytest.fixture
def spec(tmp_path):
    return load_study(small_study(tmp_path))


def _suggest(spec, params):
    return space.suggest(optuna.trial.FixedTrial(params), spec)


def test_gamma_zero_has_no_drafter_knobs(spec):
    assert _suggest(spec, {"gamma": 0, "max_batch": 4}) == {"gamma": 0, "max_batch": 4}
    sc = trial.scenario(spec, {"gamma": 0, "max_batch": 4})
    assert sc.gamma == 0 and sc.draft.kind == "none" and sc.serving.max_batch == 4


def test_exit_layer_only_for_early_exit_and_vocab_only_with_a_head(spec):
    p = _suggest(spec, {"gamma": 3, "drafter": "early_exit", "exit_layer": 12, "vocab": 4096, "max_batch": 2})
    assert p == {"gamma": 3, "drafter": "early_exit", "exit_layer": 12, "max_batch": 2}  # no vocab_size given
    p = _suggest(spec, {"gamma": 3, "drafter": "ngram", "exit_layer": 12, "vocab": 4096, "max_batch": 2})
    assert p == {"gamma": 3, "drafter": "ngram", "max_batch": 2}
    p = _suggest(spec, {"gamma": 2, "drafter": "model", "vocab": 4096, "max_batch": 8})
    assert p == {"gamma": 2, "drafter": "model", "vocab": 4096, "max_batch": 8}


def test_early_exit_acceptance_and_cost_follow_the_layer(spec):
    lo = trial.scenario(spec, {"gamma": 2, "drafter": "early_exit", "exit_layer": 4})
    hi = trial.scenario(spec, {"gamma": 2, "drafter": "early_exit", "exit_layer": 20})
    assert lo.acceptance.iid == pytest.approx(0.1) and hi.acceptance.iid == pytest.approx(0.75)
    mid = trial.scenario(spec, {"gamma": 2, "drafter": "early_exit", "exit_layer": 8})
    assert mid.acceptance.iid == pytest.approx(0.25)  # linear between (4, .1) and (12, .4)
    assert (lo.draft.exit_layer, hi.draft.exit_layer) == (4, 20)


def test_trimmed_vocab_cheaper_head_lower_acceptance(spec):
    full = trial.scenario(spec, {"gamma": 2, "drafter": "model", "vocab": 131072})
    trim = trial.scenario(spec, {"gamma": 2, "drafter": "model", "vocab": 4096})
    assert full.draft.cost.step_ms == pytest.approx(4.0)
    assert trim.draft.cost.step_ms == pytest.approx(4.0 - 1.5 * (1 - 4096 / 131072))
    assert trim.acceptance.per_position == pytest.approx([0.8 * 0.85, 0.7 * 0.85, 0.65 * 0.85])
    assert trim.draft.vocab == 4096


def test_tree_knob_is_named_by_depth(tmp_path):
    p = small_study(tmp_path)
    text = p.read_text().replace("[search]", '[search]\ntree = ["2,1", "4,2,1", "3,1"]')
    text = text.replace('acceptance = { per_position = [0.8, 0.7, 0.65] }', 'acceptance = { rank_probs = [0.7, 0.1, 0.05, 0.03] }')
    text = text.replace('acceptance_by_layer = [[4, 0.1], [12, 0.4], [20, 0.75]]', 'acceptance = { rank_probs = [0.4, 0.1] }')
    text = text.replace('acceptance = { iid = 0.3 }', 'acceptance = { rank_probs = [0.3, 0.05] }')
    p.write_text(text)
    spec = load_study(p)
    got = _suggest(spec, {"gamma": 2, "drafter": "model", "vocab": 4096, "tree_d2": "3,1", "max_batch": 1})
    assert got["tree"] == "3,1"
    sc = trial.scenario(spec, got)
    assert sc.speculation.tree == [3, 1] and sc.gamma == 2
    # depth 1 has no shapes: no tree knob at all
    assert "tree" not in _suggest(spec, {"gamma": 1, "drafter": "ngram", "max_batch": 1})
    assert space.to_optuna_params(got)["tree_d2"] == "3,1"


def test_grid_enumerates_the_conditional_space(spec):
    pts = space.grid(spec)
    # gamma 0: 4 batches; gamma 1..6 x (model: 3 vocabs + early exit: 5 layers + ngram: 1) x 4 batches
    assert len(pts) == 4 + 6 * (3 + 5 + 1) * 4
    assert len({tuple(sorted(p.items())) for p in pts}) == len(pts)
    ev = Evaluator(spec)
    for p in pts[::37]:
        ev.scenario(p)  # every point is a valid scenario


def test_placement_and_dtype_variants(tmp_path):
    p = small_study(tmp_path)
    text = p.read_text().replace("[search]", '[search]\nplacement = ["one", "split"]\ndtype = ["bf16", "fp32"]')
    text += """
[variants.placement.one]
placement = { devices = { dev0 = { price_per_hour = 1.0 } }, target = "dev0" }
[variants.placement.split]
placement = { devices = { dev0 = { price_per_hour = 1.0 }, dev1 = { price_per_hour = 0.5 } }, target = "dev0", draft = "dev1", overlap = true }
[variants.dtype.bf16]
target = { cost = { step_ms = 20.0, per_token_ms = 0.05 } }
[variants.dtype.fp32]
target = { cost = { step_ms = 28.0, per_token_ms = 0.4 } }
draft = { cost = { step_ms = 6.0 } }
"""
    p.write_text(text)
    spec = load_study(p)
    q = _suggest(spec, {"gamma": 3, "drafter": "model", "vocab": 131072, "max_batch": 2,
                        "placement": "split", "dtype": "fp32"})
    sc = trial.scenario(spec, q)
    assert sc.placement.draft == "dev1" and sc.placement.overlap
    assert sc.target.cost.step_ms == 28.0 and sc.draft.cost.step_ms == 6.0
    assert sc.target.cost.per_seq_ms == 0.5  # a variant patches the base's cost table, key by key
    # an n-gram drafter takes no draft patch; early exit stays on the target's device -> invalid, said so
    ng = trial.scenario(spec, {"gamma": 2, "drafter": "ngram", "placement": "one", "dtype": "fp32"})
    assert ng.draft.cost is None
    with pytest.raises(Exception, match="early-exit drafter"):
        Evaluator(spec).scenario({"gamma": 2, "drafter": "early_exit", "exit_layer": 8, "placement": "split"})


def test_dtype_variant_profiles_must_exist(tmp_path):
    from simspec.errors import InputError

    p = small_study(tmp_path)
    text = p.read_text().replace("[search]", '[search]\ndtype = ["bf16", "fp32"]')
    text += '\n[variants.dtype.bf16]\ntarget = { profile = "p_bf16.parquet" }\n[variants.dtype.fp32]\ntarget = { profile = "p_fp32.parquet" }\n'
    p.write_text(text)
    with pytest.raises(InputError) as ei:
        load_study(p)
    assert ei.value.key == "variants.dtype.bf16.target.profile" and "profile not found" in ei.value.reason
