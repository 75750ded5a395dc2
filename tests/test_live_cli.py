"""`simspec run` end to end on a tiny model: JSON result, greedy check, one-line input errors."""

from __future__ import annotations

import json

import pytest

from clihelpers import cli as simspec  # in this process: tests/clihelpers.py says why

pytest.importorskip("torch")


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": t}) for t in ["abcabcabc", "hello hello", "xyz"]) + "\n")
    return path


def test_run_json_and_greedy_check(prompts, tmp_path):
    out = tmp_path / "r.json"
    r = simspec("run", "--target", "tiny:llama", "--draft", "early_exit:2", "--tree", "2,1", "--dtype", "fp32",
                "--dataset", str(prompts), "--prompts", "3", "--max-new-tokens", "12", "--batch", "2",
                "--ignore-eos", "--check-greedy", "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["new_tokens"] == 36 and res["prompts"] == 3
    assert res["greedy_equal"] == 3
    assert res["tree"] == [2, 1] and 1.0 <= res["tokens_per_round"] <= 3.0  # a 2-deep tree emits 1..3 a round
    assert set(res["seconds"]) == {"prefill", "draft", "verify", "other"}
    assert json.loads(out.read_text()) == res


def test_run_human_readable(prompts):
    r = simspec("run", "--target", "tiny:qwen2", "--draft", "ngram:2", "--gamma", "3", "--dataset", str(prompts),
                "--prompts", "2", "--max-new-tokens", "8", "--check-greedy", "--dtype", "fp32")
    assert r.returncode == 0, r.stderr
    assert "tokens/round" in r.stdout and "identical to plain greedy on 2/2 prompts" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--draft", "bogus"], "--draft: 'bogus' is not none"),
    (["--draft", "early_exit:9"], "early_exit:9 needs 1 <= L < 4"),
    (["--draft", "ngram", "--tree", "2,1"], "--tree: n-gram lookup drafts chains only"),
    (["--draft", "early_exit:2", "--tree", "2,1", "--temperature", "0.7"], "--tree: sampling"),
    (["--draft", "ngram", "--vocab", "100"], "--vocab: a trimmed head needs"),
    (["--tree", "2,x"], "--tree: '2,x' is not a comma-separated list"),
    (["--dataset", "nope.txt"], "--dataset: 'nope.txt' is not humaneval"),
])
def test_run_errors_are_one_line(prompts, args, message):
    base = ["run", "--target", "tiny:llama", "--dataset", str(prompts), "--max-new-tokens", "4"]
    r = simspec(*base, *args) if "--dataset" not in args else simspec("run", "--target", "tiny:llama", *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_run_bad_jsonl_names_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nope": 1}\n')
    r = simspec("run", "--target", "tiny:llama", "--dataset", str(bad))
    assert r.returncode == 2
    assert f"{bad}: line 2: needs a string 'prompt'" in r.stderr
