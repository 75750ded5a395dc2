"""pydantic's validation errors -> one InputError line (file, dotted TOML key, reason).

pydantic reports every failed branch of a union and blames a model's root for an error its
validator raises; a user needs the one key they got wrong, spelled as in their file.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from simspec.config.fields import NotANumber
from simspec.errors import InputError

# a value of the wrong type for one branch of a union: when another branch (a range table, a
# distribution) has a real complaint about the same value, that complaint is the one to show
_TYPE_ERRORS = ("int_type", "float_type", "list_type", "dict_type", "model_type", "model_attributes_type",
                "string_type", "bool_type", "none_required", "literal_error", "is_instance_of",
                "int_parsing", "float_parsing")
# how pydantic names a union branch that is a container or a literal, in an error's location
_BRANCH = re.compile(r"^(list|dict|tuple|set|frozenset|literal)\[.*\]$")


class KeyedError(ValueError):
    """A cross-section error that knows its own key (pydantic would blame the root)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


def toml_key(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as a dotted TOML key (union branch names dropped)."""
    out: list[str] = []
    skip_tag = False
    for part in loc:
        text = str(part)
        if skip_tag:
            skip_tag = False
            continue
        if text.startswith("tagged-union"):
            skip_tag = True  # the next part is the tag value, not a key
            continue
        if isinstance(part, int):
            out[-1:] = [f"{out[-1]}[{part}]"] if out else [f"[{part}]"]
        elif text.startswith(("function-", "constrained-")) or text in ("int", "float", "str", "bool", "[key]") \
                or _BRANCH.match(text):  # a union branch: list[int], dict[str,float]
            continue
        else:
            out.append(text)
    return ".".join(out)


def _most_specific(errors: list[dict]) -> dict:
    """A typo inside a union member yields several errors; the deepest one names the key
    the user got wrong (an unknown key beats the 'missing' it caused). A branch the value is
    not even the type of comes last: `{ low = 5, high = 1 }` is a range with low > high, not
    "a valid list"."""
    rank = {"extra_forbidden": 0, "missing": 1}

    def order(e: dict) -> tuple:
        branch_miss = e.get("type") in _TYPE_ERRORS and not isinstance(e.get("input"), NotANumber)
        key = toml_key(tuple(e.get("loc", ())))
        return (branch_miss, -key.count(".") - key.count("["), rank.get(e.get("type"), 2))

    return min(errors, key=order)


def _expected(e: dict) -> str:
    """What one union branch wanted, as a TOML user says it."""
    named = {"model_type": "a table", "dict_type": "a table", "model_attributes_type": "a table",
             "int_type": "an integer", "float_type": "a number", "int_parsing": "an integer",
             "float_parsing": "a number", "list_type": "a list",
             "string_type": "a string", "bool_type": "true or false", "none_required": ""}
    return named.get(e.get("type"), e.get("msg", "").removeprefix("Input should be "))


def _union_miss(errors: list[dict], first: dict) -> str | None:
    """When the value fits no branch of a union at all, every branch's wish, in one reason:
    'should be a table or list or 'trace'' rather than the first branch's alone."""
    key = toml_key(tuple(first.get("loc", ())))
    same = [e for e in errors if toml_key(tuple(e.get("loc", ()))) == key]
    if len(same) < 2 or not all(e.get("type") in _TYPE_ERRORS for e in same):
        return None
    wants = list(dict.fromkeys(w for w in map(_expected, same) if w))
    if len(wants) < 2:
        return None
    return "should be " + (", ".join(wants[:-1]) + " or " + wants[-1])


def input_error(file: str, err: ValidationError, prefix: str = "") -> InputError:
    """The one error a user should fix first; `prefix` is the key of the table validated
    (when it is one section of a file, not the whole file)."""
    errors = err.errors()
    first = _most_specific(errors)
    ctx = first.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, KeyedError):
        return InputError(file, inner.key, inner.reason)
    key = ".".join(k for k in (prefix, toml_key(tuple(first.get("loc", ())))) if k)
    msg = first.get("msg", "invalid value")
    union = _union_miss(errors, first)
    if isinstance(first.get("input"), NotANumber):
        msg = f"a boolean is not a number (got {first['input']!r})"
    elif union is not None:
        msg = f"{union} (got {first['input']!r})"
    elif first.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif first.get("type") == "missing":
        msg = "required key is missing"
    else:
        msg = msg.removeprefix("Value error, ")
        if first.get("type") == "finite_number":
            msg = "must be a finite number (nan and inf are refused)"
        # a table's own check names the values it compared: the whole table again is noise
        if "input" in first and first.get("type") not in ("model_type",) and not isinstance(first["input"], dict) \
                and "(got " not in msg:  # a reason that names what it got already (a file's own value)
            msg = f"{msg} (got {first['input']!r})"
    return InputError(file, key or "(top level)", msg)
