"""Random weights from dims (`random:<models.toml name | config.json>`): the dims are the
config's, the weights seeded and in the run's dtype, nothing is downloaded, and a model that
would not fit is refused in one line before anything is allocated. `simspec run --synthetic`
on such a model decodes with the forced acceptance."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from clihelpers import cli  # noqa: E402
from simspec.devices.arch import known  # noqa: E402
from simspec.errors import InputError  # noqa: E402
from simspec.models import load_model  # noqa: E402
from simspec.models import random_weights  # noqa: E402
from simspec.models.dims import Dims  # noqa: E402

SMALL = {"model_type": "qwen2", "vocab_size": 300, "hidden_size": 32, "intermediate_size": 64,
         "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
         "tie_word_embeddings": False, "quantization_config": {"quant_method": "gguf"}}


@pytest.fixture()
def small_config(tmp_path):
    d = tmp_path / "small-qwen"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(SMALL))
    return d


def test_config_json_dims_dtype_and_seed(small_config):
    a = load_model(f"random:{small_config}", dtype="bf16")
    b = load_model(f"random:{small_config / 'config.json'}", dtype="bf16")
    assert a.name == "small-qwen" and a.sha256 == ""
    assert (a.dims.layers, a.dims.hidden, a.dims.vocab, a.dims.kv_heads, a.dims.arch) == (3, 32, 300, 2, "qwen2")
    assert next(a.model.parameters()).dtype == torch.bfloat16
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed -> same weights
    c = random_weights.random_model(str(small_config), dtype="bf16", seed=1)
    assert not torch.equal(c.model.state_dict()["lm_head.weight"], sa["lm_head.weight"])
    ids = a.tokenizer("abc")["input_ids"]
    assert a.model(input_ids=torch.tensor([ids])).logits.shape == (1, len(ids), 300)


@pytest.mark.parametrize("name", sorted(known()))
def test_models_toml_dims_without_allocating(name):
    """Every models.toml entry builds a config of exactly its dims (on the meta device: no weights)."""
    if random_weights._arch_of(name) is None:
        pytest.skip(f"{name}: family not known")
    cfg, got = random_weights.config_of(name)
    d, want = Dims.from_config(cfg), known()[name]
    assert got == name
    assert (d.layers, d.hidden, d.heads, d.kv_heads, d.head_dim, d.intermediate, d.vocab) == tuple(
        want[k] for k in ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab"))
    assert cfg.tie_word_embeddings == want["tied"]
    assert random_weights.weight_bytes(cfg, "bf16") > 0


def test_llama_3_8b_size_and_refusal(monkeypatch):
    cfg, _ = random_weights.config_of("llama-3-8b")
    need = random_weights.weight_bytes(cfg, "bf16")
    assert 15.5e9 < need < 16.5e9  # 8.03B parameters
    monkeypatch.setattr(random_weights, "available_bytes", lambda device: 8 * 2**30)
    with pytest.raises(InputError) as e:
        load_model("random:llama-3-8b", dtype="bf16")
    assert "GiB" in e.value.reason and "8.0 GiB available" in e.value.reason and "\n" not in str(e.value)


@pytest.mark.parametrize("ref, why", [
    ("no-such-model", "neither a model in simspec/devices/models.toml"),
    ("BAD_JSON", "not a JSON config"),
    ("NO_TYPE", "model_type"),
    ("TINY_VOCAB", "byte tokenizer needs at least 259"),
])
def test_bad_refs_one_line(tmp_path, ref, why):
    if ref != "no-such-model":
        p = tmp_path / f"{ref}.json"
        p.write_text({"BAD_JSON": "{", "NO_TYPE": json.dumps({"hidden_size": 8}),
                      "TINY_VOCAB": json.dumps(SMALL | {"vocab_size": 100})}[ref])
        ref = str(p)
    with pytest.raises(InputError, match=why) as e:
        load_model(f"random:{ref}")
    assert "\n" not in str(e.value)


def test_run_cli_synthetic_on_random_weights(small_config, tmp_path):
    out = tmp_path / "run.json"
    r = cli("run", "--target", f"random:{small_config}", "--draft", "early_exit:1", "--gamma", "3",
                 "--synthetic", "1,1,0", "--prompts", "2", "--max-new-tokens", "10", "--dtype", "fp32",
                 "--threads", "1", "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["synthetic"].startswith("per_position 1,1,0")
    assert res["new_tokens"] == 20 and res["rounds"] == 8  # 3+3+3+1 per prompt, no stop token
    assert res["tokens_per_round"] == 2.5
    bad = cli("run", "--target", f"random:{small_config}", "--draft", "early_exit:1", "--synthetic", "0.5,2")
    assert bad.returncode == 2 and "--synthetic" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
