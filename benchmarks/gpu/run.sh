#!/usr/bin/env bash
# One shot on a borrowed CUDA machine (see README.md here): when packages are missing, install
# the carried wheels (benchmarks/gpu/wheels/, never an index), then run
# benchmarks/gpu/run.py OUT [--dry-run] [--budget-s S] [--device D] from the repository root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-python3}"
missing() {
  "$py" - <<'PY'
import importlib.util
need = ["torch", "transformers", "tokenizers", "numpy", "pandas", "pyarrow", "scipy", "simpy", "pydantic",
        "typer", "optuna", "gguf"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
}
gone="$(missing)"
if [ -n "$gone" ] && ls "$here"/wheels/*.whl >/dev/null 2>&1; then
  echo "installing the carried wheels for: $gone" >&2
  "$py" -m pip install -q --no-index --find-links "$here/wheels" "$here"/wheels/*.whl
  gone="$(missing)"
fi
if [ -n "$gone" ]; then
  echo "error: missing python packages: $gone (carry their wheels in benchmarks/gpu/wheels/, see README.md)" >&2
  exit 2
fi
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$py" "$here/run.py" "$@"
