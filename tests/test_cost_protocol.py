"""The `CostModel` protocol names every figure the simulator reads, every concrete cost model
carries each of them with its declared type, and `sim/` reads them without probing."""

from __future__ import annotations

import ast
import types
import typing
from pathlib import Path

import pytest

from profhelpers import LAYERS, VOCAB, write_synthetic
from simspec.devices import arch, catalog
from simspec.devices.roofline import RooflineCost
from simspec.profile.costmodel import ProfileCostModel
from simspec.sim.costs import CostModel, ScaledCost, SyntheticCost

SIM = Path(__file__).resolve().parents[1] / "simspec" / "sim"
DECLARED = typing.get_type_hints(CostModel)  # name -> declared type (the data members)


def _accepts(tp, value) -> bool:
    """Whether `value` is an instance of the declared type (float admits int, as in typing;
    a bool is no number)."""
    allowed = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
    for a in allowed:
        if a is type(None) and value is None:
            return True
        if a is bool and isinstance(value, bool):
            return True
        if a in (int, float) and not isinstance(value, bool) and isinstance(value, (int, float) if a is float else int):
            return True
    return False


def violations(model) -> list[str]:
    """Declared members `model` lacks or carries with another type."""
    out = []
    for name, tp in DECLARED.items():
        if not hasattr(model, name):
            out.append(f"{name}: missing")
        elif not _accepts(tp, getattr(model, name)):
            out.append(f"{name}: {getattr(model, name)!r} is not {tp}")
    if not callable(getattr(model, "latency_s", None)):
        out.append("latency_s: missing")
    return out


def test_the_protocol_declares_what_the_simulator_reads():
    assert set(DECLARED) == {"depends_on_context", "num_layers", "vocab_size", "kv_bytes_per_token",
                             "weights_bytes", "hidden_bytes", "estimate"}


def test_the_checker_catches_a_missing_or_mistyped_figure():
    class Partial:
        depends_on_context = True
        num_layers = "24"  # text, not an int
        vocab_size = None
        kv_bytes_per_token = 1.0
        weights_bytes = None
        estimate = 1  # an int, not a bool

        def latency_s(self, *a, **k):
            return 0.0

    assert violations(Partial()) == ["num_layers: '24' is not int | None", "hidden_bytes: missing",
                                     "estimate: 1 is not bool | None"]
    assert not isinstance(Partial(), CostModel)


def _models(tmp_path) -> dict[str, object]:
    profile = ProfileCostModel.load(write_synthetic(tmp_path / "p.parquet"))
    dims = arch.resolve("llama-3-8b")
    roof = RooflineCost(dims, catalog.get("h100-sxm"), "bf16", tensor_parallel=2)
    return {
        "synthetic": SyntheticCost(5.0),
        "synthetic with layers": SyntheticCost(5.0, 0.1, 0.01, 0.0, 32),
        "profile": profile,
        "roofline": roof,
        "fitted roofline": RooflineCost(dims, catalog.get("h100-sxm"), "fp32", estimate=False),
        "early-exit view of a profile": ScaledCost(profile, layers=3),
        "trimmed head of a roofline": ScaledCost(roof, head_rows=8192),
    }


def test_every_concrete_cost_model_satisfies_the_protocol(tmp_path):
    for name, model in _models(tmp_path).items():
        assert violations(model) == [], name
        assert isinstance(model, CostModel), name


def test_the_figures_are_the_models_own(tmp_path):
    m = _models(tmp_path)
    p = m["profile"]  # the sidecar's: an fp32 capture of a 64-wide model
    assert (p.num_layers, p.vocab_size, p.kv_bytes_per_token, p.weights_bytes) == (LAYERS, VOCAB, 2 * LAYERS * 2 * 16 * 4, 1)
    assert p.hidden_bytes == 64 * 4 and p.estimate is None
    r, dims = m["roofline"], arch.resolve("llama-3-8b")  # bf16, weights and KV split over 2 devices
    assert (r.num_layers, r.vocab_size, r.hidden_bytes, r.estimate) == (dims.layers, dims.vocab, dims.hidden * 2, True)
    assert r.weights_bytes == dims.weights_bytes(2) / 2 and r.kv_bytes_per_token == dims.kv_bytes_per_token(2) / 2
    assert m["fitted roofline"].hidden_bytes == dims.hidden * 4 and m["fitted roofline"].estimate is False
    s = m["synthetic"]  # a what-if prices no model
    assert (s.num_layers, s.vocab_size, s.kv_bytes_per_token, s.weights_bytes, s.hidden_bytes, s.estimate) == (None,) * 6
    assert m["synthetic with layers"].num_layers == 32
    for view, base in (("early-exit view of a profile", p), ("trimmed head of a roofline", r)):
        assert [getattr(m[view], k) for k in DECLARED] == [getattr(base, k) for k in DECLARED], view


def test_a_sidecar_without_a_known_dtype_gives_no_hidden_bytes(tmp_path):
    import json

    path = write_synthetic(tmp_path / "p.parquet")
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps(meta | {"dtype": "int3"}))
    assert ProfileCostModel.load(path).hidden_bytes is None


def _getattr_calls(tree: ast.AST) -> list[str]:
    return [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name) and n.func.id == "getattr"
            and not (isinstance(n.args[0], ast.Name) and n.args[0].id == "self")]


def test_the_simulator_probes_no_object_with_getattr():
    """Only a record reading its own columns may use getattr in sim/ (on `self`)."""
    assert _getattr_calls(ast.parse('getattr(cost.draft, "base", cost.draft)')) != []
    found = {p.name: calls for p in sorted(SIM.rglob("*.py"))
             if (calls := _getattr_calls(ast.parse(p.read_text())))}
    assert found == {}


@pytest.mark.parametrize("kind", ["model", "early_exit"])
def test_summaries_flag_a_roofline_drafter_through_its_view(kind):
    """A drafter seen through a view (early exit, trimmed head) still says it is an estimate."""
    from simspec.config import parse_scenario
    from simspec.sim.run import simulate

    draft = {"kind": "model", "model": "llama-3.2-1b", "vocab": 8192} if kind == "model" else {"kind": "early_exit", "exit_layer": 8}
    sc = parse_scenario({
        "target": {"model": "llama-3-8b"}, "draft": draft,
        "acceptance": {"iid": 0.5}, "speculation": {"draft_len": 2},
        "placement": {"devices": {"gpu": {"catalog": "h100-sxm"}}, "target": "gpu"},
        "workload": {"requests": 1, "prompt_len": 16, "output_len": 8},
    })
    s = simulate(sc).summary
    assert s["target_estimate"] == 1.0 and s["draft_estimate"] == 1.0


@pytest.mark.parametrize("draft, own_weights", [
    ({"kind": "model", "model": "llama-3.2-1b"}, True),
    ({"kind": "model", "model": "llama-3.2-1b", "vocab": 8192}, True),  # a trimmed head: still its own model
    ({"kind": "early_exit", "exit_layer": 8}, False),  # the target's own first layers
])
def test_kv_capacity_counts_a_drafters_weights_when_it_has_its_own(draft, own_weights):
    from simspec.config import parse_scenario
    from simspec.sim.build import build_round_cost, kv_capacity

    sc = parse_scenario({
        "target": {"model": "llama-3-8b"}, "draft": draft,
        "acceptance": {"iid": 0.5}, "speculation": {"draft_len": 2},
        "placement": {"devices": {"gpu": {"catalog": "h100-sxm"}}, "target": "gpu"},
        "workload": {"requests": 1, "prompt_len": 16, "output_len": 8},
    })
    h100 = catalog.get("h100-sxm")
    target, drafter = (RooflineCost(arch.resolve(m), h100) for m in ("llama-3-8b", "llama-3.2-1b"))
    weights = target.weights_bytes + (drafter.weights_bytes if own_weights else 0.0)
    free = h100.memory_bytes / 1e9 * 1e9 * sc.serving.kv_memory_fraction - weights
    assert kv_capacity(sc, build_round_cost(sc, None), None) == int(free // target.kv_bytes_per_token)
