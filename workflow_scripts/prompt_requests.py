"""lm-eval's requests for a study's tasks, built as our evaluation will build them.

lm-eval's own task definitions on the local files of :mod:`workflow_scripts.builtin_tasks`
(:func:`study_specs`), the study's few-shot counts and seed, the chat template the cells are
trained with (:func:`load_tokenizer`), and lm-eval's own chat-template and tokenisation code
on a model-less ``HFLM`` (:func:`model_free_lm`). :func:`build_requests` returns each
request's ``args``, which :mod:`workflow_scripts.prompt_lengths` measures.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
from pathlib import Path


def load_tokenizer(
    model_cfg: dict,
    base_dir: str | os.PathLike = ".",
    model_dir: str | os.PathLike | None = None,
    prefetched: str | os.PathLike | None = None,
):
    """The tokenizer a model's cells are trained and evaluated with, and the model's positions.

    ``model_dir``: a built or materialised base model (``results/models/<name>/base``);
    else a local ``id`` (relative to ``base_dir``); else the hub model's cached snapshot at
    the commit the login node's prefetch recorded (``prefetched``, offline). The chat
    template the model config names is applied as training applies it
    (:func:`workflow_scripts.chat_template.apply`). Returns ``(tokenizer, positions)``;
    positions is what lm-eval takes as ``max_length`` when the study sets none.
    """
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import resolve_max_length
    from transformers import AutoConfig, AutoTokenizer

    from . import chat_template
    from .model_source import is_local_path

    if model_dir is None:
        mid = model_cfg.get("id")
        if not mid:
            raise ValueError(
                f"model {model_cfg.get('name')!r}: a built or GGUF model needs its base folder "
                "(results/models/<name>/base)"
            )
        if is_local_path(mid):
            model_dir = Path(base_dir) / os.path.expanduser(mid)
        else:
            from .prefetch import cached_model

            record = json.loads(Path(prefetched).read_text()) if prefetched else {}
            model_dir = cached_model(mid, record.get("commit") or model_cfg.get("revision"))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    chat_template.apply(
        tokenizer,
        None,
        chat_template.resolve(model_cfg, base_dir),
        key=f"models[{model_cfg.get('name')}].chat_template",
    )
    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except (OSError, ValueError):
        config = None
    return tokenizer, resolve_max_length(config, tokenizer, default=HFLM._DEFAULT_MAX_LENGTH)


def model_free_lm(tokenizer, max_length: int | None = None):
    """lm-eval's ``HFLM`` without weights: its own chat-template, tokenisation and
    context/continuation split (``apply_chat_template``, ``tok_encode``, ``_encode_pair``) on
    ``tokenizer``, as our evaluation creates it (causal backend, ``add_bos_token`` unset).
    Built without ``__init__``, which loads the model; tests/test_prompt_fit.py compares
    it with a real evaluation, and pyproject.toml pins lm-eval."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM.__new__(HFLM)
    lm.tokenizer = tokenizer
    lm.backend = "causal"
    lm.add_bos_token = None
    lm.custom_prefix_token_id = None
    lm.chat_template_args = {}
    lm._max_length = max_length
    return lm


def study_specs(tasks: dict, benchmark_dirs: dict) -> list:
    """lm-eval specs of a study's built-in tasks on their local files (as evaluation builds them)."""
    from .builtin_tasks import builtin_specs

    specs = []
    for name, t in sorted(tasks.items()):
        if not t.get("synthetic"):
            specs.extend(builtin_specs(name, benchmark_dirs[name], t.get("num_fewshot")))
    return specs


def build_requests(
    specs: list,
    tokenizer,
    *,
    apply_chat_template: bool = True,
    limit=None,
    seed: int | None = None,
    fewshot_as_multiturn: bool = True,
) -> dict[str, list[tuple]]:
    """lm-eval task name -> the ``args`` of each request lm-eval would send for ``specs``.

    Follows ``lm_eval.simple_evaluate`` as :func:`workflow_scripts.evaluate.evaluate_cell`
    calls it: the task's own ``num_fewshot`` (0 when unset), the few-shot seed, the sample
    limit, ``fewshot_as_multiturn`` (simple_evaluate's default) and the model's chat template
    through lm-eval's own ``HFLM.apply_chat_template``.
    """
    import numpy as np
    from lm_eval.tasks import TaskManager

    if seed is None:
        from .lmeval_tasks import SEED as seed
    random.seed(seed)  # as simple_evaluate, for any task that draws from the global generators
    np.random.seed(seed)
    lm = model_free_lm(tokenizer)
    loaded = TaskManager(include_defaults=False).load(specs)
    out = {}
    with compiled_templates_cached():
        for name, task in loaded["tasks"].items():
            out[name] = _task_requests(task, lm, apply_chat_template, limit, seed, fewshot_as_multiturn)
    return out


@contextlib.contextmanager
def compiled_templates_cached():
    """lm-eval compiles a task's Jinja field templates again for every document and every
    few-shot exemplar (``lm_eval.utils.apply_template``: most of the time BBH takes);
    the same environment with each template compiled once renders the same text."""
    from lm_eval import utils

    original = utils.apply_template
    compile_once = functools.lru_cache(maxsize=None)(utils.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compile_once(template).render(**doc)

    utils.apply_template = apply_template
    try:
        yield
    finally:
        utils.apply_template = original


def _task_requests(task, lm, apply_chat_template, limit, seed, fewshot_as_multiturn) -> list[tuple]:
    """One task's requests, with simple_evaluate's per-task settings and evaluate's call."""
    from lm_eval.evaluator_utils import get_sample_size

    if task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=seed)
    task.build_all_requests(
        limit=get_sample_size(task, limit),
        rank=0,
        world_size=1,
        apply_chat_template=bool(apply_chat_template),
        fewshot_as_multiturn=fewshot_as_multiturn,
        chat_template=lm.apply_chat_template if apply_chat_template else None,
        tokenizer_name=lm.tokenizer_name if apply_chat_template else "",
    )
    return [tuple(inst.args) for inst in task.instances]
