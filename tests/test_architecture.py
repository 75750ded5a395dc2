"""The house rules, checked on the source: no import cycles (function-level imports count),
the flow runs one way, the simulator and the study import no torch, and each drafter kind's
name is spelled in few places (everything else asks `simspec.drafters`)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "simspec"


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """simspec module -> the simspec modules it imports anywhere (top level or in a function)."""
    graph: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {_resolve(a.name) for a in node.names if a.name.startswith("simspec")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simspec"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    deps.add(_resolve(full) if full in MODULES else _resolve(node.module))
        deps.discard(None)
        deps.discard(mod)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles (function-level imports included): {found}"


def private_uses(source: str) -> list[str]:
    """Private names (`_x`) one module takes from another simspec module: imported by name
    (`from simspec.m import _x`) or read off an imported module (`m._x`)."""
    tree = ast.parse(source)
    mods: set[str] = set()
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simspec"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    out.append(f"{node.module}.{a.name}")
                elif f"{node.module}.{a.name}" in MODULES:
                    mods.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            mods |= {a.asname for a in node.names if a.name.startswith("simspec") and a.asname}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in mods
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.append(f"{node.value.id}.{node.attr}")
    return out


def test_private_use_finder_finds_planted_ones():
    src = "from simspec.config.scenario import _x, Scenario\nfrom simspec.study import space\nspace._probe(1)\n"
    assert private_uses(src) == ["simspec.config.scenario._x", "space._probe"]
    assert private_uses("from simspec.study import space\nspace.probe(1)\n") == []


def test_no_module_takes_another_modules_private_names():
    """A name another module needs is public in its own module (the schema toolkit, the
    error translation): nothing imports `_private` helpers across modules."""
    files = [*ROOT.rglob("*.py"), *(ROOT.parent / "benchmarks").rglob("*.py")]
    bad = {str(p.relative_to(ROOT.parent)): u for p in files if (u := private_uses(p.read_text()))}
    assert not bad, bad


# Upstream stages never import downstream ones (DESIGN.md's flow).
DOWNSTREAM = {
    "simspec.sim": ("simspec.study", "simspec.live", "simspec.validation", "simspec.report", "simspec.models",
                    "simspec.profile.capture", "simspec.trace.capture", "simspec.commands"),
    "simspec.study": ("simspec.live", "simspec.validation", "simspec.report", "simspec.models", "simspec.commands"),
    "simspec.profile": ("simspec.study", "simspec.sim", "simspec.live", "simspec.validation", "simspec.report"),
    "simspec.trace": ("simspec.study", "simspec.sim", "simspec.live", "simspec.validation", "simspec.report"),
    "simspec.validation": ("simspec.report", "simspec.commands"),
    "simspec.drafters": ("simspec.",),
    "simspec.tree_shape": ("simspec.",),
    "simspec.limits": ("simspec.",),
}
LEAVES = ("simspec.errors", "simspec.limits")  # imported anywhere: they import no other stage


@pytest.mark.parametrize("stage", sorted(DOWNSTREAM))
def test_flow_runs_one_way(stage):
    graph = import_graph()
    bad = sorted(
        (m, d) for m, deps in graph.items() if m == stage or m.startswith(stage + ".")
        for d in deps if any(d.startswith(x) for x in DOWNSTREAM[stage]) and d not in LEAVES
    )
    assert not bad, f"{stage} imports downstream modules: {bad}"


def test_sim_and_study_import_no_torch():
    mods = [m for m in MODULES if m.startswith(("simspec.sim", "simspec.study"))]
    mods += ["simspec.drafters", "simspec.tree_shape", "simspec.limits", "simspec.config", "simspec.analytic",
             "simspec.trace.oracle", "simspec.trace.summary", "simspec.validation.plan", "simspec.cli"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in mods) + \
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\nprint(','.join(bad))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"importing sim/ and study/ pulled in {r.stdout.strip()}"


@pytest.mark.parametrize("literal", ['"early_exit"', '"ngram"'])
def test_a_kind_name_is_spelled_in_at_most_three_files(literal):
    files = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if literal in p.read_text())
    assert 1 <= len(files) <= 3, f"{literal} appears in {files}"


def test_no_file_reimplements_the_kind_table():
    """The old per-file tables of kinds (a dict or tuple listing them) are gone."""
    pattern = re.compile(r"""["']model["']\s*,\s*["']early_exit["']""")
    files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
             if p.name != "drafters.py" and pattern.search(p.read_text())]
    assert files == [], files
