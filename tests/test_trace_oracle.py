"""Trace replay in the simulator (numpy only): chains, trees, beta, prompt lookup, lengths, errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from clihelpers import cli
from simspec.config import parse_scenario
from simspec.errors import InputError
from simspec.sim.run import simulate
from simspec.trace.ngram import lookup_accepts
from simspec.trace.oracle import TraceOracle, load_trace_oracle
from simspec.trace.schema import load_trace, write_trace
from simspec.trace.summary import replay_chain, tokens_per_round, zero_runs

ROOT = Path(__file__).resolve().parents[1]


def make_trace(path: Path, n_seq: int = 30, seed: int = 0, vocab: int = 1000) -> Path:
    """A synthetic trace: geometric ranks for drafter 'm', a trimmed 'm/k64', betas at T=1."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seq):
        t = int(rng.integers(20, 120))
        p = int(rng.integers(5, 40))
        r = np.minimum(rng.geometric(0.6, size=t) - 1, 127)
        rows.append({"seq": s, "prompt_len": p, "output_len": t,
                     "prompt_ids": rng.integers(0, 50, size=p), "tokens": rng.integers(0, 50, size=t),
                     "rank:m": r, "beta:m@1": rng.uniform(0.2, 1.0, size=t),
                     "rank:m/k64": np.where(rng.random(t) < 0.9, r, 127), "beta:m/k64@1": rng.uniform(0, 1, size=t),
                     "rank:exit3": rng.geometric(0.3, size=t) - 1, "beta:exit3@1": rng.uniform(0, 1, size=t)})
    write_trace(path, rows, ["m", "m/k64", "exit3"], [1.0], {"vocab": vocab, "target": "synthetic"})
    return path


def scenario(trace: Path, drafter: str = "m", gamma: int = 4, requests: int | None = None, **over) -> dict:
    d = {
        "target": {"cost": {"step_ms": 10.0}, "layers": 8},
        "draft": {"kind": "model", "cost": {"step_ms": 1.0}},
        "acceptance": {"trace": str(trace), "drafter": drafter},
        "speculation": {"draft_len": gamma},
        "workload": {"requests": requests or 30, "concurrency": 1, "dataset": "trace"},
        "serving": {"max_batch": 1, "seed": 0},
    }
    for k, v in over.items():
        sec, key = k.split("__")
        d.setdefault(sec, {})[key] = v
    return d


def walk(ranks: np.ndarray, lengths: np.ndarray, g: int, children=None) -> tuple[int, int]:
    """Independent reference: plain loops over the rank column, one sequence after another."""
    children = children or [1] * g
    tokens = rounds = 0
    off = 0
    for t in lengths:
        r = ranks[off:off + t]
        n = 1
        while n < t:
            k = 0
            while k < g and n + k < t and r[n + k] < children[k]:
                k += 1
            e = min(k + 1, t - n)
            n += e
            tokens += e
            rounds += 1
        off += t
    return tokens, rounds


@pytest.fixture
def trace_file(tmp_path):
    return make_trace(tmp_path / "syn.parquet")


@pytest.mark.parametrize("gamma", [1, 3, 8])
def test_batch1_simulation_reproduces_the_trace(trace_file, gamma):
    tr = load_trace(trace_file)
    res = simulate(parse_scenario(scenario(trace_file, gamma=gamma), "s.toml"))
    t, r = walk(tr.ranks["m"], tr.output_len, gamma)
    assert res.summary["mean_tokens_per_round"] == pytest.approx(t / r, rel=1e-12)
    assert tokens_per_round(tr, "m", [gamma])[gamma] == pytest.approx(t / r, rel=1e-12)
    # every traced sequence replayed once, at its own lengths
    assert sorted(res.records.output_len) == sorted(tr.output_len)


def test_tree_oracle_counts_children(trace_file):
    tr = load_trace(trace_file)
    tree = [3, 2, 1]
    res = simulate(parse_scenario(scenario(trace_file, gamma=0, speculation__tree=tree), "s.toml"))
    t, r = walk(tr.ranks["m"], tr.output_len, 3, tree)
    assert res.summary["mean_tokens_per_round"] == pytest.approx(t / r, rel=1e-12)
    chain = simulate(parse_scenario(scenario(trace_file, gamma=3), "s.toml"))
    assert res.summary["mean_tokens_per_round"] > chain.summary["mean_tokens_per_round"]


def test_batched_draw_equals_one_by_one(trace_file):
    tr = load_trace(trace_file)
    o = TraceOracle(tr, "rank", tr.ranks["m"], [2, 1, 1, 1], np.random.default_rng(0))
    h = np.array([o.bind(i) for i in range(10)])
    pos = np.array([1, 5, 9, 2, 7, 3, 300, 11, 4, 6])  # 300: past the end wraps around
    batch = o.draw(h, pos)
    single = [int(o.draw(h[i:i + 1], pos[i:i + 1])[0]) for i in range(10)]
    assert batch.tolist() == single
    assert ((batch >= 0) & (batch <= 4)).all()


def test_requests_cycle_through_shuffled_traces(trace_file):
    tr = load_trace(trace_file)
    o = TraceOracle(tr, "rank", tr.ranks["m"], [1], np.random.default_rng(5))
    seqs = o.sequence_of(np.arange(90))
    for c in range(3):
        assert sorted(seqs[30 * c:30 * c + 30]) == list(range(30))
    assert not np.array_equal(seqs[:30], seqs[30:60])
    prompt, out = o.request_lengths(90)
    assert np.array_equal(out, tr.output_len[seqs]) and np.array_equal(prompt, tr.prompt_len[seqs])
    o2 = TraceOracle(tr, "rank", tr.ranks["m"], [1], np.random.default_rng(5))
    assert np.array_equal(o2.sequence_of(np.arange(90)), seqs)  # same seed, same binding


def test_beta_replay_mean_matches_bernoulli(trace_file):
    tr = load_trace(trace_file)
    o = TraceOracle(tr, "beta", tr.betas[("m", 1.0)], [1], np.random.default_rng(0))
    h = np.repeat(np.arange(tr.n_seq), 2000)
    pos = np.tile(np.array([3]), len(h))
    k = o.draw(h, pos)
    want = tr.betas[("m", 1.0)][tr.offsets[:-1] + 3].mean()
    assert k.mean() == pytest.approx(want, abs=0.01)


def _hf_prompt_lookup(ctx: list[int], max_ngram: int, num: int) -> list[int]:
    """transformers' PromptLookupCandidateGenerator search, written out plainly."""
    n_ctx = len(ctx)
    for m in range(max_ngram, 0, -1):
        if m > n_ctx:
            continue
        tail = ctx[-m:]
        for i in range(0, n_ctx - m + 1):
            if ctx[i:i + m] == tail:
                start, end = i + m, min(i + m + num, n_ctx)
                if start < end:
                    return ctx[start:end]
    return []


@pytest.mark.parametrize("max_ngram", [1, 2, 3])
def test_prompt_lookup_matches_reference(max_ngram):
    rng = np.random.default_rng(max_ngram)
    prompt = rng.integers(0, 6, size=30)
    tokens = rng.integers(0, 6, size=60)
    got = lookup_accepts(prompt, tokens, max_ngram, max_draft=8)
    full = prompt.tolist() + tokens.tolist()
    for n in range(len(tokens)):
        prop = _hf_prompt_lookup(full[:len(prompt) + n], max_ngram, 8)
        k = 0
        while k < len(prop) and n + k < len(tokens) and prop[k] == tokens[n + k]:
            k += 1
        assert got[n] == k, n


def test_ngram_drafter_replays(trace_file):
    """The serving loop's replay of prompt lookup equals a plain walk over its accepted runs."""
    tr = load_trace(trace_file)
    sc = parse_scenario(scenario(trace_file, "ngram:2", draft__kind="ngram"), "s.toml")
    res = simulate(sc)
    tokens = rounds = 0
    for s in range(tr.n_seq):
        run = lookup_accepts(tr.seq_prompt(s), tr.seq_tokens(s), 2)
        n, t = 1, len(run)
        while n < t:
            e = min(min(int(run[n]), 4) + 1, t - n)
            n, tokens, rounds = n + e, tokens + e, rounds + 1
    assert res.summary["mean_tokens_per_round"] == pytest.approx(tokens / rounds, rel=1e-12)
    assert tokens / rounds > 1.0  # the random tokens (ids < 50) do repeat: lookup is accepted


@pytest.mark.parametrize("patch,key,text", [
    ({"acceptance__drafter": "nope"}, "acceptance.drafter", "no column for drafter 'nope'"),
    ({"draft__vocab": 8192}, "draft.vocab", "uses the full vocabulary"),
    ({"acceptance__drafter": "m/k64"}, "draft.vocab", "set draft.vocab = 64"),
    ({"acceptance__drafter": "m/k64", "draft__vocab": 128}, "draft.vocab", "trimmed to 64"),
    ({"acceptance__drafter": "m@0.7"}, "acceptance.drafter", "no beta column"),
    ({"draft__kind": "early_exit", "draft__exit_layer": 5, "acceptance__drafter": "exit3"}, "acceptance.drafter", "exits at layer 3"),
    ({"draft__kind": "early_exit", "draft__exit_layer": 3}, "acceptance.drafter", "needs an exit<l> column"),
])
def test_mismatches_are_one_clear_error(trace_file, patch, key, text):
    d = scenario(trace_file)
    for k, v in patch.items():
        sec, kk = k.split("__")
        d[sec][kk] = v
    if d["draft"]["kind"] == "early_exit":
        d["draft"].pop("cost")
    with pytest.raises(InputError) as err:
        simulate(parse_scenario(d, "s.toml"), "s.toml")
    assert err.value.key == key and text in err.value.reason, err.value.line()


def test_matching_vocab_and_exit_layer_are_accepted(trace_file):
    """Each accepted pairing replays its own column: tokens per round equal a walk over it."""
    tr = load_trace(trace_file)
    ee = scenario(trace_file, "exit3")
    ee["draft"] = {"kind": "early_exit", "exit_layer": 3}
    cases = [(scenario(trace_file, "m/k64", draft__vocab=64), "m/k64"),
             (scenario(trace_file, "m", draft__vocab=1000), "m"),  # = the trace's full vocabulary
             (ee, "exit3")]
    for sc, col in cases:
        res = simulate(parse_scenario(sc, "s.toml"))
        t, r = walk(tr.ranks[col], tr.output_len, 4)
        assert res.summary["mean_tokens_per_round"] == pytest.approx(t / r, rel=1e-12), col


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return cli(*args, cwd=cwd)  # in this process: tests/clihelpers.py says why


def _toml(d: dict) -> str:
    lines = []
    for sec, body in d.items():
        lines.append(f"[{sec}]")
        for k, v in body.items():
            if isinstance(v, dict):
                v = "{ " + ", ".join(f"{a} = {b!r}" for a, b in v.items()) + " }"
            elif isinstance(v, str):
                v = f'"{v}"'
            lines.append(f"{k} = {v}")
    return "\n".join(lines).replace("'", '"') + "\n"


def test_cli_malformed_trace_exit_2(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad_schema = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"seq": [0, 1], "tokens": [1, 2]}), bad_schema)
    not_parquet = tmp_path / "junk.parquet"
    not_parquet.write_text("hello")
    wrong_len = tmp_path / "len.parquet"
    make_trace(wrong_len, n_seq=3)
    t = pq.read_table(wrong_len)
    t = t.set_column(t.column_names.index("output_len"), "output_len", pa.array([5, 5, 5], pa.int32()))
    pq.write_table(t, wrong_len)
    good = make_trace(tmp_path / "good.parquet")
    cases = [
        (bad_schema, "m", "required column is missing"),
        (not_parquet, "m", "not a readable Parquet file"),
        (wrong_len, "m", "entries, expected 5"),
        (tmp_path / "absent.parquet", "m", "trace file not found"),
        (good, "other", "no column for drafter 'other'"),
    ]
    for path, drafter, text in cases:
        f = tmp_path / "s.toml"
        f.write_text(_toml(scenario(path, drafter)))
        p = _cli(["simulate", str(f)], tmp_path)
        assert p.returncode == 2, (path, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and text in p.stderr, p.stderr
    p = _cli(["trace", "--summary", str(bad_schema)], tmp_path)
    assert p.returncode == 2 and "required column is missing" in p.stderr


def test_summary_cli(tmp_path):
    f = make_trace(tmp_path / "s.parquet")
    p = _cli(["trace", "--summary", str(f)], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "g=8" in p.stdout and "exit3" in p.stdout


def test_zero_runs_and_walk_agree():
    ranks = np.array([0, 0, 1, 0, 0, 0, 2, 0, 0], dtype=np.int16)
    offsets = np.array([0, 4, 9])
    assert zero_runs(ranks, offsets).tolist() == [2, 1, 0, 1, 2, 1, 0, 2, 1]
    for g in range(1, 5):
        assert replay_chain(zero_runs(ranks, offsets), offsets, g) == walk(ranks, np.array([4, 5]), g)


def test_chain_gather_equals_window(trace_file):
    tr = load_trace(trace_file)
    fast = TraceOracle(tr, "rank", tr.ranks["m"], [1] * 5, np.random.default_rng(0))
    slow = TraceOracle(tr, "rank", tr.ranks["m"], [1] * 5, np.random.default_rng(0))
    slow._runs = None  # force the windowed path
    rng = np.random.default_rng(1)
    h = rng.integers(0, tr.n_seq, size=5000)
    pos = rng.integers(0, 400, size=5000)
    assert np.array_equal(fast.draw(h, pos), slow.draw(h, pos))


def test_trace_prompt_chars_span_errors(tmp_path):
    """--prompt-chars must be LO-HI: one line naming the option, exit 2, nothing written."""
    for bad in ("2000", "9-3", "a-b", "-5"):
        p = _cli(["trace", "--target", "tiny:llama:2", "--prompt-chars", bad, "--out", str(tmp_path / "x.parquet")],
                 tmp_path)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (bad, p.stderr)
        assert "--prompt-chars" in p.stderr and "LO-HI" in p.stderr, p.stderr
    assert not list(tmp_path.glob("x.*"))


@pytest.mark.parametrize("max_batch,first_round", [(1, "after_prefill"), (1, "with_prefill"), (4, "after_prefill")])
def test_ngram_round_verifies_only_what_lookup_found(trace_file, max_batch, first_round, monkeypatch):
    """A live engine verifies up to the batch's deepest proposal, so a round whose lookup finds
    d < gamma tokens (0: no match) costs a verify of 1 + d query tokens. With a cost linear in
    query tokens the simulated verify seconds equal a brute-force walk at batch 1, and at
    batch 4 lie between pricing every round at one token and at the full gamma + 1."""
    from simspec.trace.ngram import lookup_proposed

    g, step, per_tok = 4, 10.0, 3.0
    tr = load_trace(trace_file)
    d = scenario(trace_file, "ngram:2", gamma=g, draft__kind="ngram",
                 target__cost={"step_ms": step, "per_token_ms": per_tok})
    d["draft"].pop("cost")
    d["serving"]["max_batch"] = max_batch
    d["speculation"]["first_round"] = first_round
    d["workload"]["concurrency"] = max_batch
    res = simulate(parse_scenario(d, "s.toml"))
    verify = res.summary["phase_verify_s"]
    if max_batch > 1:  # against the same run with every round priced at the full gamma
        monkeypatch.setattr(TraceOracle, "drafts_short", property(lambda self: False))
        full = simulate(parse_scenario(d, "s.toml"))
        assert res.summary["mean_tokens_per_round"] == full.summary["mean_tokens_per_round"]
        assert res.summary["phase_prefill_s"] == full.summary["phase_prefill_s"]
        assert 0 < verify < full.summary["phase_verify_s"]
        return
    want_ms = 0.0
    for s in range(tr.n_seq):
        run = lookup_accepts(tr.seq_prompt(s), tr.seq_tokens(s), 2)
        found = lookup_proposed(tr.seq_prompt(s), tr.seq_tokens(s), 2)
        n, t = 1, len(run)
        if first_round == "with_prefill":  # the prefill carries round 1: only its first k count
            n = min(min(int(run[0]), g) + 1, t)
        while n < t:
            want_ms += step + per_tok * (1 + min(int(found[n]), g))
            n += min(min(int(run[n]), g) + 1, t - n)
    assert verify == pytest.approx(want_ms / 1000, rel=1e-9)
    assert (found < g).any()
