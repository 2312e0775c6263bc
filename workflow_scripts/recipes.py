"""A stage's TRL recipe, checked when the config is read instead of in a GPU job.

``stages.<stage>.recipe`` is passed to ``trl.SFTConfig`` (an ``sft`` stage) or
``trl.DPOConfig`` (a ``dpo`` stage) by ``train.sft_config_kwargs``. Without this check a typo
(``warmup_stepz``), an option of the other trainer (``max_seq_length`` in a DPO recipe) or a
bad value (``lr_scheduler_type: cosinus``) passes the config check and fails inside a
SLURM job, which is then retried. :func:`check_recipe` refuses them before any job:

1. every key is a field of the stage kind's TRL config class, or one the pipeline pops
   before building it (:data:`PIPELINE_KEYS`); a wrong key is refused with the closest name;
2. values of a plain type (bool, int, float, str, dict, list) have it, and values with a
   fixed set of choices are one of them;
3. the config object is built, with the recipe and the values the pipeline sets per cell
   (``train.sft_config_kwargs``, on the CPU, placeholders for the grid's numbers), so
   ``__post_init__`` checks the values (scheduler, optimizer, strategies, ...);
4. combinations that TRL or transformers refuse only later, in the trainer's ``__init__`` or
   at the first step, and that the recipe alone decides, are refused with TRL's reason
   (:func:`_combinations`); so are recipes that would make a grid cell mean something else
   (``packing``, ``auto_find_batch_size``).

Importing TRL costs seconds (torch, transformers), and Snakemake reads the config on every
invocation, so ``trl`` is imported only inside the check, a stage is checked once (not per
cell), and a recipe that passed is remembered in a small file per recipe under the user's
cache (``$XDG_CACHE_HOME/lrbs-study/recipe-checks``, or the folder ``LRBS_RECIPE_CHECK_CACHE``
names; ``off`` there disables it). The file's name is a hash of everything the verdict
depends on: stage kind, recipe, the keyword arguments the pipeline adds, the versions of trl,
transformers, torch and accelerate, the installed packages (their folder's mtime: an optimizer's
package installed or removed) and the source of this module. Refusals are never remembered.

Errors are :class:`RecipeError` (a ``ValueError``) with a message naming
``stages.<stage>.recipe.<key>``; ``config.py`` raises them as its ``ConfigError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import tempfile
import types
import typing
from pathlib import Path

from .grid import stage_kind
from .memory import CHECKPOINTING_KEYS

# Recipe keys that are not TRL arguments: train.sft_config_kwargs pops them before building
# the config (a model-loading option, and the keys launch.memory_plan decides from).
PIPELINE_KEYS = ("attn_implementation", *CHECKPOINTING_KEYS)
CONFIG_CLASSES = {"sft": "SFTConfig", "dpo": "DPOConfig"}

# TRL 1.16's DPOTrainer._compute_loss: any other loss type fails at the first training step.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
# ... its f-divergences (others fail at the first step), and the loss types that take a
# non-default one (others are refused in DPOTrainer.__init__).
F_DIVERGENCE_TYPES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
F_DIVERGENCE_LOSS_TYPES = ("sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop", "sft")

# Placeholders for what the grid sets per cell (their own checks are the schema's and
# config._semantic_checks'); only their types and presence matter to the TRL config.
PLACEHOLDER_CELL = {"learning_rate": 1e-5, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                    "seed": 0}
CPU = {"use_cpu": True, "bf16": False, "fp16": False}

CACHE_ENV = "LRBS_RECIPE_CHECK_CACHE"
_passed_here: set[str] = set()  # fingerprints checked in this process


class RecipeError(ValueError):
    """A recipe TRL would refuse; ``key`` is its dotted path (``stages.sft.recipe.beta``)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config error at {key}: {message}")


def check_recipe(stage_name: str, stage: dict, *, cache: bool = True) -> None:
    """Refuse ``stage["recipe"]`` if TRL would refuse it when the stage's cells train.

    ``stage`` is the stage's config (defaults merged): the recipe, and ``train_examples``,
    ``train_steps`` and ``checkpoint``, which decide the keyword arguments the pipeline adds.
    With ``cache``, a recipe that passed before with the same libraries and code is not
    checked again (no ``trl`` import)."""
    kind = stage_kind(stage_name)
    recipe = dict(stage.get("recipe") or {})
    kwargs = _pipeline_kwargs(stage, recipe, output_dir="<temporary>")
    fingerprint = _fingerprint(kind, recipe, kwargs) if cache else None
    if fingerprint and (fingerprint in _passed_here or _cached(fingerprint)):
        _passed_here.add(fingerprint)
        return
    if not _check(stage_name, kind, recipe, stage):
        return  # trl is not installed here: the job checks it
    if fingerprint:
        _passed_here.add(fingerprint)
        _remember(fingerprint, {"stage_kind": kind, "recipe": recipe})


# ---- the check ----------------------------------------------------------------------------


def _check(stage_name: str, kind: str, recipe: dict, stage: dict) -> bool:
    """Raise RecipeError for the first problem; False when trl cannot be imported here."""
    where = f"stages.{stage_name}.recipe"
    value = recipe.get("attn_implementation")
    if "attn_implementation" in recipe and not isinstance(value, str):
        raise RecipeError(f"{where}.attn_implementation", f"{value!r} is not a string; give an attention "
                          "implementation of transformers, e.g. sdpa, eager or flash_attention_2.")
    with _quiet():
        try:
            import trl
        except ImportError as e:
            print(f"[config] recipes not checked: trl cannot be imported here ({e}); a wrong recipe key "
                  "or value fails when its cell trains.", file=sys.stderr)
            return False
        cls = getattr(trl, CONFIG_CLASSES[kind])
        other = getattr(trl, CONFIG_CLASSES["dpo" if kind == "sft" else "sft"])
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        trl_recipe = {k: v for k, v in recipe.items() if k not in PIPELINE_KEYS}
        for key, value in trl_recipe.items():
            if key not in fields:
                raise RecipeError(f"{where}.{key}", _unknown_key(key, kind, cls, fields, other, trl.__version__))
            _check_type(f"{where}.{key}", fields[key], value, cls)
            _check_choices(f"{where}.{key}", fields[key], value, cls)
        _policy(where, trl_recipe)
        with tempfile.TemporaryDirectory(prefix="lrbs-recipe-check-") as tmp:
            # the config only records output_dir (nothing is written); the folder goes anyway
            args = _build(where, cls, stage, recipe, os.path.join(tmp, "trainer"))
            _combinations(where, kind, recipe, args)
            if "optim" in trl_recipe:
                _check_optimizer(where, args)
    return True


def _pipeline_kwargs(stage: dict, recipe: dict, output_dir: str) -> dict:
    """What train.train_cell passes to the TRL config for a cell of this stage, on the CPU,
    with placeholders for the grid's numbers."""
    from .train import sft_config_kwargs

    spec = {"recipe": recipe, **PLACEHOLDER_CELL, "checkpoint": stage.get("checkpoint"),
            "max_steps": 10 if (stage.get("train_examples") or stage.get("train_steps")) else None}
    kwargs = sft_config_kwargs(spec, output_dir, CPU)
    forced = [recipe[k] for k in CHECKPOINTING_KEYS if k in recipe]
    kwargs["activation_checkpointing"] = bool(forced[0]) if forced else False  # launch.memory_plan's choice
    return kwargs


def _build(where: str, cls, stage: dict, recipe: dict, output_dir: str):
    """The TRL config object; a refusal names the recipe key(s) it comes from."""
    kwargs = _pipeline_kwargs(stage, recipe, output_dir)
    try:
        return cls(**kwargs)
    except Exception as e:  # noqa: BLE001 - any refusal of the config is a recipe error
        error = e
    trl_recipe = {k: v for k, v in recipe.items() if k not in PIPELINE_KEYS}
    bare = _pipeline_kwargs(stage, {}, output_dir)
    for key, value in trl_recipe.items():  # the key that fails on its own
        try:
            cls(**{**bare, key: value})
        except Exception as e:  # noqa: BLE001
            raise RecipeError(f"{where}.{key}", f"trl.{cls.__name__} refuses {key}: {value!r}: "
                              f"{_text(e)}") from None
    named = [k for k in trl_recipe if re.search(rf"\b{re.escape(k)}\b", str(error))] or list(trl_recipe)
    raise RecipeError(f"{where}.{named[0]}", f"trl.{cls.__name__} refuses the recipe's "
                      f"{', '.join(named)} together: {_text(error)}") from None


def _policy(where: str, recipe: dict) -> None:
    """Settings TRL accepts that would make a grid cell mean something else."""
    if recipe.get("packing"):
        raise RecipeError(
            f"{where}.packing",
            "packing joins several training rows into one sequence, so an 'example' would become a packed "
            "sequence: train_examples, the examples_seen of run.json and the grid's per-cell example budget "
            "would count sequences, not rows, and the learning-rate/batch-size comparison needs an example "
            "to be one row. Remove packing (padding_free: true also saves the padding, without joining rows).")
    if recipe.get("auto_find_batch_size"):
        raise RecipeError(
            f"{where}.auto_find_batch_size",
            "auto_find_batch_size halves the per-device batch after an out-of-memory error, so a cell "
            "would train at another effective batch size than its grid cell names. Remove it; "
            "lower micro_batch_size (accumulation keeps the effective batch) or let activation "
            "checkpointing turn on.")


def _combinations(where: str, kind: str, recipe: dict, args) -> None:
    """What TRL 1.16 / transformers 5 refuse only in the trainer's ``__init__`` or at the first
    step, decided by the recipe alone in this pipeline: its training rows are chat
    ``messages`` (SFT) or ``prompt``/``chosen``/``rejected`` (DPO), text only, no eval set,
    no PEFT, collator or formatting function, activation checkpointing from launch.memory_plan.
    ``args`` is the built config (its defaults count too)."""
    if args.eval_strategy != "no":
        raise RecipeError(f"{where}.eval_strategy", f"{args.eval_strategy.value!r} needs an eval set, and the "
                          "pipeline trains without one (Trainer refuses it when it starts); evaluation is the "
                          "evaluate rule's. Remove eval_strategy.")
    if args.save_strategy == "best":
        raise RecipeError(f"{where}.save_strategy", "'best' saves on an evaluation metric, and the pipeline "
                          "trains without an eval set. Remove it; resumable checkpoints are "
                          f"{where.rsplit('.', 1)[0]}.checkpoint.")
    if args.use_liger_kernel and (args.liger_kernel_config or {}).get("fused_linear_cross_entropy"):
        raise RecipeError(f"{where}.liger_kernel_config", "TRL's trainers refuse fused_linear_cross_entropy "
                          "when they start: it replaces the model's forward, which they patch with a fused LM "
                          "head. Remove it from liger_kernel_config.")
    if kind == "sft":
        if args.padding_free and not args.packing and args.max_length is not None:
            set_by = "" if "max_length" in recipe else ", TRL's default"
            raise RecipeError(f"{where}.padding_free", "SFTTrainer refuses padding_free: true without packing "
                              f"while max_length is set ({args.max_length}{set_by}) when it starts: padding-free "
                              "batches are not truncated. Set max_length: null (rows already short enough) or "
                              "remove padding_free.")
        if args.completion_only_loss and not args.assistant_only_loss:
            raise RecipeError(f"{where}.completion_only_loss", "completion-only loss needs prompt/completion rows, "
                              "and this pipeline's SFT rows are chat messages: TRL would silently train on every "
                              "token. Set assistant_only_loss: true instead (without generation markers in the "
                              "chat template the pipeline trains it as completion-only loss).")
        if (args.dataset_kwargs or {}).get("skip_prepare_dataset"):
            raise RecipeError(f"{where}.dataset_kwargs", "skip_prepare_dataset: true hands SFTTrainer the raw chat "
                              "rows untokenized, and its collator fails at the first batch. Remove it.")
        ckpt_kwargs = args.gradient_checkpointing_kwargs or {}
        if ckpt_kwargs.get("selective"):
            key = next((k for k in ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs")
                        if k in recipe), "activation_checkpointing_kwargs")
            if ckpt_kwargs.get("use_reentrant"):
                raise RecipeError(f"{where}.{key}", "SFTTrainer refuses selective: true with use_reentrant: true "
                                  "when it starts (selective checkpointing is non-reentrant). Remove use_reentrant.")
            if not any(recipe.get(k) is True for k in CHECKPOINTING_KEYS):
                raise RecipeError(f"{where}.{key}", "selective: true needs activation checkpointing on, and the "
                                  "pipeline turns it on only for a cell that would not fit in GPU memory: "
                                  "SFTTrainer would refuse every other cell when it starts. Add "
                                  "activation_checkpointing: true, or remove selective.")
    if kind == "dpo":
        losses = list(args.loss_type)
        unknown = [t for t in losses if t not in DPO_LOSS_TYPES]
        if unknown:
            close = difflib.get_close_matches(unknown[0], DPO_LOSS_TYPES, n=1, cutoff=0.6)
            raise RecipeError(f"{where}.loss_type", f"{unknown[0]!r} is not a DPO loss type of TRL, and DPOTrainer "
                              "fails on it at the first step" + (f"; did you mean {close[0]}?" if close else
                                                                 f". Use {list(DPO_LOSS_TYPES)}."))
        if args.f_divergence_type not in F_DIVERGENCE_TYPES:
            raise RecipeError(f"{where}.f_divergence_type", f"{args.f_divergence_type!r} is not one of "
                              f"{list(F_DIVERGENCE_TYPES)}; DPOTrainer fails on it at the first step.")
        if args.f_divergence_type != "reverse_kl" and not set(losses) <= set(F_DIVERGENCE_LOSS_TYPES):
            raise RecipeError(f"{where}.f_divergence_type", f"DPOTrainer refuses {args.f_divergence_type!r} with "
                              f"loss_type {losses} when it starts: only {list(F_DIVERGENCE_LOSS_TYPES)} take a "
                              "non-default f-divergence. Remove f_divergence_type.")
        if args.use_weighting and {"aot", "aot_unpaired"} & set(losses):
            raise RecipeError(f"{where}.use_weighting", "DPOTrainer refuses WPO weighting with the 'aot' and "
                              "'aot_unpaired' losses when it starts (they sort samples). Remove use_weighting.")
        if "exo_pair" in losses and args.label_smoothing == 0.0:
            raise RecipeError(f"{where}.label_smoothing", "DPOTrainer refuses loss_type 'exo_pair' with "
                              "label_smoothing 0 when it starts; the EXO paper recommends 1e-3.")
        if args.sync_ref_model and args.precompute_ref_log_probs:
            raise RecipeError(f"{where}.sync_ref_model", "DPOTrainer refuses sync_ref_model together with "
                              "precompute_ref_log_probs when it starts: precomputed reference log-probs go "
                              "stale when the reference model is synchronised. Remove one of them.")


def _check_optimizer(where: str, args) -> None:
    """The optimizer's package is installed (Trainer finds out only when training starts)."""
    from transformers import Trainer

    try:
        Trainer.get_optimizer_cls_and_kwargs(args)
    except ImportError as e:
        raise RecipeError(f"{where}.optim", f"{args.optim.value!r} cannot be used here: {_text(e)}") from None
    except ValueError as e:  # also what some say when their package is missing
        if "install" in str(e).lower():
            raise RecipeError(f"{where}.optim", f"{args.optim.value!r} cannot be used here: {_text(e)}") from None


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
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
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
        raise RecipeError(key, f"{value!r} is a {type(value).__name__}; trl.{cls.__name__} takes "
                          f"{_describe(members)} here" + (" (write numbers without quotes)" if isinstance(value, str)
                                                         else "") + ".")


def _check_choices(key: str, field: dataclasses.Field, value, cls) -> None:
    choices = field.metadata.get("choices")
    if not choices:
        return
    for v in value if isinstance(value, list) else [value]:
        if v not in choices:
            raise RecipeError(key, f"{v!r} is not one of trl.{cls.__name__}'s choices {list(choices)}.")


def _text(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if text.endswith((".", "?", "!")) else text + "."


# ---- quiet, side-effect free --------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """No warnings or log lines from the libraries, and no trace left in this process: the
    environment and accelerate's device state (every TrainingArguments sets one up) are put
    back as they were, so a Snakemake or pytest process that trains later starts as before."""
    import logging
    import warnings

    environ = dict(os.environ)
    states = {name: dict(state) for name, state in _accelerate_states().items()}
    levels = {name: logging.getLogger(name).level for name in ("transformers", "trl", "accelerate", "torch")}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in levels:
                logging.getLogger(name).setLevel(logging.ERROR)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for k in set(os.environ) - set(environ):
            del os.environ[k]
        os.environ.update({k: v for k, v in environ.items() if os.environ.get(k) != v})
        for name, state in _accelerate_states().items():  # empty if accelerate came in with trl
            state.clear()
            state.update(states.get(name, {}))


def _accelerate_states() -> dict:
    """accelerate's process-wide device state (shared by all instances), once imported."""
    module = sys.modules.get("accelerate.state")
    if module is None:
        return {}
    return {"partial": module.PartialState._shared_state, "accelerator": module.AcceleratorState._shared_state}


# ---- the cache of passed recipes ----------------------------------------------------------


def cache_dir() -> Path | None:
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "no", "false") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrbs-study" / "recipe-checks"


def _fingerprint(kind: str, recipe: dict, kwargs: dict) -> str | None:
    if cache_dir() is None:
        return None
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.origin:
        return None
    versions = {}
    for package in ("trl", "transformers", "torch", "accelerate"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()  # the checks themselves
    payload = {"kind": kind, "recipe": recipe, "kwargs": kwargs, "pipeline_keys": PIPELINE_KEYS,
               "versions": versions, "python": sys.version,
               "packages_mtime": os.stat(Path(spec.origin).parent.parent).st_mtime_ns, "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


def _cached(fingerprint: str) -> bool:
    folder = cache_dir()
    return folder is not None and (folder / f"{fingerprint}.json").is_file()


def _remember(fingerprint: str, record: dict) -> None:
    folder = cache_dir()
    if folder is None:
        return
    try:  # a cache that cannot be written only costs the next run the check
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, default=repr)
        os.replace(tmp, folder / f"{fingerprint}.json")
    except OSError:
        pass
