"""Drafter kinds: one table entry per way of proposing draft tokens, read by every stage.

Scenario files, trace replay, the simulator's round costs, the study's knobs, the engine
exports, the live engine and validation plans all ask this table what a kind is, instead of
each spelling the kinds out. Adding a drafter is one `register(Kind(...))` plus its live
drafter (`live`) and, when it needs no model, its replay rule (`replay`); nothing else.
Torch-free: `live` and `replay` are "module:function" strings resolved only when used.

Spec strings (the `--draft` flag, a validation plan's `draft`): `none`, or `<kind>` followed
by `:<arg>` as the kind's `arg` says: a model name, an exit layer, an n-gram size.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable

from simspec.errors import InputError

NONE = "none"


@dataclass(frozen=True)
class Kind:
    """What one drafter kind is, for every stage that has to treat kinds differently."""

    name: str
    label: str                       # its word in validation labels ("draft", "exit", ...)
    title: str = ""                  # what it is, in messages ("n-gram lookup")
    arg: str | None = None           # "model" (a model name), "layer" (exit layer) or "n" (an int)
    default_n: int | None = None     # arg "n": the value `<kind>` alone means
    separate_model: bool = False     # own weights and KV cache: own cost, prefills the prompt,
                                     # catches up after a fully accepted round
    target_layers: bool = False      # the target's own first l layers: runs on its device, costs
                                     # l of its layers, shares its KV cache
    model_free: bool = False         # no forward pass: drafting costs nothing
    trees: bool = True               # can propose a token tree (top-k children per node)
    trims_head: bool = False         # a trimmed LM head (`vocab = K`) applies
    crosses: str = "tokens"          # what a round sends between drafter and target devices:
                                     # "tokens" (draft and verified ids) or "hidden" (also the
                                     # target's hidden states, as EAGLE-like drafters read them)
    column_prefix: str | None = None  # rank columns of a `layer` kind: <prefix><l>, e.g. exit26
    head_layers: int = 0             # a head over the target's hidden states (EAGLE, MTP): this many
                                     # decoder layers at the target's dims unless [draft] gives its
                                     # own (`layers`, `dims`, `model`); it prefills the prompt too
    in_target: bool = False          # its weights ship in the target's checkpoint (MTP layers):
                                     # engine exports name no drafter model
    parallel: bool = False           # ONE forward of gamma query tokens proposes all gamma tokens
                                     # (DFlash, DiffuSpec, DEER), not gamma sequential steps
    traced: bool = True              # `simspec trace` records it here; else acceptance is given
                                     # (`per_position`, `iid`, imported from an engine's counters)
    vllm_method: str | None = None   # vLLM `speculative_config.method`, None: vLLM lacks it
    sglang_algorithm: str | None = None  # SGLang `--speculative-algorithm`, None: SGLang lacks it
    trtllm_decoding_type: str | None = None  # TensorRT-LLM `speculative_config.decoding_type`, None: it lacks it
    live: str | Callable | None = None    # make(target, spec, kv, draft, rows) -> live Drafter
    replay: str | Callable | None = None  # model-free: accepts(prompt, tokens, n) -> int[len(tokens)]
    proposes: str | Callable | None = None  # with `replay`: proposed(prompt, tokens, n) -> int[len(tokens)],
                                          # the tokens the rule finds at each position (a live engine
                                          # verifies only those: a short find is a cheaper round)
    oracle: str | Callable | None = None  # model-free, a draft length of its own per round: (scenario,
                                          # trace, depth, rng, file) -> a dynamic oracle (simspec.policies)
    runs: str | Callable | None = None    # with `oracle`: trace -> accepted count at every traced position
                                          # at its default settings (trace summaries, export rates)

    # -- what follows from the flags ---------------------------------------------------
    @property
    def head(self) -> bool:
        """A head over the target's hidden states: priced as its layers (+ an LM head)."""
        return self.head_layers > 0

    @property
    def prefills(self) -> bool:
        """Weights and a KV cache of its own that the prompt must fill (a model, a head)."""
        return self.separate_model or self.head

    @property
    def own_checkpoint(self) -> bool:
        """An engine loads its weights from a path of their own (a draft model, an EAGLE head)."""
        return self.separate_model or (self.head and not self.in_target)

    @property
    def reads_prompt(self) -> bool:
        """A first round that carries the prompt: the kind's first draft step reads it."""
        return self.separate_model or self.target_layers or self.head

    @property
    def catch_up(self) -> bool:
        return self.separate_model

    @property
    def form(self) -> str:
        """The spec string's shape, for error messages."""
        return {None: self.name, "model": f"{self.name}:NAME", "layer": f"{self.name}:L",
                "n": f"{self.name}[:N]"}[self.arg]

    def live_factory(self) -> Callable:
        return resolve_ref(self.live, f"drafter kind {self.name!r}", "live")

    def check_live(self, file: str | None, key: str) -> None:
        """A live run of a kind simspec cannot run here: one line naming the file (or flag)."""
        if self.live is None:
            raise InputError(file, key, f"{self.name!r} ({self.title or self.name}) has no live drafter in simspec "
                                        "(no weights to run here): simulate it with `acceptance.per_position` instead")

    def replay_fn(self) -> Callable:
        return resolve_ref(self.replay, f"drafter kind {self.name!r}", "replay")

    def proposes_fn(self) -> Callable:
        return resolve_ref(self.proposes, f"drafter kind {self.name!r}", "proposes")

    def oracle_fn(self) -> Callable:
        return resolve_ref(self.oracle, f"drafter kind {self.name!r}", "oracle")

    def runs_fn(self) -> Callable:
        return resolve_ref(self.runs, f"drafter kind {self.name!r}", "runs")

    @property
    def replayed(self) -> bool:
        """Acceptance computed from the traced tokens themselves (no rank column)."""
        return self.replay is not None or self.oracle is not None

    # -- trace columns ------------------------------------------------------------------
    def column(self, arg: Any, vocab: int | None = None) -> str:
        """The trace column whose acceptance this kind with `arg` replays."""
        if self.arg == "layer":
            base = f"{self.column_prefix}{arg}"
        elif self.arg == "n":
            base = f"{self.name}:{arg}"
        else:
            base = str(arg) if arg else self.name
        return f"{base}/k{vocab}" if vocab and self.trims_head else base

    def column_arg(self, base: str) -> str | None:
        """The arg a column (without /kK) stands for when it is this kind's, else None."""
        if self.arg == "layer" and self.column_prefix:
            m = re.fullmatch(re.escape(self.column_prefix) + r"(\d+)", base)
            return m.group(1) if m else None
        if self.replayed:
            if base == self.name:
                return str(self.default_n) if self.arg == "n" else ""
            if self.arg == "n" and base.startswith(self.name + ":"):
                return base.split(":", 1)[1]
        return None


def resolve_ref(ref: str | Callable | None, owner: str, what: str) -> Callable:
    """A registry entry's function: given, or "module:function" imported on first use (the
    registries stay torch-free)."""
    if ref is None:
        raise NotImplementedError(f"{owner} has no {what} implementation")
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add (or replace) a kind. Order matters only for messages: kinds list as registered."""
    KINDS[kind.name] = kind
    return kind


register(Kind(
    "model", "draft", "a draft model", arg="model", separate_model=True, trims_head=True,
    vllm_method="draft_model", sglang_algorithm="STANDALONE", trtllm_decoding_type="Draft_Target",
    live="simspec.live.drafters:make_model_drafter",
))
register(Kind(
    "early_exit", "exit", "early exit", arg="layer", target_layers=True, trims_head=True, column_prefix="exit",
    live="simspec.live.drafters:make_early_exit_drafter",
))
# Prompt lookup, as transformers' PromptLookupCandidateGenerator (and vLLM's ngram method):
# match the trailing n-gram, n = N..1. N = 3 in trace replay and in the live engine alike.
register(Kind(
    "ngram", "ngram", "n-gram lookup", arg="n", default_n=3, model_free=True, trees=False,
    vllm_method="ngram", sglang_algorithm="NGRAM", trtllm_decoding_type="NGram",
    live="simspec.live.drafters:make_ngram_drafter", replay="simspec.trace.ngram:lookup_accepts",
    proposes="simspec.trace.ngram:lookup_proposed",
))

# SuffixDecoding (vLLM `method = "suffix"`, Arctic Inference): suffix trees over the request's
# prompt + output and over earlier requests' outputs; a draft length of its own each round
# (simspec.trace.suffix). Its four parameters are [draft] keys named as vLLM names them.
register(Kind(
    "suffix", "suffix", "suffix decoding", model_free=True, trees=False, vllm_method="suffix",
    live="simspec.live.suffix:make_suffix_drafter", oracle="simspec.trace.suffix_oracle:load",
    runs="simspec.trace.suffix_oracle:accepted_runs",
))


# Heads over the target's hidden states and one-pass parallel drafters: no weights run here, so
# no trace and no live drafter; acceptance is given per position (a paper's curve, an engine's
# counters) and the cost comes from dims (the target's profile or roofline, or [draft] dims).
# EAGLE-3: one decoder layer over the target's (fused) hidden states + an LM head of its own
# over a reduced draft vocabulary (`[draft] vocab`, 32k in the released heads).
register(Kind(
    "eagle3", "eagle3", "an EAGLE-3 head", head_layers=1, trims_head=True, crosses="hidden",
    vllm_method="eagle3", sglang_algorithm="EAGLE3", trtllm_decoding_type="Eagle3", traced=False,
))
# MTP: one extra decoder layer of the target's checkpoint + the target's own LM head (all its
# rows: no `vocab`); engines chain it (vLLM and SGLang reuse the one layer for every draft
# step): no trees.
register(Kind(
    "mtp", "mtp", "an MTP layer", head_layers=1, in_target=True, trees=False,
    crosses="hidden", vllm_method="mtp", sglang_algorithm="NEXTN", trtllm_decoding_type="MTP", traced=False,
))
# A parallel (block) drafter: all gamma draft tokens from ONE forward of gamma query tokens
# over the target's hidden states (DFlash; DiffuSpec and DEER draft a block alike).
register(Kind(
    "parallel", "parallel", "a parallel (one-pass block) drafter", head_layers=1, parallel=True, trees=False,
    crosses="hidden", vllm_method="dflash", sglang_algorithm="DFLASH", traced=False,
))


def names(with_none: bool = True) -> list[str]:
    return ([NONE] if with_none else []) + list(KINDS)


def choices_text(with_none: bool = True) -> str:
    """'none', 'model', 'early_exit' or 'ngram' (pydantic's Literal wording)."""
    q = [repr(n) for n in names(with_none)]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " or " + q[-1]


def check_name(name: str, with_none: bool = True) -> str:
    """For pydantic validators: the name, or a ValueError in pydantic's Literal wording."""
    if name in KINDS or (with_none and name == NONE):
        return name
    raise ValueError(f"Input should be {choices_text(with_none)}")


def get(name: str) -> Kind:
    return KINDS[name]


def kind_of(name: str | None) -> Kind | None:
    """The entry of a kind name; None for 'none' (no drafter)."""
    return None if name in (None, NONE) else KINDS[name]


def layer_kind() -> Kind:
    """The kind that exits the target early (its trace columns are <prefix><l>)."""
    return next(k for k in KINDS.values() if k.arg == "layer")


def of_column(base: str) -> tuple[Kind, str] | None:
    """The kind (and its arg) a trace column without /kK belongs to: a model-free kind's own
    name, a layer kind's <prefix><l>, else a separate model's name (the catch-all)."""
    for k in KINDS.values():
        arg = k.column_arg(base)
        if arg is not None:
            return k, arg
    models = [k for k in KINDS.values() if k.separate_model]
    return (models[0], base) if models else None


@dataclass(frozen=True)
class DraftSpec:
    """A parsed spec string: `none` or `<kind>[:arg]`."""

    kind: str
    arg: str = ""

    @classmethod
    def parse(cls, text: str) -> "DraftSpec":
        name, _, arg = text.partition(":")
        if name == NONE and not arg:
            return cls(NONE)
        k = KINDS.get(name)
        if k is not None:
            if k.arg is None and not arg:
                return cls(name)
            if k.arg == "model" and arg:
                return cls(name, arg)
            if k.arg == "layer" and arg.isdigit():
                return cls(name, str(int(arg)))
            if k.arg == "n" and (not arg or arg.isdigit()):
                return cls(name, str(int(arg) if arg else k.default_n))
        forms = [NONE] + [x.form for x in KINDS.values()]
        raise InputError(None, "--draft", f"{text!r} is not {', '.join(forms[:-1])} or {forms[-1]}")

    @property
    def entry(self) -> Kind | None:
        return kind_of(self.kind)

    @property
    def model(self) -> str:
        """A separate drafter's model name ('' for other kinds)."""
        k = self.entry
        return self.arg if k is not None and k.arg == "model" else ""

    @property
    def layers(self) -> int:
        """An early exit's layer count (0 for other kinds)."""
        k = self.entry
        return int(self.arg) if k is not None and k.arg == "layer" else 0

    @property
    def n(self) -> int:
        k = self.entry
        return int(self.arg) if k is not None and k.arg == "n" else 0

    def column(self, vocab: int | None = None) -> str | None:
        """The trace column replaying this drafter (None: no drafter)."""
        k = self.entry
        return None if k is None else k.column(self.arg, vocab)

    def __str__(self) -> str:
        return self.kind + (f":{self.arg}" if self.arg else "")
