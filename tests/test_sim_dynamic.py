"""The serving loop with a dynamic oracle (simspec.policies' contract), driven by a scripted
oracle: each round is priced at its deepest proposal (draft steps and verify queries), a round
where nobody drafts is a plain verify of one token, the accepted counts are capped at each
sequence's proposal, the proposal cap is the budget clip, and no round is jumped over."""

from __future__ import annotations

import numpy as np
import pytest

import simspec.sim.run as simrun
from simspec.config import parse_scenario
from simspec.sim.acceptance import is_dynamic

STEP, PER_TOKEN, DRAFT = 10.0, 1.0, 2.0  # ms: target step, per verify query token, draft step


class Scripted:
    """Proposes and accepts from scripts, one entry per round, recording what it was asked."""

    dynamic = True

    def __init__(self, depth, proposals, accepts):
        self.depth, self.proposals, self.accepts = depth, list(proposals), list(accepts)
        self.caps, self.drawn, self._d = [], [], None

    def bind(self, request_id):
        return request_id

    def propose(self, handles, positions, cap):
        self.caps.append(cap)
        d = np.minimum(np.asarray(self.proposals.pop(0), dtype=np.int64)[: len(handles)], cap)
        self._d = d
        return d

    def draw(self, handles, positions):
        k = np.asarray(self.accepts.pop(0), dtype=np.int64)[: len(handles)]
        self.drawn.append(k.tolist())
        return k  # may exceed the proposal: the loop must cap at it


def scenario(batch, out_len, first_round="after_prefill", clip=False):
    return parse_scenario({
        "target": {"cost": {"step_ms": STEP, "per_token_ms": PER_TOKEN}},
        "draft": {"kind": "model", "cost": {"step_ms": DRAFT}},
        "acceptance": {"iid": 0.5},
        "speculation": {"draft_len": 4, "first_round": first_round, "clip_to_budget": clip},
        "workload": {"requests": batch, "arrival": "closed", "concurrency": batch, "prompt_len": 8,
                     "output_len": out_len},
        "serving": {"max_batch": batch, "seed": 0},
    }, "dyn.toml")


def run(monkeypatch, sc, oracle, detail=False):
    monkeypatch.setattr(simrun, "build_oracle", lambda *a, **k: oracle)
    return simrun.simulate(sc, "dyn.toml", detail=detail)


def test_is_dynamic_needs_the_flag_and_propose():
    assert is_dynamic(Scripted(4, [], []))
    plain = Scripted(4, [], [])
    plain.dynamic = False
    assert not is_dynamic(plain)
    assert not is_dynamic(object())


def test_round_priced_at_the_deepest_proposal(monkeypatch):
    # two sequences: rounds propose (1, 3), (0, 0), (2, 4): priced at 3, 0 (plain verify), 4
    oracle = Scripted(4, [[1, 3], [0, 0], [2, 4], [4, 4], [4, 4]], [[1, 2], [0, 0], [3, 1], [4, 4], [4, 4]])
    res = run(monkeypatch, scenario(2, 12), oracle, detail=True)
    rounds = [it for it in res.iterations[0] if it.kind == "round"]
    ms = [round(it.seconds * 1e3, 9) for it in rounds]
    assert ms[0] == 3 * DRAFT + STEP + PER_TOKEN * 2 * (1 + 3)
    assert ms[1] == STEP + PER_TOKEN * 2 * 1   # nobody drafts: one verify token each, no draft step
    assert ms[2] == 4 * DRAFT + STEP + PER_TOKEN * 2 * (1 + 4)
    # accepted counts capped at each proposal (round 3 drew 3 for a proposal of 2), + the bonus
    assert [it.tokens for it in rounds[:3]] == [(1 + 1) + (2 + 1), 1 + 1, (2 + 1) + (1 + 1)]
    assert len(rounds) == 4 and res.records.accepted.tolist() == [1 + 0 + 2 + 4, 2 + 0 + 1 + 4]
    assert len(oracle.caps) == len(rounds)  # one proposal per round


def test_no_jumps_and_cap_is_the_budget_clip(monkeypatch):
    # one sequence of 9 tokens after the prefill's 1: with clip_to_budget the cap is left - 1
    oracle = Scripted(4, [[4]] * 10, [[4]] * 10)
    res = run(monkeypatch, scenario(1, 10, clip=True), oracle)  # jumps allowed, yet round by round
    # left after prefill: 9 -> cap 4 (5 kept), left 4 -> cap 3 (4 kept), done
    assert oracle.caps == [4, 3]
    assert res.records.tokens.tolist() == [10]
    assert res.records.rounds.tolist() == [2]


def test_with_prefill_first_round_proposes_and_prices_at_it(monkeypatch):
    oracle = Scripted(4, [[2], [0], [4], [4], [4]], [[2], [0], [4], [4], [4]])
    res = run(monkeypatch, scenario(1, 9, first_round="with_prefill"), oracle, detail=True)
    pre = res.iterations[0][0]
    assert pre.kind == "prefill"
    # the prefill carries the first round: prompt - 1 + (1 + 2) target queries, drafting 2 steps
    # (a model drafter's first step reads the prompt: a prefill of 8 tokens, then 1 decode step)
    target = STEP + PER_TOKEN * (8 - 1 + 3)
    draft = DRAFT + DRAFT
    assert round(pre.seconds * 1e3, 9) == target + draft
    assert oracle.caps[0] == 4 and oracle.drawn[0] == [2]
    assert pre.tokens == 3  # 2 accepted + the bonus
    assert res.records.tokens.tolist() == [9]


def test_a_proposal_past_the_cap_is_refused(monkeypatch):
    class Bad(Scripted):
        def propose(self, handles, positions, cap):
            return np.full(len(handles), cap + 1)

    with pytest.raises(ValueError, match="dynamic oracle proposed"):
        run(monkeypatch, scenario(1, 10), Bad(4, [], [[0]] * 10))


class TwoLayers(Scripted):
    """A MultiPass oracle: row 0 drafts at exit layer 10, row 1 at exit layer 20."""

    layers = [10, 20]

    def passes(self, proposed):
        return [(10, int(self._d[0])), (20, int(self._d[1]))]


def test_several_drafting_passes_each_priced_at_its_layer(monkeypatch):
    sc = parse_scenario({
        "target": {"cost": {"step_ms": 30.0, "per_token_ms": PER_TOKEN}, "layers": 30},
        "draft": {"kind": "early_exit", "exit_layer": 10},
        "acceptance": {"iid": 0.5},
        "speculation": {"draft_len": 4},
        "workload": {"requests": 2, "arrival": "closed", "concurrency": 2, "prompt_len": 8, "output_len": 12},
        "serving": {"max_batch": 2, "seed": 0},
    }, "dyn.toml")
    oracle = TwoLayers(4, [[2, 3], [0, 1], [4, 4], [4, 4]], [[0, 0], [0, 0], [4, 4], [4, 4]])
    res = run(monkeypatch, sc, oracle, detail=True)
    rounds = [it for it in res.iterations[0] if it.kind == "round"]
    # an early-exit step at layer l costs l / 30 of a target pass of one token per sequence
    step = 30.0 + PER_TOKEN * 2 * 1
    assert rounds[0].seconds * 1e3 == pytest.approx(2 * step * 10 / 30 + 3 * step * 20 / 30 + 30 + PER_TOKEN * 2 * 4)
    # a pass whose rows draft nothing is not run
    assert rounds[1].seconds * 1e3 == pytest.approx(1 * step * 20 / 30 + 30 + PER_TOKEN * 2 * 2)
