"""The `--draft` argument of `simspec run` and the `draft` key of a validation plan.

Torch-free, so a plan can be checked before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from simspec.errors import InputError


@dataclass(frozen=True)
class DraftSpec:
    kind: str  # none | model | early_exit | ngram
    model: str = ""  # model:NAME
    layers: int = 0  # early_exit:L
    n: int = 3  # ngram:N

    @classmethod
    def parse(cls, text: str) -> "DraftSpec":
        kind, _, arg = text.partition(":")
        if kind == "none" and not arg:
            return cls("none")
        if kind == "model" and arg:
            return cls("model", model=arg)
        if kind == "early_exit" and arg.isdigit():
            return cls("early_exit", layers=int(arg))
        if kind == "ngram" and (not arg or arg.isdigit()):
            return cls("ngram", n=int(arg) if arg else 3)
        raise InputError(None, "--draft", f"{text!r} is not none, model:NAME, early_exit:L or ngram[:N]")

    def __str__(self) -> str:
        return {"none": "none", "model": f"model:{self.model}", "early_exit": f"early_exit:{self.layers}",
                "ngram": f"ngram:{self.n}"}[self.kind]
