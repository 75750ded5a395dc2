"""Files from users are data, never code: no unpickling, no eval, weights from safetensors or
GGUF only, and a study file cannot make `simspec study` write outside its run folder.

The source scan reads simspec/ as Python ASTs (comments and strings cannot trip it, aliases
such as `import numpy as np` or `from torch import load` cannot hide a call), and it is itself
tested on snippets holding each forbidden use, so it cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest

from fuzzhelpers import run_main
from simspec.errors import InputError

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "simspec"

# modules whose import alone is a way to unpickle (or unmarshal) file content
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
# calls that unpickle or evaluate, by their fully qualified name
FORBIDDEN_CALLS = {
    "torch.load": "torch.load unpickles",
    "torch.serialization.load": "torch.load unpickles",
    "torch.jit.load": "torch.jit.load unpickles",
    "joblib.load": "joblib.load unpickles",
    "pandas.read_pickle": "pandas.read_pickle unpickles",
    "pickle.load": "unpickles", "pickle.loads": "unpickles",
    "yaml.load": "yaml.load can build objects (use yaml.safe_load)",
    "yaml.unsafe_load": "yaml.unsafe_load builds objects",
    "eval": "eval runs code", "exec": "exec runs code", "builtins.eval": "eval runs code",
    "builtins.exec": "exec runs code", "compile": "compile builds code",
    "__import__": "a computed import",
}


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def scan_source(text: str, where: str = "<src>") -> list[str]:
    """Every forbidden use in one Python source, as 'where:line: what'."""
    tree = ast.parse(text, where)
    alias: dict[str, str] = {}  # local name -> fully qualified name
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}:{node.lineno}: import {a.name}")
                alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{where}:{node.lineno}: from {node.module} import ...")
            for a in node.names:
                alias[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        full = alias.get(head, head) + ("." + rest if rest else "")
        full = {"np": "numpy", "pd": "pandas"}.get(full.split(".")[0], full.split(".")[0]) + full[len(full.split(".")[0]):]
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if full in FORBIDDEN_CALLS:
            if full == "yaml.load" and "Loader" in kw and "Safe" in (_dotted(kw["Loader"]) or ""):
                continue
            found.append(f"{where}:{node.lineno}: {full}(...): {FORBIDDEN_CALLS[full]}")
        elif full == "numpy.load" or full.endswith(".read_pickle"):
            ap = kw.get("allow_pickle")
            if full.endswith(".read_pickle") or not (ap is None or (isinstance(ap, ast.Constant) and ap.value is False)):
                found.append(f"{where}:{node.lineno}: {full}(...) with pickles allowed")
        elif name.endswith(".from_pretrained") and "Tokenizer" not in name and "Config" not in name:
            safe = kw.get("use_safetensors")
            if "gguf_file" not in kw and not (isinstance(safe, ast.Constant) and safe.value is True):
                found.append(f"{where}:{node.lineno}: {name}(...) without use_safetensors=True or gguf_file")
        if "trust_remote_code" in kw and not (isinstance(kw["trust_remote_code"], ast.Constant)
                                              and kw["trust_remote_code"].value is False):
            found.append(f"{where}:{node.lineno}: {name}(..., trust_remote_code=...) runs the hub's code")
    return found


@pytest.mark.parametrize("snippet", [
    "import pickle\npickle.loads(b'')",
    "from pickle import load as l\nl(open('f', 'rb'))",
    "import torch\ntorch.load('w.pt')",
    "from torch import load\nload('w.pt')",
    "import torch as T\nT.load('w.pt', weights_only=True)",
    "import joblib\njoblib.load('m.joblib')",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
    "import numpy\nnumpy.load('a.npy', allow_pickle=flag)",
    "import pandas as pd\npd.read_pickle('f.pkl')",
    "df = x.read_pickle('f')",
    "eval(open('f').read())",
    "exec(text)",
    "import builtins\nbuiltins.exec(text)",
    "from transformers import AutoModelForCausalLM as M\nM.from_pretrained(path)",
    "AutoModelForCausalLM.from_pretrained(path, use_safetensors=False)",
    "AutoModel.from_pretrained(path, use_safetensors=True, trust_remote_code=True)",
    "import yaml\nyaml.load(text)",
])
def test_the_scan_finds_each_forbidden_use(snippet):
    assert scan_source(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import numpy as np\nnp.load('a.npy', allow_pickle=False)\nnp.load('b.npy')",
    "# torch.load('w.pt') in a comment\nx = 'eval(1)'",
    "AutoModelForCausalLM.from_pretrained(p, use_safetensors=True)",
    "AutoModelForCausalLM.from_pretrained(d, gguf_file=f)\nAutoTokenizer.from_pretrained(d)",
    "import json\njson.loads(s)\nmodel.eval()\nself._eval(x)",
])
def test_the_scan_lets_safe_code_through(snippet):
    assert scan_source(snippet) == [], snippet


def test_simspec_source_never_unpickles_or_evaluates_file_content():
    files = sorted(PKG.rglob("*.py"))
    assert len(files) > 50  # the whole package was read
    found = [f for p in files for f in scan_source(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))]
    assert found == [], "\n".join(found)


# -- model weights -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    pytest.importorskip("torch")
    from simspec.models import tiny_model

    d = tmp_path_factory.mktemp("models")
    lm = tiny_model("llama", layers=2)
    st = d / "safetensors"
    lm.model.save_pretrained(st)
    lm.tokenizer.save_pretrained(st)
    return lm, d, st


class _Payload:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_weights_are_refused_without_being_unpickled(tiny_dirs):
    from simspec.models.loader import load_model

    lm, d, _ = tiny_dirs
    bad = d / "pickled"
    bad.mkdir()
    lm.model.config.save_pretrained(bad)
    lm.tokenizer.save_pretrained(bad)
    marker = d / "UNPICKLED"
    with open(bad / "pytorch_model.bin", "wb") as f:
        pickle.dump({"model.embed_tokens.weight": _Payload(marker)}, f)
    with pytest.raises(InputError) as exc:
        load_model(str(bad))
    line = exc.value.line()
    assert str(bad) in line and "pytorch_model.bin" in line and "safetensors" in line and "\n" not in line
    assert not marker.exists()


def test_safetensors_weights_load(tiny_dirs):
    import torch

    from simspec.models.loader import load_model

    lm, _, st = tiny_dirs
    got = load_model(str(st))
    assert got.dims.layers == 2
    a, b = got.model.state_dict(), lm.model.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# -- study files cannot write outside the run folder ------------------------------------

STUDY = """
name = {name}
trials = 1
[scenario.target]
cost = {{ step_ms = 10.0 }}
[workload]
requests = 4
prompt_len = 16
output_len = 8
"""

BAD_NAMES = ["../../escaped", "../escaped", "..", ".", "a/b", "a\\b", "/ABSOLUTE", "x/../../escaped", "x\n/.."]


def _study(tmp: Path, name: str) -> Path:
    deep = tmp / "a" / "b" / "c"  # an escape from runs/ still lands inside tmp
    deep.mkdir(parents=True, exist_ok=True)
    p = deep / "s.toml"
    p.write_text(STUDY.format(name=json.dumps(name.replace("/ABSOLUTE", str(tmp / "absolute")))))
    return p


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}




@pytest.mark.parametrize("name", BAD_NAMES)
def test_study_name_with_a_path_is_refused(tmp_path, name):
    from simspec.study.spec import load_study

    p = _study(tmp_path, name)
    with pytest.raises(InputError) as exc:
        load_study(p)
    assert exc.value.file == str(p) and exc.value.key == "name" and "\n" not in exc.value.line()


@pytest.mark.parametrize("name", ["quick-start_2.v1", "A", "x" * 100])
def test_plain_study_names_are_accepted(tmp_path, name):
    from simspec.study.spec import load_study

    assert load_study(_study(tmp_path, name)).name == name


@pytest.mark.parametrize("name", ["../../escaped", "/ABSOLUTE"])
def test_simspec_study_refuses_a_name_that_leaves_runs(tmp_path, name):
    p = _study(tmp_path, name)
    before = _files(tmp_path)
    code, _, err = run_main("study", str(p), "--no-progress")
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {p}: name: ") and "Traceback" not in err
    assert _files(tmp_path) == before  # nothing written anywhere
