"""A recipe's keys and plain values against the fields of its TRL config class.

Steps 1 and 2 of :func:`workflow_scripts.recipes.check_recipe`: every key is a field of the
stage kind's TRL config class, or one the pipeline pops before building it
(:data:`PIPELINE_KEYS`), and a wrong key is refused with the closest name; values of a plain
type (bool, int, float, str, dict, list) have it, and values with a fixed set of choices
are one of them. Also the error every recipe check raises, :class:`RecipeError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing

from .memory import CHECKPOINTING_KEYS

# Recipe keys that are not TRL arguments: trl_config.sft_config_kwargs pops them before building
# the config (a model-loading option, and the keys memory.memory_plan decides from).
PIPELINE_KEYS = ("attn_implementation", *CHECKPOINTING_KEYS)


class RecipeError(ValueError):
    """A recipe TRL would refuse; ``key`` is its dotted path (``stages.sft.recipe.beta``)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config error at {key}: {message}")


def check_fields(where: str, kind: str, cls, other, recipe: dict, version: str) -> None:
    """Refuse the first key of ``recipe`` (its TRL arguments) that is not a field of ``cls``,
    or whose value has the wrong plain type or is not one of the field's choices. ``other``
    is the other stage kind's config class (named when the key is one of its fields)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key, value in recipe.items():
        if key not in fields:
            raise RecipeError(f"{where}.{key}", _unknown_key(key, kind, cls, fields, other, version))
        _check_type(f"{where}.{key}", fields[key], value, cls)
        _check_choices(f"{where}.{key}", fields[key], value, cls)


def error_text(e: BaseException) -> str:
    """A library's exception as one sentence of a RecipeError message."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if text.endswith((".", "?", "!")) else text + "."


def _unknown_key(key: str, kind: str, cls, fields: dict, other, version: str) -> str:
    msg = f"not an argument of trl.{cls.__name__} (TRL {version})"
    if key in {f.name for f in dataclasses.fields(other)}:
        msg += f"; it is an argument of trl.{other.__name__}, and a {kind} stage trains with trl.{cls.__name__}"
    close = difflib.get_close_matches(key, [*fields, *PIPELINE_KEYS], n=1, cutoff=0.6)
    if close:
        msg += f"; did you mean {close[0]}?"
        if key == "warmup_ratio" and close[0] == "warmup_steps":
            msg = msg[:-1] + " (a value below 1 is a fraction of the training steps)?"
    else:
        msg += f". A recipe holds trl.{cls.__name__} arguments and the pipeline's {', '.join(PIPELINE_KEYS)}."
    return msg


# ---- types and choices --------------------------------------------------------------------

_PLAIN = {bool: "bool", int: "int", float: "float", str: "str", type(None): "None"}


def _members(annotation) -> list | None:
    """The plain types an annotation allows, or None if it names anything else (an enum, a
    class, Any): such a field is left to the config's own checks."""
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    out = []
    for a in args:
        origin = typing.get_origin(a)
        if a in _PLAIN:
            out.append(a)
        elif a is dict or origin is dict:
            out.append(dict)
        elif a is list or origin is list:
            inner = typing.get_args(a)
            out.append(("list", inner[0] if inner and inner[0] in _PLAIN else None))
        elif origin is typing.Literal:
            out.append(("literal", typing.get_args(a)))
        else:
            return None
    return out


def _fits(value, members: list) -> bool:
    for m in members:
        if isinstance(m, tuple) and m[0] == "literal":
            if any(value is v or (type(value) is type(v) and value == v) for v in m[1]):
                return True
        elif isinstance(m, tuple):  # a list, or one of its items (TRL wraps loss_type: sigmoid)
            if isinstance(value, list):
                if m[1] is None or all(_fits(v, [m[1]]) for v in value):
                    return True
            elif m[1] is not None and _fits(value, [m[1]]):
                return True
        elif m is bool or m is type(None) or m is str or m is dict:
            if type(value) is m or (m is dict and isinstance(value, dict)):
                return True
        elif m is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif m is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return True
    return False


def _describe(members: list) -> str:
    names = []
    for m in members:
        if isinstance(m, tuple) and m[0] == "literal":
            names.extend(repr(v) for v in m[1])
        elif isinstance(m, tuple):
            names.append(f"a list of {_PLAIN[m[1]]}" if m[1] else "a list")
        else:
            names.append("a mapping" if m is dict else _PLAIN[m])
    return " or ".join(dict.fromkeys(names))


def _check_type(key: str, field: dataclasses.Field, value, cls) -> None:
    members = _members(field.type)
    if members and not _fits(value, members):
        raise RecipeError(
            key,
            f"{value!r} is a {type(value).__name__}; trl.{cls.__name__} takes "
            f"{_describe(members)} here" + (" (write numbers without quotes)" if isinstance(value, str) else "") + ".",
        )


def _check_choices(key: str, field: dataclasses.Field, value, cls) -> None:
    choices = field.metadata.get("choices")
    if not choices:
        return
    for v in value if isinstance(value, list) else [value]:
        if v not in choices:
            raise RecipeError(key, f"{v!r} is not one of trl.{cls.__name__}'s choices {list(choices)}.")
