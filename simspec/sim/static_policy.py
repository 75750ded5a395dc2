"""Static policies (simspec.policies, `dynamic=False`): a policy that picks ONE shape before the
run, e.g. the tree a node budget buys (simspec.sim.budget_tree).

`resolved(sc, file)` is the scenario with that shape written in: the policy table gone and
`speculation.tree` (a chain: `draft_len`) set to the shape it chose. It is applied once where
a scenario is simulated (simspec.sim.run.simulate, a study's trial) so that the simulator,
the results (`tree`), best.toml and the engine exports all see the very scenario an explicit
`tree = [...]` would give: a resolved policy replays, runs live and exports exactly as that.
"""

from __future__ import annotations

from simspec.config import Scenario


def is_static(sc: Scenario) -> bool:
    """The scenario names a static policy not resolved yet."""
    pol = sc.speculation.policy
    return pol is not None and not pol.entry.dynamic


def resolved(sc: Scenario, file: str | None = None) -> Scenario:
    """`sc` with its static policy's shape in place of the policy (unchanged without one)."""
    if not is_static(sc):
        return sc
    return with_shape(sc, sc.speculation.policy.entry.fn("resolve")(sc, file), file)


def with_shape(sc: Scenario, branching, file: str | None = None) -> Scenario:
    """`sc` without its policy, drafting the tree `branching` (a chain when every level has one
    child), written as a study's explicit tree point writes it (draft_len = its depth): the
    same scenario an explicit `tree = [...]` gives."""
    b = [int(c) for c in branching]
    shape = {"draft_len": len(b), "tree": b if any(c > 1 for c in b) else None}
    return sc.with_({"speculation": {"policy": None}}, {"speculation": shape}, file=file or "<scenario>")
