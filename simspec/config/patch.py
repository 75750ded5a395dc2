"""Patching scenario tables: what a study's `[patch]`, its variants and `Scenario.with_` do.
Nested tables merge key by key, any other value replaces (a pydantic model too, written as
the table it was given as), and None removes a key (its default applies again)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

# [target] and [draft] take exactly one cost source: a patch that gives one drops the other.
ONE_SOURCE = {"target": ("profile", "cost"), "draft": ("profile", "cost")}


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `patch` applied (neither is changed)."""
    out = copy.deepcopy(dict(base))
    for k, v in patch.items():
        if isinstance(v, BaseModel):  # only the keys it was given: defaults stay defaults
            out[k] = v.model_dump(exclude_unset=True)
        elif v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        elif isinstance(v, Mapping):
            out[k] = deep_merge({}, v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def one_source(patch: Mapping[str, Any]) -> dict[str, Any]:
    """A user's scenario patch, made to replace a cost source: a patched `profile` removes
    the section's `cost`, and a patched `cost` its `profile` (a study's [patch] and variants)."""
    out = dict(patch)
    for sec, keys in ONE_SOURCE.items():
        given = out.get(sec)
        if isinstance(given, Mapping):
            drop = {b: None for a in keys for b in keys if a != b and a in given and b not in given}
            out[sec] = {**drop, **given}
    return out
