"""The config's JSON schema (schemas/config.schema.yaml) and the error a user reads when
the config breaks it: the key, what is wrong and how to fix it."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A study config that cannot run; the message says which key and how to fix it."""


def _key(path) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "(top level)"


def _schema_error_message(err: jsonschema.ValidationError) -> str:
    key = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        return f"config error at {key}: {err.message}. Allowed keys here: {', '.join(allowed)}."
    if err.validator == "oneOf" and key.endswith("grid"):
        return f"config error at {key}: give exactly one of 'ratios' or 'learning_rates' (together with 'batch_sizes')."
    if err.validator == "oneOf" and re.fullmatch(r"models\[\d+\]", key):
        return f"config error at {key}: give exactly one of 'id' (hub id or local path), 'build' or 'gguf'."
    if err.validator == "oneOf" and re.fullmatch(r"models\[\d+\]\.stages\.[^.]+", key):
        return (
            f"config error at {key}: give false (the model does not train in this stage) or an object "
            "with this model's own grid and/or parent, e.g. {grid: {ratios: [...], batch_sizes: [...]}}."
        )
    if err.validator == "propertyNames" or (key == "stages" and err.validator == "pattern"):
        return (
            f"config error at stages: {err.instance!r} is not a stage name; name stages sft or dpo, "
            "optionally with a suffix for several of a kind (sft, dpo, dpo_1130)."
        )
    if err.validator == "oneOf" and key.endswith("parent"):
        return (
            f"config error at {key}: name the parent SFT cell by exactly one of 'ratio' or "
            "'learning_rate', plus 'batch_size' and 'seed'."
        )
    if err.validator == "enum":
        return f"config error at {key}: {err.instance!r} is not one of {err.validator_value}."
    if err.validator in ("exclusiveMinimum", "minimum"):
        return (
            f"config error at {key}: {err.instance!r} must be > {err.validator_value}"
            + ("" if err.validator == "exclusiveMinimum" else f" or = {err.validator_value}")
            + "."
        )
    if err.validator == "type":
        hint = ""
        if isinstance(err.instance, str):
            hint = " (write numbers without quotes, e.g. 1e-4 or 0.0001)"
        return f"config error at {key}: {err.instance!r} is not of type {err.validator_value}{hint}."
    return f"config error at {key}: {err.message}."


def validate_schema(cfg: dict) -> None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # the deepest error under a oneOf is usually the helpful one
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_schema_error_message(best))
