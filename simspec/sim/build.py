"""Scenario -> the parts the serving loop needs: cost models, round shape, oracle, KV budget."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from simspec.config import Scenario, resolve_data_path
from simspec.config.scenario import CostSpec
from simspec.errors import InputError
from simspec.sim.acceptance import SurvivalOracle, chain_survival, tree_survival
from simspec.sim.costs import CostModel, ScaledCost, SyntheticCost, load_profile_cost
from simspec.sim.round_cost import RoundCost
from simspec.sim.transfer import Link


def _synthetic(cost: CostSpec, num_layers: int | None = None) -> SyntheticCost:
    return SyntheticCost(cost.step_ms, cost.per_seq_ms, cost.per_token_ms, cost.per_kv_token_ms,
                         num_layers)


@lru_cache(maxsize=32)
def _load_profile(path: str, mtime_ns: int) -> CostModel:
    # A study simulates hundreds of trials on the same few profiles: parse and fit once.
    return load_profile_cost(path)


_SAID: set[str] = set()


def _say_once(line: str) -> None:
    """A line the user must see (which profile "auto" chose, a profile on a foreign device), once
    per process: a study simulates the same scenario hundreds of times."""
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr)


def _check_device(path: Path, sc: Scenario, role: str, file: str | None) -> None:
    """A profile priced on a catalog device it was not captured on prices another machine."""
    from simspec.profile.select import device_mismatch

    dev = sc.placement.target if role == "target" else (sc.placement.draft or sc.placement.target)
    spec = sc.placement.devices[dev]
    if spec.catalog is not None:
        from simspec.devices import catalog

        line = device_mismatch(path, dev, catalog.get(spec.catalog).title)
        if line:
            _say_once(f"warning: {file or '<scenario>'}: {role}.profile: {line}")


def _check_model(path: Path, key: str, file: str | None, name: str | None) -> None:
    """A profile of another model prices this one with its costs: said loudly (a user may mean
    it, e.g. a stand-in for a model not profiled yet), never silently."""
    from simspec.profile.select import model_mismatch

    line = model_mismatch(path, name)
    if line:
        _say_once(f"warning: {file or '<scenario>'}: {key}: {line} ({key.split('.')[0]}.name)")


def _profile(ref: str, key: str, file: str | None, name: str | None = None,
             sc: Scenario | None = None, named: bool = True) -> CostModel:
    """`named`: the scenario gave the model's name itself (the default "target" names nothing,
    so a profile of any model is no mismatch)."""
    from simspec import machine
    from simspec.profile.select import AUTO, choose

    if ref == AUTO:  # the shipped <name>.parquet that fits this machine best, said out loud
        if not name:
            raise InputError(file, key, f'"{AUTO}" picks profiles/<machine>/<name>.parquet: give `{key.split(".")[0]}.name`')
        choice = choose(name, file, key)
        _say_once(f"{file or '<scenario>'}: {key}: {choice.note(machine.here())}")
        ref = str(choice.path)
    path = Path(resolve_data_path(ref, file))
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise InputError(file, key, f"not a usable path ({exc.strerror})") from None
    if is_dir:
        raise InputError(file, key, f"is a directory, not a profile: {ref!r}")
    if not exists:
        raise InputError(file, key, f"profile file not found: {ref}")
    if sc is not None:
        _check_device(path, sc, key.split(".")[0], file)
    if named:
        _check_model(path, key, file, name)
    try:
        return _load_profile(str(path.resolve()), path.stat().st_mtime_ns)
    except ModuleNotFoundError as exc:
        raise InputError(file, key, f"profile support is not installed ({exc.name})") from None


def device_info(sc: Scenario, name: str, file: str | None):
    """The roofline's view of a placement device (catalog + inline figures, efficiencies
    fitted to its `fit` profile when it has one); None for a bare name."""
    spec = sc.placement.devices[name]
    info = spec.info(name)
    if info is None or spec.fit is None:
        return info
    key = f"placement.devices.{name}.fit"
    path = resolve_data_path(spec.fit, file)
    if not Path(path).exists():
        raise InputError(file, key, f"profile file not found: {spec.fit}")
    from simspec.devices.fit import fitted_device

    return fitted_device(str(Path(path).resolve()), info)


def _roofline(model: str | None, dims, dtype: str, device: str, sc: Scenario, key: str,
              file: str | None, tp: int = 1, stages: int = 1) -> CostModel:
    from simspec.devices import arch
    from simspec.devices.roofline import RooflineCost

    try:
        if model is not None:
            base = Path(file).parent if file else None
            a = arch.resolve(model, base)
        else:
            a = arch.ArchDims(dims.layers, dims.hidden, dims.heads, dims.kv_heads, dims.head_dim,
                              dims.intermediate, dims.vocab, dims.tied)
        info = device_info(sc, device, file)
        return RooflineCost(a, info, dtype, tensor_parallel=tp, pipeline_stages=stages,
                            estimate=sc.placement.devices[device].fit is None)
    except (ValueError, KeyError) as exc:
        raise InputError(file, key, str(exc).strip("'\"")) from None


def target_cost(sc: Scenario, file: str | None) -> CostModel:
    t = sc.target
    if t.cost is not None:
        return _synthetic(t.cost, t.layers)
    if t.roofline:
        return _roofline(t.model, t.dims, t.dtype, sc.placement.target, sc,
                         "target.model" if t.model else "target.dims", file,
                         t.tensor_parallel, t.pipeline_stages)
    return _profile(t.profile, "target.profile", file, t.name, sc, named="name" in t.model_fields_set)


def draft_cost(sc: Scenario, target: CostModel, file: str | None) -> CostModel | None:
    d = sc.draft
    k = d.entry
    if k is None or sc.gamma == 0:
        return None
    if d.cost is not None:
        return _synthetic(d.cost)
    if k.model_free:
        return SyntheticCost(0.0)
    if k.target_layers:
        layers, vocab = target.num_layers, target.vocab_size
        if layers and d.exit_layer > layers:
            raise InputError(file, "draft.exit_layer", f"{d.exit_layer} > the target profile's {layers} layers")
        if vocab and d.vocab and d.vocab > vocab:
            raise InputError(file, "draft.vocab", f"{d.vocab} > the target profile's vocabulary of {vocab}")
        return ScaledCost(target, layers=d.exit_layer, head_rows=d.vocab)
    if d.from_target:  # a head: its layers of the target's cost model, and an LM head
        layers, vocab, n = target.num_layers, target.vocab_size, d.head_layers
        if layers and n > layers:
            raise InputError(file, "draft.layers", f"{n} > the target's {layers} layers: a head prices as that many of them")
        if vocab and d.vocab and d.vocab > vocab:
            raise InputError(file, "draft.vocab", f"{d.vocab} > the target's vocabulary of {vocab}")
        return ScaledCost(target, layers=n, head_rows=d.vocab)
    if d.roofline:  # priced on the drafter's own device
        model = _roofline(d.model, d.dims, d.dtype, sc.placement.draft or sc.placement.target, sc,
                          "draft.model" if d.model else "draft.dims", file)
        return ScaledCost(model, head_rows=d.vocab) if d.vocab else model
    model = _profile(d.profile, "draft.profile", file, d.name, sc, named="name" in d.model_fields_set)
    return ScaledCost(model, head_rows=d.vocab) if d.vocab else model


def round_shape(sc: Scenario) -> tuple[list[int], list[int], int]:
    """(query tokens per sequence at each draft step, tree nodes at depth 1..D, query tokens
    in the verify pass)."""
    if sc.gamma == 0:
        return [], [], 1
    shape = sc.shape
    nodes = shape.nodes_per_depth()
    if sc.draft.entry.parallel:  # the whole block in one forward of gamma query tokens
        return [sc.gamma], nodes, shape.size
    return [1] + nodes[:-1], nodes, shape.size


def survival(sc: Scenario, depth: int) -> np.ndarray:
    """S_1..S_depth of a synthetic acceptance section."""
    acc = sc.acceptance
    if acc.iid is not None:
        return chain_survival([acc.iid], depth)
    if acc.per_position is not None:
        return chain_survival(acc.per_position, depth)
    children = list(sc.speculation.tree or [1] * depth)
    children += [1] * (depth - len(children))
    return tree_survival(children, acc.rank_probs)


def build_oracle(sc: Scenario, file: str | None, rng: np.random.Generator):
    """The scenario's acceptance oracle; with a dynamic policy, the policy's oracle over it
    (simspec.policies: it chooses each round's draft from the acceptance replayed)."""
    oracle = _fixed_oracle(sc, file, rng)
    policy = sc.speculation.policy
    if oracle is not None and policy is not None and policy.entry.dynamic:
        return policy.entry.fn("replay")(sc, oracle, file)
    return oracle


def _fixed_oracle(sc: Scenario, file: str | None, rng: np.random.Generator):
    if sc.gamma == 0:
        return None
    depth = sc.gamma + (1 if sc.placement.overlap else 0)
    acc = sc.acceptance
    if acc.trace is None:
        return SurvivalOracle(survival(sc, depth), rng)
    try:
        from simspec.trace.oracle import load_trace_oracle
    except ModuleNotFoundError:
        raise InputError(file, "acceptance.trace", "trace replay is not available in this build of simspec") from None
    oracle = load_trace_oracle(sc, resolve_data_path(acc.trace, file), depth, rng, file)
    _check_traced_model(sc, oracle.trace.meta, file)
    return oracle


def _check_traced_model(sc: Scenario, meta: dict, file: str | None) -> None:
    """A trace of another model than the one the scenario names (or its profile measured)
    replays that model's acceptance: said loudly, as a profile of another model is."""
    from simspec.profile.select import names_model, profiled_model

    traced = meta.get("target")
    if not isinstance(traced, str) or not traced.strip():
        return
    t = sc.target
    if "name" in t.model_fields_set and not names_model(t.name, traced):
        _say_once(f"warning: {file or '<scenario>'}: acceptance.trace: {sc.acceptance.trace} traced {traced!r}, "
                  f"but target.name is {t.name!r}: the acceptance replayed is {traced!r}'s")
        return
    if t.profile and t.profile != "auto":
        model = profiled_model(Path(resolve_data_path(t.profile, file)))
        if model is not None and not names_model(model, traced):
            _say_once(f"warning: {file or '<scenario>'}: acceptance.trace: {sc.acceptance.trace} traced {traced!r}, "
                      f"but target.profile measured {model!r}")


def round_link(sc: Scenario, target: CostModel, file: str | None, drafting: bool) -> Link | None:
    """The link a round's tokens (and hidden states) cross: None on one device, or when
    either device is a bare name (no figures: transfers cost nothing, as before)."""
    pl = sc.placement
    dname = pl.draft or pl.target
    if not drafting or dname == pl.target:
        return None
    a, b = device_info(sc, pl.target, file), device_info(sc, dname, file)
    if a is None or b is None:
        return None
    hidden = 0.0
    if sc.draft.entry.crosses == "hidden":
        hidden = _hidden_bytes(sc, target, file)
    return Link.between(a, b, hidden)


def _hidden_bytes(sc: Scenario, target: CostModel, file: str | None) -> float:
    """Bytes of one target hidden state (its width x dtype): the cost model's (a roofline's
    dims and dtype, a profile's sidecar), else the scenario's `target.dims`."""
    if target.hidden_bytes is not None:
        return target.hidden_bytes
    dims = sc.target.dims
    if dims is not None and dims.hidden:
        return dims.hidden * dims.dtype_bytes
    raise InputError(file, "target", "a drafter that reads hidden states needs the target's width (`dims.hidden`, a profile or `model`)")


def exit_costs(sc: Scenario, target: CostModel, layers, file: str | None) -> dict[int, CostModel]:
    """Early exit at each of `layers` (a dynamic exit layer's passes): l of the target's layers."""
    total = target.num_layers
    for layer in layers:
        if total and layer > total:
            raise InputError(file, "speculation.policy", f"exit layer {layer} > the target profile's {total} layers")
    return {int(layer): ScaledCost(target, layers=int(layer), head_rows=sc.draft.vocab) for layer in layers}


def build_round_cost(sc: Scenario, file: str | None, exits=()) -> RoundCost:
    """`exits`: early-exit layers a policy drafts at besides the scenario's (RoundCost.drafts)."""
    tgt = target_cost(sc, file)
    drf = draft_cost(sc, tgt, file)
    levels, nodes, verify_q = round_shape(sc)
    pl = sc.placement
    k = sc.draft.entry
    drafting = k is not None and drf is not None
    return RoundCost(
        link=round_link(sc, tgt, file, drafting),
        target=tgt,
        draft=drf,
        draft_prefill=drafting and k.prefills,
        parallel_devices=(pl.draft or pl.target) != pl.target,
        level_queries=levels,
        verify_queries=verify_q,
        depth_nodes=nodes,
        # a parallel drafter's one forward is its block: no step of it is the prompt's
        draft_reads_prompt=drafting and k.reads_prompt and not k.parallel,
        draft_catch_up=drafting and k.catch_up,
        drafts=exit_costs(sc, tgt, exits, file) if drafting and exits else {},
        padded=sc.serving.batch_layout == "padded",
    )


def kv_capacity(sc: Scenario, cost: RoundCost, file: str | None) -> int | None:
    """KV tokens per replica: given, or derived from device memory and model dimensions."""
    if sc.serving.kv_capacity_tokens is not None:
        return sc.serving.kv_capacity_tokens
    dev = sc.placement.devices[sc.placement.target]
    memory_gb = dev.memory_gb
    if memory_gb is None and sc.target.roofline:  # the device's own memory, per the catalog
        info = dev.info(sc.placement.target)
        memory_gb = info.memory_bytes / 1e9 if info is not None and info.memory_bytes else None
    if memory_gb is None:
        return None
    dims = sc.target.dims
    per_token = cost.target.kv_bytes_per_token
    weights = cost.target.weights_bytes or 0.0
    if dims is not None and not sc.target.roofline:  # the scenario's dims over a profile's
        per_token = 2 * dims.layers * dims.kv_heads * dims.head_dim * dims.dtype_bytes
        weights = dims.weights_gb * 1e9
    if not per_token:
        raise InputError(file, f"placement.devices.{sc.placement.target}.memory_gb",
                         "deriving KV capacity needs `target.dims` (or a profile with model dimensions)")
    same_device = (sc.placement.draft or sc.placement.target) == sc.placement.target
    k = sc.draft.entry
    if cost.draft is not None and same_device and k.separate_model:
        weights += cost.draft.weights_bytes or 0.0  # an early-exit view's weights are the target's
    elif cost.draft is not None and same_device and k.head:
        weights += _head_weights(sc, cost)
    free = memory_gb * 1e9 * sc.serving.kv_memory_fraction - weights
    if free <= 0:
        raise InputError(file, f"placement.devices.{sc.placement.target}.memory_gb",
                         f"the weights ({weights / 1e9:.2f} GB) leave no room for a KV cache")
    return int(free // per_token)


def _head_weights(sc: Scenario, cost: RoundCost) -> float:
    """Bytes a head adds beside the target: its own model's (dims or a profile), else n / L of
    the target's weights (its layers and their share of embedding and head; an EAGLE-3 head's
    fc and own draft-vocabulary head weigh a few hundred MB more, left out)."""
    if not sc.draft.from_target:
        return cost.draft.weights_bytes or 0.0
    total, weights = cost.target.num_layers, cost.target.weights_bytes
    if sc.target.dims is not None and not sc.target.roofline:
        total, weights = sc.target.dims.layers, sc.target.dims.weights_gb * 1e9
    return (weights or 0.0) * sc.draft.head_layers / total if total else 0.0
