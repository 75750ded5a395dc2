"""A nestable switch back to stock kernels, for the duration of a with-block.

simspec swaps some of transformers' kernels for faster ones (gemv.py: one-row linears,
gqa.py: attention without repeated keys/values); benchmarks and tests need the stock ones back
for a while. Each swap owns one switch: `with switch(): ...` turns it on, `bool(switch)` says
whether it is on.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


class StockSwitch:
    def __init__(self) -> None:
        self._depth = 0  # > 0 inside `with switch():`

    def __bool__(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
