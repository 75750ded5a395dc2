"""JSON that every parser reads: a figure that is not finite (a TPOT with no multi-token
request, a cost per token of a run that made none) is written as null, never as the `NaN` /
`Infinity` Python's json module emits by default and strict parsers refuse."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """`obj` with every non-finite float (numpy's too) replaced by None, recursively."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):  # a numpy scalar
        return finite(obj.item())
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """json.dumps of `finite(obj)`; refuses (ValueError) anything left that is not JSON."""
    return json.dumps(finite(obj), allow_nan=False, **kw)
