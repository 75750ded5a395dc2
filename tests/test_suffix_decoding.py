"""Suffix decoding: the proposer against a brute-force count of substrings and a hand-worked
example, the cache's global tree, the dynamic oracle's contract, the kind's registry entry, and
the live drafter (greedy output == plain greedy; replayed tokens per round == live ones)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simspec import drafters
from simspec.trace.suffix import SuffixCache, SuffixParams, SuffixTree, replay

ROOT = Path(__file__).resolve().parents[1]
FIX_TRACE = ROOT / "traces" / "smollm2-135m__humaneval-fix-b1-fp32.parquet"


# -- the proposer ------------------------------------------------------------------------

def brute_speculate(seqs, D, pattern, max_spec, factor, floor):
    """The same rule over counts taken by scanning every sequence (no trie)."""
    f32 = np.float32

    def count(s):
        return sum(1 for q in seqs for i in range(len(q) - len(s) + 1) if q[i:i + len(s)] == s) if len(s) <= D else 0

    best, best_score = [], f32(0)
    for m in range(1, len(pattern)):
        s = list(pattern[len(pattern) - m:])
        if count(s) == 0:
            break
        limit = max(min(max_spec, int(float(f32(m) * f32(factor)) + 1e-6)), 0)
        toks, prob, score = [], f32(1), f32(0)
        while len(toks) < limit and prob >= f32(floor):
            kids = {t: count(s + [t]) for q in seqs for t in q}
            kids = {t: c for t, c in kids.items() if c > 0}
            if not kids:
                break
            t = min(kids, key=lambda t: (-kids[t], t))
            prob = f32(prob * (f32(kids[t]) / f32(count(s))))
            if prob < f32(floor):
                break
            toks.append(t)
            score = f32(score + prob)
            s = s + [t]
        if score >= best_score:
            best, best_score = toks, score
    return best


def test_hand_worked_example():
    tree = SuffixTree(24)
    seq = [1, 2, 3, 1, 2, 3, 1, 2]
    tree.extend(0, seq)
    # m=1: [3] (2/3); m=2: [3, 1] score 4/3; m=3..5: [3, 1, 2] score 1.5 (a tie keeps the longer match)
    assert tree.speculate(seq, 8, 1.0, 0.1)[0] == [3, 1, 2]
    assert tree.speculate(seq, 8, 1.0, 0.6)[0] == [3, 1]   # 1/2 < 0.6 cuts the longer matches
    assert tree.speculate(seq, 2, 1.0, 0.1)[0] == [3, 1]   # max_spec_tokens
    assert tree.speculate(seq, 8, 0.5, 0.1)[0] == [3, 1]   # m=4,5 allow int(m/2) = 2 tokens
    assert tree.speculate(seq, 8, 0.0, 0.1)[0] == []
    assert SuffixTree(3).extend(0, seq) is None
    short = SuffixTree(3)
    short.extend(0, seq)
    assert short.speculate(seq[-3:], 8, 1.0, 0.1)[0] == [3]  # depth 3: match 2 + 1 token at most


@pytest.mark.parametrize("seed", range(6))
def test_trie_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    D = int(rng.integers(2, 7))
    seqs = [rng.integers(0, 3 + seed % 3, size=int(rng.integers(5, 30))).tolist() for _ in range(3)]
    tree = SuffixTree(D)
    for i, s in enumerate(seqs):
        tree.extend(i, s)
    for _ in range(30):
        pattern = rng.integers(0, 4, size=int(rng.integers(2, D + 2))).tolist()
        factor, floor, cap = float(rng.choice([0.5, 1.0, 2.0])), float(rng.choice([0.0, 0.1, 0.4])), int(rng.integers(1, 9))
        assert tree.speculate(pattern, cap, factor, floor)[0] == brute_speculate(seqs, D, pattern, cap, factor, floor)


def test_removal_equals_a_tree_without_the_sequence():
    rng = np.random.default_rng(3)
    seqs = [rng.integers(0, 4, size=20).tolist() for _ in range(3)]
    a, b = SuffixTree(5), SuffixTree(5)
    for i, s in enumerate(seqs):
        a.extend(i, s)
    a.remove(1)
    b.extend(0, seqs[0])
    b.extend(2, seqs[2])
    assert a.count == b.count and a.edges == b.edges and a.best == b.best


def test_global_tree_fifo_and_local_wins_ties():
    p = SuffixParams(max_tree_depth=8, max_cached_requests=1)
    cache = SuffixCache(p)
    cache.start("a", [9, 9])
    cache.add("a", [5, 6, 7, 8])
    cache.stop("a")
    cache.start("b", [1, 5])  # its own prompt knows nothing after 5; request a's output does
    assert cache.speculate("b", [1, 5], 4) == []  # a was evicted: one cached request (b itself)
    cache2 = SuffixCache(SuffixParams(max_tree_depth=8, max_cached_requests=2))
    cache2.start("a", [9, 9])
    cache2.add("a", [5, 6, 7, 8])
    cache2.stop("a")
    cache2.start("b", [1, 5])
    assert cache2.speculate("b", [1, 5], 4) == [6]  # m = 1: one token
    off = SuffixCache(SuffixParams(max_cached_requests=0))
    off.start("a", [5, 6])
    off.add("a", [5])
    assert off.speculate("a", [5, 6, 5], 4) == [6] and off.cached == {}


# -- registry, scenario keys, oracle -------------------------------------------------------

def test_kind_entry():
    k = drafters.get("suffix")
    assert k.model_free and not k.trees and k.vllm_method == "suffix" and k.replayed
    assert drafters.DraftSpec.parse("suffix").kind == "suffix"


def test_oracle_contract_and_determinism():
    from simspec.trace.schema import load_trace
    from simspec.trace.suffix_oracle import SuffixOracle, arrays

    trace = load_trace(ROOT / "traces" / "qwen2.5-coder-1.5b__humaneval-b1-fp32.parquet")
    prop, acc = arrays(trace, SuffixParams(), 6)
    assert (acc <= prop).all() and (prop <= 6).all() and acc.sum() > 0
    again = replay([(trace.seq_prompt(i), trace.seq_tokens(i)) for i in range(trace.n_seq)], SuffixParams(), 6)
    assert (again[0] == prop).all() and (again[1] == acc).all()
    o = SuffixOracle(trace, prop, acc, 6, np.random.default_rng(0))
    h = np.arange(trace.n_seq)
    for n in range(0, 100, 7):
        pos = np.full(len(h), n)
        for cap in (0, 2, 6):
            p = o.propose(h, pos, cap)
            k = o.draw(h, pos)
            assert (p <= cap).all() and (k <= p).all() and (k >= 0).all()
            base = trace.offsets[:-1] + n % trace.output_len
            assert (p == np.minimum(prop[base], cap)).all() and (k == np.minimum(acc[base], p)).all()


def test_trace_summary_has_a_suffix_row():
    """Summaries and the exports' per-position rates read its default-settings accepted counts."""
    from simspec.trace.schema import load_trace
    from simspec.trace.summary import per_position, summary_rows

    trace = load_trace(ROOT / "traces" / "qwen2.5-coder-1.5b__humaneval-b1-fp32.parquet")
    rows = {r["drafter"]: r for r in summary_rows(trace, gmax=4)}
    assert "suffix" in rows and 1.0 < rows["suffix"]["g4"] <= 5.0
    rates = per_position(trace, "suffix", 4)
    assert all(0.0 < r <= 1.0 for r in rates) and abs(rates[0] - rows["suffix"]["top1"]) < 1e-12


def _replayed_rounds(prop, acc, offsets, seqs, gamma):
    """Tokens per round of a batch-1 in-order run, by the oracle's rule (budget-clipped cap)."""
    out = []
    for s in seqs:
        a, length = int(offsets[s]), int(offsets[s + 1] - offsets[s])
        n = 0
        while n < length:
            cap = min(gamma, length - n - 1)
            p = min(int(prop[a + n]), cap)
            k = min(int(acc[a + n]), p)
            emit = min(k + 1, length - n)
            out.append(emit)
            n += emit
    return out


# -- live ------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")

from simspec.live.engine import generate, plain_greedy  # noqa: E402
from simspec.live.suffix import SuffixDrafter  # noqa: E402
from simspec.live.tree import Tree  # noqa: E402

PROMPTS = [list(range(10, 30)) * 2, [40, 41, 42, 43, 44] * 3, [1, 2, 3, 1, 2, 3, 1, 2], list(range(100, 133))]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_live_greedy_equals_plain_tiny(arch):
    from simspec.models import tiny_model

    target = tiny_model(arch, layers=4).model
    ref = [plain_greedy(target, p, 40) for p in PROMPTS]
    d = SuffixDrafter(SuffixParams(max_tree_depth=16, min_token_prob=0.0))
    got = [generate(target, [p], 40, d, Tree.chain(5)).outputs[0] for p in PROMPTS]  # one cache across requests
    assert got == ref
    res = generate(target, PROMPTS, 40, SuffixDrafter(), Tree.chain(4))  # ragged batch of 4
    assert res.outputs == ref
    assert res.stats.new_tokens / res.stats.rounds > 1.0  # it did accept drafts


def test_live_serving_lossless_with_arrivals_and_retirement():
    """Continuous batching: rows admitted mid-run and retired; outputs == plain greedy."""
    from simspec.live.kv import KV
    from simspec.live.serving import FakeClock, requests_at, serve
    from simspec.models import load_model

    target = load_model("tiny:llama:4", dtype="fp32").model
    budgets = [30, 24, 12, 30]
    ref = [plain_greedy(target, p, n) for p, n in zip(PROMPTS, budgets)]
    kv = KV(target, 0)
    d = SuffixDrafter(SuffixParams(max_tree_depth=12, max_cached_requests=2))
    res = serve(target, requests_at(PROMPTS, budgets, [0.0, 0.0, 3.0, 9.0]), d, Tree.chain(4), kv=kv,
                max_batch=2, clock=FakeClock(1.0))
    assert res.outputs == ref
    assert res.stats.tokens_per_round > 1.0
    assert d.cache.local == {} and len(d.cache.cached) == 2  # every request stopped; FIFO kept two outputs


@pytest.fixture(scope="module")
def smol():
    from simspec.models import load_model

    try:
        return load_model("smollm2-135m", dtype="fp32")
    except Exception as exc:
        pytest.skip(f"SmolLM2-135M unavailable: {exc}")


@pytest.mark.realmodel
def test_replayed_rounds_equal_live_rounds_smollm2(smol):
    """The shipped repetitive trace, sequences in order at batch 1, fp32: round by round."""
    from simspec.live.runner import run_config
    from simspec.trace.schema import load_trace
    from simspec.trace.suffix_oracle import arrays

    if not FIX_TRACE.exists():
        pytest.skip("trace not shipped")
    trace = load_trace(FIX_TRACE)
    meta = json.loads(FIX_TRACE.with_suffix(".json").read_text())
    seqs, gamma = list(range(trace.n_seq)), 6
    prompts = [trace.seq_prompt(s).tolist() for s in seqs]
    from simspec.trace.multiturn import FIX_TURN
    text = smol.tokenizer.decode(prompts[0])  # the workload: question, the model's answer, the fix turn
    assert text.count(FIX_TURN) == 1 and text.rstrip().endswith("assistant") and "def " in text
    budgets = [int(trace.output_len[s]) for s in seqs]
    rep = run_config(smol, drafters.DraftSpec.parse("suffix"), Tree.chain(gamma), prompts, budgets,
                     eos=meta["stop_ids"], check_greedy=True, warmup=False)
    assert rep.greedy_equal == [True] * len(seqs)
    assert rep.outputs == [trace.seq_tokens(s).tolist() for s in seqs]
    prop, acc = arrays(trace, SuffixParams(), gamma)
    want = _replayed_rounds(prop, acc, trace.offsets, seqs, gamma)
    assert rep.stats.per_round == want
    assert sum(want) / len(want) > 1.5  # the fix turn repeats: suffix decoding has something to find
    # the earlier requests' outputs count: without the global tree the rounds differ
    assert _replayed_rounds(*arrays(trace, SuffixParams(max_cached_requests=0), gamma), trace.offsets, seqs, gamma) != want


# -- vLLM export -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.11.0", "0.12.0", "0.21.0", "0.28.0"])
def test_vllm_suffix_export_keys_per_version(version):
    from simspec.study import export
    from simspec.study.engines import Context, versions, vllm
    from simspec.study.engines.answer import answer
    from simspec.study.schedule import Point
    from simspec.study.schema import DrafterSpec

    keys = {"suffix_decoding_max_tree_depth", "suffix_decoding_max_cached_requests",
            "suffix_decoding_max_spec_factor", "suffix_decoding_min_token_prob"}
    pts = [Point(b, "none", 0, 10.0 * b, 0.01) for b in (1, 8)] + [Point(b, "suffix", 6, 25.0 * b, 0.01) for b in (1, 8)]
    best = {"gamma": 6, "drafter": "suffix", "max_batch": 8}
    a = answer(best, pts, export.runnable("vllm", version))
    ds = DrafterSpec(acceptance={"iid": 0.5}, suffix_decoding_max_tree_depth=32, suffix_decoding_min_token_prob=0.2)
    e = vllm.build(Context(best, a, ds, [0.5] * 6, "test"), version)
    cfg = json.loads(e.files[vllm.MAIN])
    assert set(cfg) <= versions.writable("vllm", version)
    if versions.parse_version(version) < (0, 12, 0):
        assert cfg == {} and a.lacking and "'suffix'" in " ".join(e.notes)  # one clear line, no config
        assert "suffix" not in vllm.methods(version)
    else:
        assert cfg["method"] == "suffix" and cfg["num_speculative_tokens"] == 6 and keys <= set(cfg)
        assert (cfg["suffix_decoding_max_tree_depth"], cfg["suffix_decoding_max_cached_requests"],
                cfg["suffix_decoding_max_spec_factor"], cfg["suffix_decoding_min_token_prob"]) == (32, 10000, 1.0, 0.2)


def test_a_study_drafter_carries_its_suffix_keys_into_trials(tmp_path):
    from simspec.study import trial
    from simspec.study.spec import load_study

    base = (ROOT / "studies" / "humaneval_fix_plain.toml").read_text()
    base = base.replace('"traces/', f'"{ROOT}/traces/').replace('"profiles/', f'"{ROOT}/profiles/')
    (tmp_path / "base.toml").write_text(base)
    tr = f"{ROOT}/traces/smollm2-135m__humaneval-fix-b1-fp32.parquet"
    (tmp_path / "s.toml").write_text(f'''name = "s"
scenario = "base.toml"
[search]
gamma = {{ low = 0, high = 8 }}
drafter = ["suffix"]
[drafters.suffix]
acceptance = {{ trace = "{tr}", drafter = "suffix" }}
suffix_decoding_min_token_prob = 0.25
suffix_decoding_max_tree_depth = 12
[objectives]
throughput = "maximize"
''')
    sc = trial.scenario(load_study(tmp_path / "s.toml"), {"gamma": 5, "drafter": "suffix"})
    assert sc.draft.kind == "suffix" and sc.acceptance.drafter == "suffix"
    assert sc.draft.suffix_params() == SuffixParams(max_tree_depth=12, min_token_prob=0.25)
