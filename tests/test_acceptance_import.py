"""`simspec acceptance import` (issue 32, item 3): vLLM counters, SGLang accept lengths and a
paper's list -> simspec's per-position model, checked against closed forms; a scenario or a
study drafter using the file simulates exactly as the same list written inline; every bad
file is one line naming the file, the line (or key) and the reason, exit 2."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from clihelpers import cli
from simspec import limits
from simspec.errors import InputError
from simspec.imported import import_file
from simspec.imported.record import from_counts, load_rates
from simspec.sim.acceptance import chain_survival

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "vllm-eagle3-sample.prom"
SHIPPED = REPO / "traces" / "imported"

# the fixture's counters, summed over its two engines
DRAFTS = 12000 + 10000
REACHED = [9600 + 8050, 7440 + 6180, 5640 + 4720, 4200 + 3490]
ACCEPTED = 26880 + 22440

HEAD = """# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
"""


def prom(drafts=100, tokens=300, accepted=None, per_pos=(80, 50, 20), labels='model_name="m",engine="0"',
         extra="") -> str:
    accepted = sum(per_pos) if accepted is None else accepted
    lines = [HEAD, f"vllm:spec_decode_num_drafts_total{{{labels}}} {drafts}\n",
             f"vllm:spec_decode_num_draft_tokens_total{{{labels}}} {tokens}\n",
             f"vllm:spec_decode_num_accepted_tokens_total{{{labels}}} {accepted}\n"]
    lines += [f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{labels},position="{k}"}} {c}\n'
              for k, c in enumerate(per_pos)]
    return "".join(lines) + extra


def write(tmp_path, text, name="m.prom"):
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def refused(tmp_path, text, fmt="vllm", name="m.prom", **kw) -> InputError:
    p = write(tmp_path, text, name)
    with pytest.raises(InputError) as ei:
        import_file(p, fmt, **kw)
    line = ei.value.line()
    assert "\n" not in line and ei.value.reason, line
    assert ei.value.file in (str(p), None), line
    return ei.value


# -- vLLM: the fixture against closed forms ---------------------------------------------------

def test_fixture_is_read_as_chain_survival_of_the_summed_engines():
    acc = import_file(FIXTURE).acceptance
    assert acc.gamma == 4
    want = [REACHED[0] / DRAFTS] + [REACHED[k] / REACHED[k - 1] for k in range(1, 4)]
    assert acc.per_position == pytest.approx(want, rel=1e-15)
    # simspec's own multiplication gives back the survival counts / drafts ...
    s = chain_survival(acc.per_position, 4)
    assert s == pytest.approx([c / DRAFTS for c in REACHED], rel=1e-12)
    # ... and E[tokens/round] = 1 + sum_k prod_{j<=k} a_j = 1 + accepted / drafts
    assert 1 + s.sum() == pytest.approx(1 + ACCEPTED / DRAFTS, rel=1e-12)
    assert acc.mean_accepted == pytest.approx(ACCEPTED / DRAFTS, rel=1e-15)
    assert acc.counts["drafts"] == DRAFTS and acc.counts["accepted_tokens"] == ACCEPTED
    assert len(acc.counts["label_sets"]) == 2
    assert any("summed over 2 label sets" in n for n in acc.notes)


def test_one_engine_alone_gives_its_own_rates(tmp_path):
    only = "\n".join(ln for ln in FIXTURE.read_text().splitlines() if 'engine="0"' not in ln)
    imp = import_file(write(tmp_path, only), "vllm").acceptance
    assert imp.per_position == from_counts(10000, [8050, 6180, 4720, 3490]).per_position
    assert imp.notes == []  # one label set: nothing summed, no shortened drafts


def test_exposition_details_are_read(tmp_path):
    """OpenMetrics TYPE names, a timestamp, label order and escapes, _created samples, # EOF."""
    text = ('# TYPE vllm:spec_decode_num_drafts counter\n'
            'vllm:spec_decode_num_drafts_total{engine="0",model_name="a \\"q\\" \\\\ b"} 10 1700000000000\n'
            'vllm:spec_decode_num_drafts_created{engine="0",model_name="a \\"q\\" \\\\ b"} 1.7e9\n'
            'vllm:spec_decode_num_draft_tokens_total{model_name="a \\"q\\" \\\\ b",engine="0"} 2e1\n'
            'vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="a \\"q\\" \\\\ b"} 9.0\n'
            'vllm:spec_decode_num_accepted_tokens_per_pos_total{position="1",engine="0",model_name="a \\"q\\" \\\\ b"} 3\n'
            'vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="a \\"q\\" \\\\ b",position="0"} 6\n'
            'other_metric NaN\n# EOF\n')
    acc = import_file(write(tmp_path, text)).acceptance
    assert acc.per_position == [0.6, 0.5]
    assert acc.counts["label_sets"] == [{"engine": "0", "model_name": 'a "q" \\ b'}]


def test_a_position_nothing_reached_ends_the_list(tmp_path):
    acc = import_file(write(tmp_path, prom(per_pos=(40, 0, 0), tokens=300))).acceptance
    assert acc.per_position == [0.4, 0.0] and acc.gamma == 3
    assert acc.survival == [0.4, 0.0, 0.0]
    assert list(chain_survival(acc.per_position, 3)) == [0.4, 0.0, 0.0]


def test_shortened_drafts_are_noted(tmp_path):
    acc = import_file(write(tmp_path, prom(tokens=250))).acceptance
    assert any("were not drafted" in n for n in acc.notes)


# -- SGLang -----------------------------------------------------------------------------------

def test_per_round_accept_lengths_give_the_exact_survival(tmp_path):
    lengths = [1, 2, 3, 5, 5, 4, 2, 1, 3, 3]  # bonus included: accepted = L - 1, gamma 4
    p = write(tmp_path, "# one round per line\n" + "\n".join(map(str, lengths)) + "\n", "a.txt")
    acc = import_file(p, "sglang", gamma=4).acceptance
    reached = [sum(1 for x in lengths if x - 1 >= k) for k in range(1, 5)]
    assert acc.counts["accepted_per_position"] == reached == [8, 6, 3, 2]
    assert list(chain_survival(acc.per_position, 4)) == pytest.approx([r / 10 for r in reached], rel=1e-12)
    assert 1 + sum(acc.survival) == pytest.approx(sum(lengths) / len(lengths), rel=1e-12)
    assert acc.counts["accept_length_histogram"] == {"1": 2, "2": 2, "3": 3, "4": 1, "5": 2}


def test_gamma_comes_from_the_flag_the_log_or_the_longest_round(tmp_path):
    p = write(tmp_path, "1\n3\n2\n", "a.txt")
    assert import_file(p, "sglang").acceptance.gamma == 2
    assert import_file(p, "sglang", gamma=6).acceptance.gamma == 6
    e = refused(tmp_path, "1\n9\n", "sglang", "b.txt", gamma=4)
    assert e.key == "line 2" and "gamma 4" in e.reason


def test_sglang_log_lines_are_mean_only_and_a_scenario_refuses_them(tmp_path):
    log = ("[2026-01-01 10:00:00] server_args=ServerArgs(model_path='x', speculative_num_steps=3, "
           "speculative_eagle_topk=1, speculative_num_draft_tokens=4)\n"
           "[2026-01-01 10:00:05] Prefill batch, #new-seq: 1, #new-token: 12, #cached-token: 0\n"
           "[2026-01-01 10:00:06] Decode batch, #running-req: 4, #token: 900, token usage: 0.01, "
           "accept len: 2.50, accept rate: 0.62, cuda graph: True, gen throughput (token/s): 310.2, #queue-req: 0,\n"
           "[2026-01-01 10:00:07] Decode batch, #running-req: 4, #token: 990, token usage: 0.01, "
           "accept len: 3.10, accept rate: 0.77, cuda graph: True, gen throughput (token/s): 330.9, #queue-req: 0,\n")
    p = write(tmp_path, log, "server.log")
    acc = import_file(p).acceptance  # detected: not vLLM's, not a list
    assert acc.per_position is None and acc.gamma == 3
    assert acc.mean_accepted == pytest.approx(1.8)
    out = tmp_path / "mean.json"
    r = cli("acceptance", "import", str(p), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "MEAN ONLY" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["mean_only"] is True and doc["per_position"] is None
    with pytest.raises(InputError) as ei:
        load_rates(out)
    assert ei.value.key == "per_position" and "cannot be derived from a mean" in ei.value.reason


# -- a paper's list ---------------------------------------------------------------------------

def test_paper_lists_conditional_or_unconditional(tmp_path):
    p = write(tmp_path, 'source = "paper X, table 2"\nper_position = [0.8, 0.75, 0.7]\n', "p.toml")
    imp = import_file(p)
    assert imp.format == "list" and imp.citation == "paper X, table 2"
    assert imp.acceptance.per_position == [0.8, 0.75, 0.7]
    q = write(tmp_path, '{"source": "vLLM log line", "survival": [0.8, 0.6, 0.3]}', "s.json")
    acc = import_file(q).acceptance
    assert acc.per_position == pytest.approx([0.8, 0.75, 0.5], rel=1e-15)
    assert acc.survival == pytest.approx([0.8, 0.6, 0.3], rel=1e-15)
    e = refused(tmp_path, 'per_position = [0.8]\n', "list", "n.toml")
    assert e.key == "source"
    e = refused(tmp_path, 'source = "x"\nsurvival = [0.5, 0.6]\n', "list", "u.toml")
    assert e.key == "survival[1]"


# -- the command -------------------------------------------------------------------------------

def test_command_writes_the_file_with_its_provenance(tmp_path):
    out = tmp_path / "sub" / "acc.json"
    r = cli("acceptance", "import", str(FIXTURE), "--format", "vllm", "--out", str(out), "--source", "hand-written sample")
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and "summed over 2 label sets" in r.stdout
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(c))
    prov = doc["provenance"]
    assert prov["input_sha256"] == hashlib.sha256(FIXTURE.read_bytes()).hexdigest()
    assert prov["format"] == "vllm" and prov["format_detected"] is False and prov["simspec"]
    assert prov["command"].startswith("simspec acceptance import")
    assert doc["source"] == "hand-written sample"
    assert "per-token" in doc["answers"] and "i.i.d." in doc["answers"]
    assert doc["gamma"] == 4 and doc["counts"]["accepted_per_position"] == REACHED
    assert load_rates(out) == doc["per_position"]
    assert not list(out.parent.glob("*.tmp*"))


def test_help_states_what_the_import_can_answer():
    r = cli("acceptance", "import", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for phrase in ("per-token replay", "tree shape", "i.i.d.", "rank", "vllm:spec_decode_num_drafts_total", "Examples"):
        assert phrase in text, phrase


def test_shipped_import_matches_its_source():
    """traces/imported: the sample scrape, its sidecar, and the file the command made from it."""
    prom_file = SHIPPED / "vllm-eagle3-sample.prom"
    doc = json.loads((SHIPPED / "vllm-eagle3-sample.json").read_text())
    side = json.loads((SHIPPED / "vllm-eagle3-sample.prom.json").read_text())
    assert prom_file.read_bytes() == FIXTURE.read_bytes()
    assert doc["provenance"]["input_sha256"] == hashlib.sha256(prom_file.read_bytes()).hexdigest()
    assert doc["per_position"] == import_file(prom_file).acceptance.per_position
    assert "vllm/v1/spec_decode/metrics.py" in side["metric_names_from"] and side["measured"] is False


# -- a scenario and a study use it ---------------------------------------------------------

SCENARIO = """
[target]
cost = {{ step_ms = 10.0, per_seq_ms = 0.5 }}
[draft]
kind = "model"
cost = {{ step_ms = 1.0 }}
[acceptance]
{acc}
[speculation]
draft_len = 5
[workload]
requests = 40
arrival = "poisson"
rate = 20.0
prompt_len = 16
output_len = {{ dist = "uniform", min = 20, max = 120 }}
[serving]
max_batch = 4
seed = 3
"""


def test_a_simulation_on_the_imported_file_equals_the_inline_list(tmp_path):
    from simspec.config import load_scenario
    from simspec.sim.run import simulate

    acc_file = tmp_path / "data" / "acc.json"
    r = cli("acceptance", "import", str(FIXTURE), "--out", str(acc_file))
    assert r.returncode == 0, r.stderr
    rates = json.loads(acc_file.read_text())["per_position"]
    a = write(tmp_path, SCENARIO.format(acc='imported = "data/acc.json"'), "a.toml")  # relative to the scenario
    b = write(tmp_path, SCENARIO.format(acc=f"per_position = {json.dumps(rates)}"), "b.toml")
    sa, sb = load_scenario(a), load_scenario(b)
    assert sa.acceptance.per_position == sb.acceptance.per_position == rates
    ra, rb = simulate(sa, str(a)).summary, simulate(sb, str(b)).summary
    ra.pop("wall_s"), rb.pop("wall_s")
    assert ra == rb
    assert ra["mean_tokens_per_round"] > 1.5  # it speculated, with the file's acceptance
    # derived scenarios read the file again (it is not copied into the set keys)
    sc2 = sa.with_(serving={"max_batch": 2}, file=str(a))
    assert sc2.acceptance.imported == "data/acc.json" and sc2.acceptance.per_position == rates
    assert "per_position" not in sa.model_dump(exclude_unset=True)["acceptance"]
    r = cli("simulate", str(a), "--json")
    assert r.returncode == 0, r.stderr


def test_scenario_errors_name_the_key_and_the_file(tmp_path):
    def err(acc: str, name: str = "s.toml") -> str:
        p = write(tmp_path, SCENARIO.format(acc=acc), name)
        r = cli("simulate", str(p))
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip()
        assert "\n" not in line and "Traceback" not in line, line
        assert line.startswith(f"error: {p}: acceptance"), line
        return line

    assert "file not found" in err('imported = "nope.json"')
    bad = tmp_path / "bad.json"
    doc = json.loads((SHIPPED / "vllm-eagle3-sample.json").read_text())
    bad.write_text(json.dumps({**doc, "survival": [0.9, 0.8, 0.7, 0.6]}))
    assert "survival: does not agree with per_position" in err('imported = "bad.json"')
    bad.write_text(json.dumps({**doc, "per_position": [0.8, 1.5]}))
    assert "per_position[1]" in err('imported = "bad.json"')
    (tmp_path / "good.json").write_text(json.dumps(doc))
    assert "give exactly one" in err('imported = "good.json"\nper_position = [0.5]')
    bad.write_text(json.dumps({"kind": "simspec-trace"}))
    assert "not an acceptance file" in err('imported = "bad.json"')
    bad.write_text('{"kind": "simspec-acceptance", "kind": "x"}')
    assert "given twice" in err('imported = "bad.json"')


def test_a_study_drafter_uses_the_file(tmp_path):
    import shutil

    from simspec.study import trial
    from simspec.study.outcome import portable_scenario
    from simspec.study.spec import load_study

    shutil.copy(SHIPPED / "vllm-eagle3-sample.json", tmp_path / "eagle3.json")
    study = tmp_path / "st.toml"
    study.write_text("""
name = "imp"
trials = 4
[scenario]
target = { cost = { step_ms = 10.0 } }
workload = { requests = 8, arrival = "closed", concurrency = 2, prompt_len = 16, output_len = 40 }
[search]
gamma = [0, 2, 4]
drafter = ["model"]
[drafters.model]
cost = { step_ms = 1.0 }
acceptance = { imported = "eagle3.json" }
vocab_size = 1000
coverage = [[1, 0.5], [1000, 1.0]]
[objectives]
throughput = "maximize"
""")
    spec = load_study(study)
    rates = load_rates(tmp_path / "eagle3.json")
    sc = trial.scenario(spec, {"gamma": 4, "drafter": "model"})
    assert sc.acceptance.per_position == rates and sc.acceptance.imported == "eagle3.json"
    out = tmp_path / "runs" / "imp"
    out.mkdir(parents=True)
    moved = portable_scenario(sc, spec, out)  # best.toml's paths, relative to the run folder
    assert moved.acceptance.imported == "../../eagle3.json" and moved.acceptance.per_position == rates
    # the synthetic-acceptance export gives vLLM back its own per-position rates: counts / drafts
    from simspec.study.engines.synthetic import conditional_rates, unconditional

    cond, where = conditional_rates(spec, {"drafter": "model"}, 4)
    assert unconditional(cond, 4) == [round(c / DRAFTS, 6) for c in REACHED] and where == "per_position acceptance"
    # a trimmed head scales the imported rates: the scaled list replaces the file
    half = trial.scenario(spec, {"gamma": 2, "drafter": "model", "vocab": 1})
    assert half.acceptance.imported is None
    assert half.acceptance.per_position == pytest.approx([a * 0.5 for a in rates])


# -- bad metric files: one line, file, line, reason -------------------------------------------

@pytest.mark.parametrize("text, key, words", [
    (prom() + "vllm:spec_decode_num_drafts_total{engine=0} 3\n", "line 9", "label 'engine'"),
    (prom() + "garbage here\n", "line 9", "'here' is not a number"),
    (prom() + "-garbage 1\n", "line 9", "not a metric sample"),
    (prom() + "x{a=\"b\" 1\n", "line 9", "expected ',' or '}'"),
    (prom(drafts=-5), "line 3", "finite number >= 0"),
    (prom(drafts="NaN"), "line 3", "finite number >= 0"),
    (prom(tokens="+Inf"), "line 4", "finite number >= 0"),
    (prom(drafts="1.5"), "line 3", "whole number"),
    (prom(accepted=400, tokens=300, per_pos=(100, 100, 100)), "line 5", "accepted tokens > 300 draft tokens"),
    (prom(per_pos=(50, 60, 10)), "line 7", "must not increase"),
    (prom(per_pos=(150, 60, 10)), "line 6", "position 0 accepted 150 times in 100 drafts"),
    (prom(tokens=400), "line 4", "400 draft tokens > 100 drafts x 3 positions"),
    (prom(accepted=200), "line 5", "counts sum to 150"),
    (prom(drafts=0, tokens=0, per_pos=(0, 0, 0)), "line 3", "nothing was drafted"),
    (prom() + 'vllm:spec_decode_num_drafts_total{model_name="m",engine="0"} 100\n', "line 9", "duplicate series"),
    (prom() + prom(labels='model_name="other",engine="0"').replace(HEAD, ""), "line 9", "second model_name"),
    (prom().replace("# TYPE vllm:spec_decode_num_drafts_total counter", "# TYPE vllm:spec_decode_num_drafts_total gauge"),
     "line 2", "expected a counter"),
    ("\n".join(ln for ln in prom().splitlines() if "accepted_tokens_total" not in ln), None, "missing"),
    (prom(per_pos=(80, 50, 20)).replace('position="1"', 'position="4"'), None, "position 1 is missing"),
    (prom(per_pos=(80, 50, 20)).replace('position="1"', 'position="x"'), "line 7", "position"),
    ("# HELP vllm:spec_decode_draft_acceptance_rate x\nvllm:spec_decode_draft_acceptance_rate 0.5\n", None, "v0"),
    (prom() + "vllm:spec_decode_num_drafts_total 5 5 5\n", "line 9", "expected one value"),
    (prom() + 'vllm:spec_decode_num_drafts_total{a="1",a="2"} 5\n', "line 9", "given twice"),
    (prom() + 'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",engine="0",position="01"} 5\n',
     "line 9", "position 1 is given at line 7 too"),
])
def test_bad_vllm_files_are_one_line(tmp_path, text, key, words):
    e = refused(tmp_path, text)
    assert words in e.reason, e.line()
    if key is not None:
        assert e.key == key, e.line()
    else:
        assert e.key, e.line()  # the missing counter's name


@pytest.mark.parametrize("data, fmt, key, words", [
    (b"", "vllm", None, "is empty"),
    (b"  \n\n", None, None, "is empty"),
    (b"vllm:spec_decode_num_drafts_total 1\n\xff\xfe\x00garbage", "vllm", "line 2", "not a text file"),
    (b"\x00\x01\x02\x03" * 50, None, "line 1", "not a text file"),
    (b"1\n2\n3\n", "vllm", None, "try --format sglang"),
    (b"accept len: 2.0\n", "vllm", None, "try --format sglang"),
    (prom().encode(), "sglang", "line 3", "try --format vllm"),
    (prom().encode(), "list", None, "try --format vllm"),
    (b"0\n1\n", "sglang", "line 1", "bonus token"),
    (b"2.5\n", "sglang", "line 1", "per-request mean"),
    (b"3\n-1\n", "sglang", "line 2", "at least 1"),
    (b"9999999999999\n", "sglang", "line 1", "above the limit"),
    (b"Decode batch, accept len: nan, x\n", "sglang", "line 1", "not followed by a number"),
    (b"Decode batch, accept len: 0.50, x\n", "sglang", "line 1", "< 1"),
    (b"speculative_num_steps=0\n1\n", "sglang", "line 1", "no draft tokens"),
    (b"1\n1\n1\n", "sglang", None, "draft length is unknown"),
    (b"# only a comment\n", "sglang", None, "no accept lengths"),
])
def test_bad_files_of_every_format_are_one_line(tmp_path, data, fmt, key, words):
    e = refused(tmp_path, data, fmt, "f.txt" if fmt != "list" else "f.toml")
    assert words in e.reason, e.line()
    assert e.key == key, e.line()


def test_flags_are_checked(tmp_path):
    p = write(tmp_path, prom())
    with pytest.raises(InputError) as ei:
        import_file(p, "csv")
    assert ei.value.key == "--format" and ei.value.file is None
    with pytest.raises(InputError) as ei:
        import_file(p, "vllm", gamma=3)
    assert ei.value.key == "--gamma"
    with pytest.raises(InputError) as ei:
        import_file(write(tmp_path, "1\n", "a.txt"), "sglang", gamma=0)
    assert ei.value.key == "--gamma"
    with pytest.raises(InputError) as ei:
        import_file(write(tmp_path, "1\n", "a.txt"), "sglang", gamma=limits.GAMMA.value + 1)
    assert "above the limit" in ei.value.reason


def test_huge_and_special_files_are_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "ENGINE_BYTES", limits.Limit("bytes of an engine metrics scrape or log", 1000, "x" * 30))
    e = refused(tmp_path, prom() * 3)
    assert "larger than the limit of 1,000" in e.reason
    with pytest.raises(InputError) as ei:
        import_file(tmp_path)
    assert "folder" in ei.value.reason
    with pytest.raises(InputError) as ei:
        import_file("/dev/zero")
    assert "not a regular file" in ei.value.reason


def test_cli_bad_file_exits_2_with_one_line_and_writes_nothing(tmp_path):
    p = write(tmp_path, prom(per_pos=(50, 60, 10)))
    out = tmp_path / "o.json"
    r = cli("acceptance", "import", str(p), "--out", str(out))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {p}: line 7: "), r.stderr
    assert not out.exists()
    r = cli("acceptance", "import", str(p), "--out", str(out), "--format", "prom")
    assert r.returncode == 2 and r.stderr.startswith("error: --format: must be one of vllm, sglang, list"), r.stderr
    r = cli("acceptance", "import", str(FIXTURE), "--out", str(tmp_path))
    assert r.returncode == 2 and "--out" in r.stderr and "folder" in r.stderr, r.stderr


def test_counts_to_rates_closed_form_on_random_histograms():
    import random

    rng = random.Random(32)
    for _ in range(200):
        g = rng.randint(1, 8)
        drafts = rng.randint(1, 10 ** 6)
        reached, top = [], drafts
        for _k in range(g):
            top = rng.randint(0, top)
            reached.append(top)
        acc = from_counts(drafts, reached)
        s = chain_survival(acc.per_position, g)
        assert s == pytest.approx([c / drafts for c in reached], rel=1e-12, abs=1e-15)
        assert 1 + s.sum() == pytest.approx(1 + sum(reached) / drafts, rel=1e-12)
        assert all(0 <= a <= 1 for a in acc.per_position) and not any(math.isnan(a) for a in acc.per_position)
