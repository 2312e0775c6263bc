"""Do a study's benchmark prompts fit in ``evaluation.max_length``?

lm-eval's HF backend cuts a prompt that is too long from the left, with nothing but a log
warning: a few-shot prompt loses its first exemplars (or its instructions) and the score
drops for a reason that has nothing to do with the model. With ``max_length: 2048`` and
BBH's ``max_gen_toks: 1024``, 1,024 tokens remain for a 3-shot chain-of-thought prompt,
and several BBH subtasks need more before their question is even added.

This module builds the requests exactly as our evaluation will (lm-eval's own task
definitions on the local files of :mod:`workflow_scripts.builtin_tasks`, the study's
few-shot counts and seed, the chat template the cells are trained with, lm-eval's own
chat-template and tokenisation code on a model-less ``HFLM``) and compares every prompt
with the budget lm-eval gives it:

* ``generate_until``: the context must fit in ``max_length - max_gen_toks`` (HFLM's
  ``max_ctx_len``; ``max_gen_toks`` from the task's ``generation_kwargs``, default 256);
* ``loglikelihood`` (multiple choice): context + continuation must fit in ``max_length``
  (HFLM itself cuts only beyond ``max_length + 1``; the check keeps the stricter bound).

:func:`check_prompts` is the ``check_prompts`` rule (rules/checks.smk): it refuses a study
whose prompts would be cut, before any evaluation job, naming the task, its longest prompt
and the ``evaluation.max_length`` it needs. :func:`truncation_from_samples` counts the
requests an evaluation actually cut (``results.json``: ``pipeline.truncated``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
from pathlib import Path

from .io import atomic_write_json

ROUND_TO = 256        # a suggested max_length is a multiple of this
DEFAULT_GEN_TOKS = 256  # HFLM.max_gen_toks: used when a task's generation_kwargs name none
GENERATE, LOGLIKELIHOOD, ROLLING = "generate_until", "loglikelihood", "loglikelihood_rolling"


class PromptsDoNotFit(ValueError):
    """Some prompts of a study would be cut by lm-eval; the message says how to fix it."""


# ---------------------------------------------------------------- tokenizer and lm-eval's LM

def load_tokenizer(model_cfg: dict, base_dir: str | os.PathLike = ".", model_dir: str | os.PathLike | None = None,
                   prefetched: str | os.PathLike | None = None):
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
            raise ValueError(f"model {model_cfg.get('name')!r}: a built or GGUF model needs its base folder "
                             "(results/models/<name>/base)")
        if is_local_path(mid):
            model_dir = Path(base_dir) / os.path.expanduser(mid)
        else:
            from .prefetch import cached_model

            record = json.loads(Path(prefetched).read_text()) if prefetched else {}
            model_dir = cached_model(mid, record.get("commit") or model_cfg.get("revision"))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    chat_template.apply(tokenizer, None, chat_template.resolve(model_cfg, base_dir),
                        key=f"models[{model_cfg.get('name')}].chat_template")
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


# ---------------------------------------------------------------- requests

def build_requests(specs: list, tokenizer, *, apply_chat_template: bool = True, limit=None,
                   seed: int | None = None, fewshot_as_multiturn: bool = True) -> dict[str, list[tuple]]:
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
        limit=get_sample_size(task, limit), rank=0, world_size=1,
        apply_chat_template=bool(apply_chat_template), fewshot_as_multiturn=fewshot_as_multiturn,
        chat_template=lm.apply_chat_template if apply_chat_template else None,
        tokenizer_name=lm.tokenizer_name if apply_chat_template else "")
    return [tuple(inst.args) for inst in task.instances]


def request_kind(args) -> str:
    """generate_until (context, generation kwargs), loglikelihood (context, continuation) or
    loglikelihood_rolling (text,): what lm-eval's request ``args`` (or a sample's
    ``arguments`` entry) are."""
    if len(args) == 2 and isinstance(args[1], dict):
        return GENERATE
    return LOGLIKELIHOOD if len(args) == 2 else ROLLING


def max_gen_toks(gen_kwargs: dict) -> int:
    """The tokens lm-eval's HFLM reserves for generation (its ``normalize_gen_kwargs``)."""
    from lm_eval.models.utils import normalize_gen_kwargs

    return int(normalize_gen_kwargs(dict(gen_kwargs), DEFAULT_GEN_TOKS)["max_gen_toks"])


NEAR = 64  # tokens: a loglikelihood pair this close to its budget is encoded whole
TAIL = 64  # characters: a continuation's tokens are counted after this much of its context


def request_lengths(lm, requests: list, exact: bool = False) -> list[tuple[str, int, int]]:
    """``(kind, prompt tokens, generated tokens)`` per request, tokenised as lm-eval does:
    a generation context as ``HFLM.tok_batch_encode`` encodes it; a loglikelihood pair as
    ``TemplateLM._encode_pair`` splits it (prompt = context + continuation).

    A loglikelihood pair costs lm-eval two encodings of its whole text (MMLU-Pro: 120,000
    pairs of ~2,000 tokens: minutes). Here every distinct context is encoded once, and a
    continuation counts the tokens it adds after the context's last ``TAIL`` characters
    (the same few for all the pairs of a task: a cached count); the pairs within ``NEAR``
    tokens of the budget (``lm.max_length``) are then encoded whole, exactly as lm-eval
    does, so the number cut is exact, and a longest below the budget is exact up to how the
    texts join (no difference in any task tests/test_prompt_fit.py compares). ``exact=True``
    encodes every pair whole."""
    from lm_eval.models.utils import has_bos_prefix

    tok = lm.tokenizer
    counter = _TokenCounter(tok)
    bos = getattr(tok, "bos_token", None)
    prefix = tok.decode(lm.prefix_token_id) if lm.prefix_token_id is not None else None

    def encode_kw(text):  # HFLM.tok_encode(text): no special tokens when it starts with BOS
        return False if has_bos_prefix(text, prefix) else None

    plan = []
    for r in requests:
        kind = request_kind(r)
        if kind == GENERATE:  # HFLM.tok_batch_encode (add_bos_token unset)
            ctx, kw = r
            plan.append([GENERATE, counter.want(ctx, False if has_bos_prefix(ctx, bos) else None), max_gen_toks(kw)])
        elif kind == LOGLIKELIHOOD:
            context, continuation = r
            if context == "":  # TemplateLM.loglikelihood: BOS (or EOS) stands in for the context
                cont = tok.encode(continuation, add_special_tokens=False)
                plan.append([LOGLIKELIHOOD, len(cont) + int(lm.prefix_token_id != cont[0]), 0])
                continue
            n_spaces = len(context) - len(context.rstrip())  # TemplateLM._encode_pair
            if n_spaces > 0:
                continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
            tail = context[-TAIL:]
            pair = _Pair(counter.want(context, encode_kw(context)), counter.want(tail, False),
                         counter.want(tail + continuation, False), context + continuation)
            if exact:
                counter.want(pair[3], encode_kw(pair[3]))
            plan.append([LOGLIKELIHOOD, pair, 0])
        else:  # loglikelihood_rolling: windowed by lm-eval, never cut (reported, not checked)
            plan.append([ROLLING, counter.want(r[0], encode_kw(r[0])), 0])
    counter.count()

    pairs = [p for p in plan if isinstance(p[1], _Pair)]
    for p in pairs:  # first: the context, and what the continuation adds after its tail
        ctx, tail, tail_cont, _ = p[1]
        p.append(counter[ctx] + max(0, counter[tail_cont] - counter[tail]))
    if pairs and not exact and lm._max_length:
        for p in pairs:
            if p[3] > lm._max_length - NEAR:
                counter.want(p[1][3], encode_kw(p[1][3]))
        counter.count()
    out = []
    for p in plan:
        kind, key, gen = p[:3]
        if isinstance(key, _Pair):
            whole = (key[3], encode_kw(key[3]))
            n_ctx = counter[key[0]]
            # len(context_enc) + len(whole_enc[len(context_enc):]), as lm-eval splits the pair
            n = n_ctx + max(0, counter[whole] - n_ctx) if whole in counter else p[3]
        else:
            n = key if isinstance(key, int) else counter[key]
        out.append((kind, n, gen))
    return out


class _Pair(tuple):
    """A loglikelihood pair's counter keys: context, its tail, tail + continuation; and the
    whole text."""

    def __new__(cls, *items):
        return super().__new__(cls, items)


class _TokenCounter:
    """Token counts of many texts: each distinct text encoded once (multiple-choice requests
    share their context), in batches (the Rust tokenizer runs a batch on every core), and
    only the counts kept (MMLU-Pro sends 120,000 prompts). ``special``: None encodes with
    the tokenizer's defaults, False with ``add_special_tokens=False``."""

    def __init__(self, tokenizer, batch: int = 256):
        self.tokenizer, self.batch = tokenizer, batch
        self.pending: dict[tuple, None] = {}
        self.counts: dict[tuple, int] = {}

    def want(self, text: str, special: bool | None) -> tuple:
        key = (text, special)
        if key not in self.counts:
            self.pending[key] = None
        return key

    def count(self) -> None:
        for special in (None, False):
            texts = [t for t, s in self.pending if s is special]
            kw = {} if special is None else {"add_special_tokens": False}
            for i in range(0, len(texts), self.batch):
                chunk = texts[i:i + self.batch]
                ids = self.tokenizer(chunk, return_attention_mask=False, **kw)["input_ids"]
                self.counts.update({(t, special): len(x) for t, x in zip(chunk, ids)})
        self.pending.clear()

    def __getitem__(self, key: tuple) -> int:
        return self.counts[key]

    def __contains__(self, key: tuple) -> bool:
        return key in self.counts


# ---------------------------------------------------------------- measurement

def round_up(n: int, to: int = ROUND_TO) -> int:
    return int(math.ceil(n / to) * to)


def fit(lengths: list[tuple[str, int, int]], max_length: int) -> dict:
    """One task's requests against ``max_length``: count, longest, budget, truncated, need."""
    checked = [x for x in lengths if x[0] != ROLLING]
    if not checked:
        return {"output_type": lengths[0][0] if lengths else None, "requests": len(lengths),
                "longest_prompt_tokens": max((n for _, n, _ in lengths), default=0), "max_gen_toks": 0,
                "budget": None, "truncated": 0, "needs_max_length": None}
    # the binding request: the one that needs the longest sequence (prompt + generation)
    kind, longest, gen = max(checked, key=lambda x: (x[1] + x[2], x[1]))
    return {"output_type": kind, "requests": len(lengths), "longest_prompt_tokens": longest,
            "max_gen_toks": gen, "budget": max_length - gen,
            "truncated": sum(1 for _, n, g in checked if n > max_length - g),
            "needs_max_length": round_up(longest + gen)}


def combine(records: dict[str, dict]) -> dict:
    """A group's record (bbh) from its subtasks': counts summed, the binding subtask's
    longest prompt and budget, and which subtask that is."""
    worst = max(records, key=lambda t: (records[t]["longest_prompt_tokens"] + records[t]["max_gen_toks"],
                                        records[t]["longest_prompt_tokens"]))
    out = dict(records[worst])
    out["requests"] = sum(r["requests"] for r in records.values())
    out["truncated"] = sum(r["truncated"] for r in records.values())
    out["longest_in"] = worst
    out["subtasks"] = records
    return out


def leaves_of(name: str, task: dict) -> list[str]:
    """lm-eval task names whose requests make up a study task (a group's subtasks)."""
    if task.get("synthetic"):
        return [name]
    from .builtin_tasks import builtin_leaves

    return builtin_leaves(name)


def measure(requests: dict[str, list], tasks: dict, tokenizer, max_length: int, exact: bool = False) -> dict[str, dict]:
    """Study task -> its record (:func:`fit`; a group: :func:`combine` of its subtasks).
    ``exact``: every loglikelihood pair encoded whole (:func:`request_lengths`)."""
    lm = model_free_lm(tokenizer, max_length)
    out = {}
    for name, task in sorted(tasks.items()):
        leaves = [t for t in leaves_of(name, task) if t in requests]
        per = {t: fit(request_lengths(lm, requests[t], exact), max_length) for t in leaves}
        if not per:
            continue
        out[name] = combine(per) if len(leaves_of(name, task)) > 1 else per[leaves[0]]
    return out


def _n(x: int) -> str:
    return f"{x:,}"


def problems(measured: dict[str, dict], max_length: int, setting=None, positions: int | None = None) -> list[str]:
    """One sentence per task whose prompts would be cut (empty: everything fits)."""
    where = f"evaluation.max_length {setting}" if setting else \
        f"evaluation.max_length (unset: the model's {max_length} positions)"
    out = []
    for name, r in measured.items():
        if not r["truncated"]:
            continue
        sub = f" ({r['longest_in']})" if r.get("longest_in") else ""
        if r["output_type"] == GENERATE:
            what = (f"longest {_n(r['longest_prompt_tokens'])} tokens{sub} + {_n(r['max_gen_toks'])} generated "
                    f"> {_n(max_length)}")
        else:
            what = f"longest context + continuation {_n(r['longest_prompt_tokens'])} tokens{sub} > {_n(max_length)}"
        fix = f"set evaluation.max_length: {r['needs_max_length']} or more"
        if positions and r["needs_max_length"] > positions:
            fix = (f"the model has only {_n(positions)} positions: lower tasks.{name}.num_fewshot or the "
                   f"task's max_gen_toks")
        out.append(f"{where} cuts {name} prompts: {what}; {fix} "
                   f"({_n(r['truncated'])} of {_n(r['requests'])} requests would be cut from the left)")
    return out


def check(measured: dict[str, dict], max_length: int, setting=None, positions: int | None = None) -> None:
    """Raise :class:`PromptsDoNotFit` naming every task whose prompts would be cut."""
    found = problems(measured, max_length, setting, positions)
    if found:
        need = max(r["needs_max_length"] for r in measured.values() if r["truncated"])
        tail = "" if len(found) == 1 or (positions and need > positions) else \
            f". All of them fit with evaluation.max_length: {need}"
        raise PromptsDoNotFit("; ".join(found) + tail)


def study_specs(tasks: dict, benchmark_dirs: dict) -> list:
    """lm-eval specs of a study's built-in tasks on their local files (as evaluation builds them)."""
    from .builtin_tasks import builtin_specs

    specs = []
    for name, t in sorted(tasks.items()):
        if not t.get("synthetic"):
            specs.extend(builtin_specs(name, benchmark_dirs[name], t.get("num_fewshot")))
    return specs


def measure_prompts(model_cfg: dict, tasks: dict, benchmark_dirs: dict, evaluation: dict, *,
                    base_dir: str | os.PathLike = ".", model_dir=None, prefetched=None, tokenizer=None,
                    positions: int | None = None) -> dict:
    """The study's built-in tasks measured for one model: what :func:`check_prompts` writes.

    ``tokenizer`` (with ``positions``) skips :func:`load_tokenizer` (tests, and callers
    that have one loaded already)."""
    builtin = {n: t for n, t in tasks.items() if not t.get("synthetic")}
    if tokenizer is None:
        tokenizer, positions = load_tokenizer(model_cfg, base_dir, model_dir, prefetched)
    setting = evaluation.get("max_length")
    max_length = int(setting or positions)
    requests = build_requests(study_specs(builtin, benchmark_dirs), tokenizer,
                              apply_chat_template=evaluation.get("apply_chat_template", True),
                              limit=evaluation.get("limit"))
    measured = measure(requests, builtin, tokenizer, max_length)
    return {"model": model_cfg.get("name"), "max_length": max_length, "max_length_setting": setting,
            "model_positions": positions, "apply_chat_template": evaluation.get("apply_chat_template", True),
            "chat_template": model_cfg.get("chat_template", "tokenizer"), "tasks": measured,
            "needs_max_length": max((r["needs_max_length"] or 0 for r in measured.values()), default=0),
            "problems": problems(measured, max_length, setting, positions)}


def summary(record: dict) -> str:
    lines = [f"{'task':<24} {'type':<15} {'requests':>9} {'longest':>8} {'gen':>5} {'budget':>7} "
             f"{'cut':>6} {'needs':>6}  longest in"]
    for name, r in record["tasks"].items():
        lines.append(f"{name:<24} {r['output_type'] or '':<15} {r['requests']:>9} {r['longest_prompt_tokens']:>8} "
                     f"{r['max_gen_toks']:>5} {r['budget'] or '':>7} {r['truncated']:>6} "
                     f"{r['needs_max_length'] or '':>6}  {r.get('longest_in', '')}")
    return "\n".join(lines)


def check_prompts(model_cfg: dict, tasks: dict, benchmark_dirs: dict, evaluation: dict, out_json, *,
                  base_dir: str | os.PathLike = ".", model_dir=None, prefetched=None) -> dict:
    """Measure, print the table, and write ``out_json`` only when every prompt fits; else
    raise :class:`PromptsDoNotFit` (the rule fails; no evaluation job starts)."""
    record = measure_prompts(model_cfg, tasks, benchmark_dirs, evaluation, base_dir=base_dir,
                             model_dir=model_dir, prefetched=prefetched)
    print(f"[check_prompts] {record['model']}: max_length {record['max_length']} "
          f"(model positions {record['model_positions']}), chat template {record['chat_template']}", flush=True)
    print(summary(record), flush=True)
    check(record["tasks"], record["max_length"], record["max_length_setting"], record["model_positions"])
    atomic_write_json(out_json, record)
    return record


# ---------------------------------------------------------------- after an evaluation

def truncation_from_samples(samples: dict[str, list], tasks: dict, tokenizer, max_length: int) -> dict:
    """Study task -> how many of its requests lm-eval cut, from an evaluation's logged samples
    (``simple_evaluate(..., log_samples=True)["samples"]``: per lm-eval task, one row per
    document and filter, each with the request ``arguments``)."""
    requests = {}
    for leaf, rows in samples.items():
        seen, args = set(), []
        for r in rows:  # a document appears once per filter (gsm8k: strict-match, flexible-extract)
            if r["doc_id"] in seen:
                continue
            seen.add(r["doc_id"])
            args.extend(tuple(a) for a in r["arguments"])
        requests[leaf] = args
    measured = measure(requests, tasks, tokenizer, max_length)
    keep = ("requests", "truncated", "longest_prompt_tokens", "max_gen_toks", "budget", "output_type")
    return {name: {k: r[k] for k in keep} | ({"longest_in": r["longest_in"]} if r.get("longest_in") else {})
            | {"max_length": max_length}
            for name, r in measured.items()}
