"""simspec.report: one self-contained HTML page per study run and per validation, the flow
(study/ and validation/ never import report/), and the atomic writes every writer shares."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from studyhelpers import REPO, simspec, small_study


def assert_self_contained(page: str) -> None:
    """Every src= is an embedded PNG; no link, script, stylesheet or URL points elsewhere."""
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"https?://|<link|<script|\bhref=|url\(", page)


def embedded(page: str) -> list[bytes]:
    return [base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_study_run_folder_gets_report_html_embedding_every_figure(tmp_path):
    out = tmp_path / "run"
    r = simspec("study", str(small_study(tmp_path, trials=6)), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    page = (out / "report.html").read_text()
    assert_self_contained(page)
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} == {"history.png", "importances.png", "pareto.png", "gamma_vs_batch.png"}
    assert sorted(embedded(page)) == sorted(p.read_bytes() for p in pngs)  # each figure, as written
    assert "<h2>Best configuration" in page and "<table>" in page and "<td>throughput_tok_s</td>" in page
    summary = (out / "summary.md").read_text()
    assert summary.endswith("- summary.md\n- report.html\n")
    assert not list(out.glob("*.tmp*"))  # no temporary left behind


def shipped_validation():
    from simspec.validation.compare import agreement, error_table
    from simspec.validation.plan import load_plan
    from simspec.validation.run import Validation

    base = REPO / "studies" / "validation"
    meta = json.loads((base / "qwen1.5b-humaneval.json").read_text())
    df = error_table([{k: v for k, v in r.items() if k != "error_pct"} for r in meta["rows"]])
    return Validation(load_plan(base / "qwen1.5b-humaneval.toml"), df, agreement(df), meta, [])


def test_validation_page_beside_the_table(tmp_path):
    from simspec.report.validation import write

    v = shipped_validation()
    png, page = write(v, tmp_path)
    assert (png, page) == (tmp_path / "qwen1.5b-humaneval.png", tmp_path / "qwen1.5b-humaneval.html")
    text = page.read_text()
    assert_self_contained(text)
    assert embedded(text) == [png.read_bytes()]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert text.count("<tr>") == 1 + len(v.table)  # header + one row per config
    assert f"{v.agreement.median_abs_error_pct:.1f}%" in text and "Spearman" in text
    assert v.meta["inputs"]["trace"]["sha256"][:12] in text


def test_markdown_tables_code_and_escaping():
    from simspec.report.html import markdown

    got = markdown("# T <x>\n\n- a `b<c>`\n\n| k | v |\n|---|---|\n| **g** | 1 |\n\n```json\n{\"a\": \"<b>\"}\n```\ntext | here\n")
    assert "<h1>T &lt;x&gt;</h1>" in got and "<li>a <code>b&lt;c&gt;</code></li>" in got
    assert "<tr><th>k</th><th>v</th></tr>" in got and "<tr><td><strong>g</strong></td><td>1</td></tr>" in got
    assert '<pre><code>{"a": "&lt;b&gt;"}</code></pre>' in got and "<p>text | here</p>" in got


def test_study_and_validation_never_import_report_torch_or_matplotlib():
    pkgs = ("study", "validation")
    mods = [f"simspec.{pkg}.{p.stem}" for pkg in pkgs for p in sorted((REPO / "simspec" / pkg).glob("*.py"))]
    code = ("import sys, importlib\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "bad = [m for m in sys.modules if m.startswith(('simspec.report', 'torch', 'matplotlib'))]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    lazy = re.compile(r"^\s*(from simspec\.report\b|from simspec import .*\breport\b|import simspec\.report\b)", re.M)
    for pkg in pkgs:  # nor lazily, inside a function
        for p in (REPO / "simspec" / pkg).glob("*.py"):
            assert not lazy.search(p.read_text()), p


def test_atomic_writes(tmp_path):
    from simspec.atomic import temp_path, write_text, write_via

    p = write_text(tmp_path / "a" / "x.json", "1\n")
    assert p.read_text() == "1\n"
    assert temp_path(tmp_path / "t.parquet").name == "t.tmp.parquet"  # the suffix writers infer formats from

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_via(p, boom)
    assert p.read_text() == "1\n" and sorted(x.name for x in p.parent.iterdir()) == ["x.json"]

    write_via(tmp_path / "t.parquet", lambda tmp: pd.DataFrame({"a": [1]}).to_parquet(tmp))
    assert pd.read_parquet(tmp_path / "t.parquet")["a"].tolist() == [1]

    def folder(n: int):
        def make(tmp: Path) -> None:
            tmp.mkdir()
            (tmp / f"f{n}").write_text(str(n))
        return make

    d = tmp_path / "model"
    write_via(d, folder(1))
    write_via(d, folder(2))  # a folder replaces the folder whole
    assert [x.name for x in d.iterdir()] == ["f2"] and sorted(x.name for x in tmp_path.iterdir()) == ["a", "model", "t.parquet"]


def test_summary_labels_roofline_figures_as_estimates():
    from simspec.report.study import cost_source

    assert cost_source({"throughput_tok_s": 1.0}) == ""  # profiles / synthetic costs: nothing to say
    line = cost_source({"target_estimate": 1.0, "draft_estimate": 0.0})
    assert "target roofline ESTIMATE" in line and "draft roofline fitted to a measured profile" in line
    assert "draft not a roofline" in cost_source({"target_estimate": 1.0})
