"""Which config keys and server flags exist in which engine version, and where we read that.

One row per key: the first version that has it (`since`), the first that no longer does
(`until`), the source checked, and what could not be confirmed. An exporter asks
`allowed(engine, version)` and writes nothing outside it (tests hold every export to it).

How the rows were checked (no engine is installed here): the engines' source files as stored
by the project's code index (commits named below), their PR threads and release notes. Where
only a merge date was found, the release named is the first one dated after the merge; each
such row says "inferred". Versions between two listed ones behave like the older listed one.
"""

from __future__ import annotations

from dataclasses import dataclass

from simspec.errors import InputError


@dataclass(frozen=True)
class Key:
    name: str
    since: str | None = None   # None: present in every listed version
    until: str | None = None   # None: still present in the newest listed version
    source: str = ""
    unconfirmed: str = ""      # what the source did not settle ("" = read in the source itself)
    values: tuple[str, ...] = ()  # the values simspec may give it, when it takes a name
    written: bool = True       # False: accepted by the engine but never written by simspec
    value_since: tuple[tuple[str, str], ...] = ()  # (value, first version with it): newer values


@dataclass(frozen=True)
class Engine:
    name: str
    title: str
    versions: tuple[str, ...]  # oldest first; the last is the default (`--engine-version`)
    keys: tuple[Key, ...]

    @property
    def newest(self) -> str:
        return self.versions[-1]


# vLLM `--speculative-config` JSON (vllm/config/speculative.py, SpeculativeConfig; unknown
# fields are rejected there). Stored snapshots read: main @ f19b16d9 (early 2026: still has
# disable_by_batch_size and speculative_token_tree, no schedule, no rejection_sample_method)
# and main @ 002e77c1 (neither of the two; has the schedule and the synthetic sampler).
_VLLM_BOTH = "vllm/config/speculative.py @ f19b16d9 and @ 002e77c1"
_SUFFIX_SINCE = "0.12.0"
_SUFFIX_SRC = ("PR #25784 (vllm/v1/spec_decode/suffix_decoding.py, SuffixDecodingProposer over Arctic Inference's "
               "SuffixDecodingCache); vllm/config/speculative.py @ 044ac3a0; vllm-ascend PRs #5009 and #5042 and "
               "RBLN-SW/vllm-rbln issue #324 name it in vLLM v0.12.0")
_SUFFIX_UNCONFIRMED = ("inferred: merged after v0.11.0; 0.11.1 may have it: simspec exports it from 0.12.0, the first "
                       "release seen with it")
VLLM = Engine("vllm", "vLLM", ("0.11.0", "0.21.0", "0.24.0", "0.28.0"), (
    # "eagle3" and "mtp" in SpeculativeMethod @ f19b16d9 and @ 002e77c1 (MTPModelTypes: the
    # model-specific *_mtp names are deprecated aliases of "mtp"). "dflash" (DFlashModelTypes)
    # only @ 002e77c1 (earlier DFlash PRs #32206 and #34014 closed unmerged; vllm-ascend PR
    # #7162 builds on vLLM PR #36764, and #7307, 2026-03-16 on v0.19.0, calls it upstream).
    Key("method", source=_VLLM_BOTH + "; SpeculativeMethod in the v0.11.0 API docs",
        values=("ngram", "draft_model", "eagle", "eagle3", "mtp", "medusa", "mlp_speculator", "dflash", "suffix"),
        value_since=(("dflash", "0.21.0"), ("suffix", _SUFFIX_SINCE)),
        unconfirmed="dflash: inferred: absent @ f19b16d9, present @ 002e77c1; 0.21.0 is the first listed "
                    "version surely after the merge (0.19/0.20 may have it: simspec exports it from 0.21.0); "
                    "suffix: as the suffix_decoding_* rows"),
    Key("model", source=_VLLM_BOTH),
    Key("num_speculative_tokens", source=_VLLM_BOTH + " (gt=0: a schedule's K=0 goes in the schedule)"),
    Key("draft_tensor_parallel_size", source=_VLLM_BOTH + " (1 or the target's TP)"),
    Key("prompt_lookup_min", source=_VLLM_BOTH),
    Key("prompt_lookup_max", source=_VLLM_BOTH),
    # A no-op since v0.10.0 (V0 engine removed), deleted by PR #35060 (merged Feb 2026): simspec
    # never writes it, in any version, since it would promise a cut-off that does not happen.
    Key("disable_by_batch_size", until="0.17.0", written=False,
        source="PR #35060 (its description: unused since v0.10.0); present @ f19b16d9, absent @ 002e77c1",
        unconfirmed="inferred: 0.17.0 as the first release after the merge (weekly summary of 2026-02-27)"),
    Key("speculative_token_tree", until="0.21.0",
        source="added with the V1 tree attention, PR #20401 (Jul 2025); present @ f19b16d9, absent @ 002e77c1; "
               "the issue names PR #42121 (tree attention removed, merged 2026-05-08)",
        unconfirmed="inferred: 0.11.0 having it (from the PR date) and 0.21.0 (tagged ~2026-05-23) lacking it; "
                    "the file list of #42121 we found shows the backend deleted, not the config field"),
    Key("num_speculative_tokens_per_batch_size", since="0.24.0",
        source="PR #32374 'Add Dynamic SD', listed in the v0.24.0 release notes (2026-07-10); "
               "list of inclusive (start, end, K) @ 002e77c1"),
    Key("rejection_sample_method", since="0.21.0",
        source="PR #38045 (synthetic sampler, Mar 2026); Literal standard|synthetic|block @ 002e77c1",
        unconfirmed="inferred: first release dated after PR #40662 (merged 2026-04-24) taken as 0.21.0"),
    # SuffixDecoding (method "suffix"): PR #25784 "Integrate Suffix Decoding from Arctic Inference"
    # (opened 2025-09-26, benchmarks attached late Oct 2025, after v0.11.0 of 2025-10-02). The four
    # keys, defaults 24 / 10000 / 1.0 / 0.1 and checks (depth >= 1, cached >= 0, factor >= 0,
    # prob in [0, 1]) in SpeculativeConfig._validate_suffix_decoding, vllm/config/speculative.py.
    *(Key(name, since=_SUFFIX_SINCE, source=_SUFFIX_SRC, unconfirmed=_SUFFIX_UNCONFIRMED)
      for name in ("suffix_decoding_max_tree_depth", "suffix_decoding_max_cached_requests",
                   "suffix_decoding_max_spec_factor", "suffix_decoding_min_token_prob")),
    Key("synthetic_acceptance_rates", since="0.21.0",
        source="PR #40662 (per-position unconditional rates, merged 2026-04-24); validation @ 002e77c1: "
               "length num_speculative_tokens, each in [0, 1], non-increasing",
        unconfirmed="inferred: 0.21.0 as the first release after the merge"),
))

# SGLang server flags (python/sglang/srt/server_args.py, speculative section, read in a stored
# snapshot of main) and the adaptive config (srt/speculative/adaptive_spec_params.py @ 015c8726).
_SGL_ARGS = "python/sglang/srt/server_args.py (speculative section, stored main snapshot)"
SGLANG = Engine("sglang", "SGLang", ("0.5.10", "0.5.16"), (
    # NEXTN is SGLang's MTP (DeepSeek's next-n layers; converted to EAGLE internally, drafts a
    # chain of the one layer). DFLASH: PR #16999 (Jan 2026, closed), then the DFLASH worker;
    # PR #23000 (spec-v2 DFlash, merged 2026-04-16) extends a DFLASH already on main.
    Key("--speculative-algorithm", source=_SGL_ARGS + ": builtins EAGLE, EAGLE3, NEXTN, STANDALONE, NGRAM, DFLASH",
        unconfirmed="STANDALONE and NGRAM in 0.5.10: seen in issues and PRs of that period, not in its tag; "
                    "DFLASH: inferred from PR #23000's merge date, 0.5.16 the first listed release after it",
        values=("EAGLE", "EAGLE3", "NEXTN", "STANDALONE", "NGRAM", "DFLASH"), value_since=(("DFLASH", "0.5.16"),)),
    Key("--speculative-draft-model-path", source=_SGL_ARGS),
    Key("--speculative-num-steps", source=_SGL_ARGS),
    Key("--speculative-eagle-topk", source=_SGL_ARGS),
    Key("--speculative-num-draft-tokens", source=_SGL_ARGS),
    Key("--speculative-token-map", source=_SGL_ARGS + "; read by load_token_map() with torch.load (a .pt of ids)",
        unconfirmed="read in the EAGLE worker's draft head; that STANDALONE drafters honour it is not confirmed"),
    Key("--max-running-requests", source=_SGL_ARGS),
    # Adaptive steps: PR #21599 (EAGLE topk=1, flat {"candidate_steps": [...]}) then PR #24055
    # (per batch size: {"<lowest batch>": {"candidate_steps": [...]}}, the only form the current
    # loader accepts). simspec writes the per-batch form only, so only for versions with #24055.
    Key("--speculative-adaptive", since="0.5.16",
        source="PR #21599 (merged Apr 2026), PR #24055 (merged late May 2026); adaptive_spec_params.py @ 015c8726: "
               "EAGLE/EAGLE3 only, batch-size keys are lower bounds (adaptive_step_router.py)",
        unconfirmed="inferred: 0.5.16 (named by a deployment script for a June-2026 PR) as a release after #24055"),
    Key("--speculative-adaptive-config", since="0.5.16", source="as --speculative-adaptive",
        unconfirmed="as --speculative-adaptive"),
    Key("SGLANG_SIMULATE_ACC_LEN",
        source="srt/environ.py (EnvFloat, -1 = off) in every stored snapshot; eagle_utils "
               "_generate_simulated_accept_index: mean accepted length incl. the bonus token",
        unconfirmed="whether the NGRAM worker honours it (read in the EAGLE verify path, which STANDALONE reuses)"),
))

# TensorRT-LLM LLM-API `speculative_config` (tensorrt_llm/llmapi/llm_args.py, DecodingBaseConfig),
# given to `trtllm-serve --extra_llm_api_options <yaml>`. draft_len_schedule changed meaning:
# PR #8194 (Oct 2025): keys are lower bounds and must include 1; PR #10860 (merged 2026-03-13):
# keys are upper bounds, the smallest key's value must equal max_draft_len, off above the last.
_TRT_ARGS = "tensorrt_llm/llmapi/llm_args.py (DecodingBaseConfig, NGram/Draft_Target configs)"
TRTLLM = Engine("trtllm", "TensorRT-LLM", ("1.2.0", "1.3.0"), (
    Key("decoding_type", source=_TRT_ARGS + ": Literal decoding_type of each config class",
        unconfirmed="Draft_Target spelled so in 1.2.0 (older builds spelled it DraftTarget)",
        values=("Draft_Target", "NGram", "Eagle3", "MTP")),
    Key("max_draft_len", source=_TRT_ARGS),
    Key("speculative_model", source=_TRT_ARGS + " (required by Draft_Target)"),
    Key("max_matching_ngram_size", source=_TRT_ARGS + " (NGram)"),
    # MTPDecodingConfig: num_nextn_predict_layers (default 1) is its draft length (its __init__
    # copies it to max_draft_len; with mtp_eagle_one_model the one layer runs that many steps).
    Key("num_nextn_predict_layers", source=_TRT_ARGS + " (MTPDecodingConfig, every stored version)"),
    Key("draft_len_schedule", source="PR #8194 (lower-bound keys), PR #10860 (upper-bound keys)",
        unconfirmed="inferred: 1.2.x reading keys as lower bounds, 1.3.0 as upper bounds (from merge dates)"),
))

ENGINES: dict[str, Engine] = {e.name: e for e in (VLLM, SGLANG, TRTLLM)}

# vLLM methods that read prompt_lookup_min/max (vllm/config/speculative.py @ 002e77c1).
PROMPT_LOOKUP_METHODS = ("ngram", "ngram_gpu")
# SGLang algorithms its adaptive mode runs (adaptive_unsupported_reason, adaptive_spec_params.py).
SGLANG_ADAPTIVE_ALGORITHMS = ("EAGLE", "EAGLE3")
# TensorRT-LLM: the release from which draft_len_schedule keys are upper bounds (PR #10860).
TRTLLM_UPPER_BOUND_SCHEDULE = "1.3.0"


def parse_version(text: str) -> tuple[int, ...]:
    """'0.24.0' -> (0, 24, 0); a suffix after the numbers ('rc1', '.post1') is ignored."""
    out = []
    for part in str(text).strip().lstrip("v").split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
        if len(digits) < len(part):
            break
    if not out:
        raise ValueError(f"not a version number: {text!r}")
    return tuple(out)


def at_least(version: str, other: str | None) -> bool:
    return other is None or parse_version(version) >= parse_version(other)


def engine(name: str) -> Engine:
    if name not in ENGINES:
        raise InputError(None, "--engine", f"{name!r} is not one of {', '.join(ENGINES)}")
    return ENGINES[name]


def resolve(name: str, version: str | None) -> str:
    """The version to export for: the newest known when none is given. Older than the oldest
    listed is an error (nothing is known of it); newer than the newest is taken as the newest."""
    e = engine(name)
    if version is None:
        return e.newest
    try:
        v = parse_version(version)
    except ValueError as exc:
        raise InputError(None, "--engine-version", str(exc)) from None
    if v < parse_version(e.versions[0]):
        raise InputError(None, "--engine-version",
                         f"{e.title} {version} is older than the oldest version simspec knows ({e.versions[0]})")
    return version


def has(name: str, version: str, key: str) -> bool:
    k = next((k for k in engine(name).keys if k.name == key), None)
    return k is not None and at_least(version, k.since) and not (k.until and at_least(version, k.until))


def allowed(name: str, version: str) -> frozenset[str]:
    """Every key (or flag, or environment variable) `version` of the engine accepts."""
    return frozenset(k.name for k in engine(name).keys if has(name, version, k.name))


def writable(name: str, version: str) -> frozenset[str]:
    """What simspec may write for `version`: the accepted keys it does not refuse to write."""
    keys = {k.name: k for k in engine(name).keys}
    return frozenset(n for n in allowed(name, version) if keys[n].written)


def values(name: str, key: str, version: str | None = None) -> tuple[str, ...]:
    """The names `key` takes (in `version`, when given: a newer name is left out before it)."""
    k = next(k for k in engine(name).keys if k.name == key)
    since = dict(k.value_since)
    return tuple(v for v in k.values if version is None or at_least(version, since.get(v)))


def check(name: str, version: str, items: dict) -> None:
    """Raise AssertionError if an export holds a key `version` lacks or a name it does not know."""
    bad = set(items) - writable(name, version)
    assert not bad, f"{name} {version}: not accepted: {sorted(bad)}"
    for key, v in items.items():
        known = values(name, key, version)
        assert not known or v in known, f"{name} {version}: {key} = {v!r} is not one of {known}"
