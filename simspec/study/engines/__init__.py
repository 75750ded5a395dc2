"""Engine exports: the study's answer as files today's vLLM, SGLang and TensorRT-LLM accept.

  versions.py   which keys/flags each engine version has, with the source of each
  answer.py     the per-batch answer one engine can run (drafter, schedule or one K)
  synthetic.py  per-position acceptance of the exported drafter; the synthetic-acceptance
                configs and the throughput/TPOT to expect under them (`simspec predict`)
  vllm.py, sglang.py, trtllm.py   one builder per engine: `build(ctx, version) -> EngineExport`

Every builder writes only keys its version has (versions.check) and says in its notes what
it could not express. simspec.study.export runs them and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from simspec.study.engines.answer import Answer


@dataclass
class Context:
    """What every engine builder reads: the best knobs and the answer for its drafter."""

    best: dict[str, Any]             # the best trial's knobs
    answer: Answer
    drafter: Any                     # the study's DrafterSpec of answer.kind (None: none given)
    rates: list[float] | None = None  # conditional per-position acceptance of answer.kind, len max_k
    rates_source: str = ""
    hot_ids: list[int] | None = None  # the trimmed head's token ids, when a trimmed vocabulary wins
    hot_ids_source: str = ""

    @property
    def trimmed(self) -> int | None:
        """The trimmed head size K the study chose for the exported drafter, else None."""
        k = self.best.get("vocab")
        ds = self.drafter
        if k is None or self.answer.kind != self.answer.wanted or self.answer.fell_back:
            return None
        full = getattr(ds, "vocab_size", None)
        return int(k) if full is None or int(k) < int(full) else None


@dataclass
class EngineExport:
    engine: str
    version: str
    files: dict[str, str] = field(default_factory=dict)  # name -> text, in the order to write
    main: str = ""                                       # the server config's file name
    notes: list[str] = field(default_factory=list)
    k_at: Callable[[int], int] | None = None             # K the config runs at a batch (None: off)
    synthetic: str | None = None                          # the synthetic-acceptance file, if any
    config: Any = None                                   # the main config as data (JSON dict / flags)


def head_vocab_note(title: str, kind: str, k: int) -> str:
    """A head's draft vocabulary is in its checkpoint (EAGLE-3's d2t map), not an engine flag."""
    return (f"{title}: the {kind} head's draft vocabulary is its checkpoint's own (EAGLE-3's d2t map), "
            f"no engine option: use a head trained with K = {k} rows.")
