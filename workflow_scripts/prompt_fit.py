"""Do a study's benchmark prompts fit in ``evaluation.max_length``?

lm-eval's HF backend cuts a prompt that is too long from the left, with nothing but a log
warning: a few-shot prompt loses its first exemplars (or its instructions) and the score
drops for a reason that has nothing to do with the model. With ``max_length: 2048`` and
BBH's ``max_gen_toks: 1024``, 1,024 tokens remain for a 3-shot chain-of-thought prompt,
and several BBH subtasks need more before their question is even added.

This module builds the requests exactly as our evaluation will
(:mod:`workflow_scripts.prompt_requests`: lm-eval's own task definitions on local files,
the study's few-shot counts and seed, the cells' chat template, lm-eval's own
tokenisation) and compares every prompt with the budget lm-eval gives it
(:mod:`workflow_scripts.prompt_lengths`: a generation's context must leave room for its
``max_gen_toks``, a multiple-choice context + continuation must fit in ``max_length``).

:func:`check_prompts` is the ``check_prompts`` rule (rules/checks.smk): it refuses a study
whose prompts would be cut, before any evaluation job, naming the task, its longest prompt
and the ``evaluation.max_length`` it needs. :func:`truncation_from_samples` counts the
requests an evaluation actually cut (``results.json``: ``pipeline.truncated``).
"""

from __future__ import annotations

import os

from .io import atomic_write_json
from .prompt_lengths import GENERATE, measure
from .prompt_requests import build_requests, load_tokenizer, study_specs


class PromptsDoNotFit(ValueError):
    """Some prompts of a study would be cut by lm-eval; the message says how to fix it."""


def _n(x: int) -> str:
    return f"{x:,}"


def problems(measured: dict[str, dict], max_length: int, setting=None, positions: int | None = None) -> list[str]:
    """One sentence per task whose prompts would be cut (empty: everything fits)."""
    where = (
        f"evaluation.max_length {setting}"
        if setting
        else f"evaluation.max_length (unset: the model's {max_length} positions)"
    )
    out = []
    for name, r in measured.items():
        if not r["truncated"]:
            continue
        sub = f" ({r['longest_in']})" if r.get("longest_in") else ""
        if r["output_type"] == GENERATE:
            what = (
                f"longest {_n(r['longest_prompt_tokens'])} tokens{sub} + {_n(r['max_gen_toks'])} generated "
                f"> {_n(max_length)}"
            )
        else:
            what = f"longest context + continuation {_n(r['longest_prompt_tokens'])} tokens{sub} > {_n(max_length)}"
        fix = f"set evaluation.max_length: {r['needs_max_length']} or more"
        if positions and r["needs_max_length"] > positions:
            fix = (
                f"the model has only {_n(positions)} positions: lower tasks.{name}.num_fewshot or the "
                f"task's max_gen_toks"
            )
        out.append(
            f"{where} cuts {name} prompts: {what}; {fix} "
            f"({_n(r['truncated'])} of {_n(r['requests'])} requests would be cut from the left)"
        )
    return out


def check(measured: dict[str, dict], max_length: int, setting=None, positions: int | None = None) -> None:
    """Raise :class:`PromptsDoNotFit` naming every task whose prompts would be cut."""
    found = problems(measured, max_length, setting, positions)
    if found:
        need = max(r["needs_max_length"] for r in measured.values() if r["truncated"])
        tail = (
            ""
            if len(found) == 1 or (positions and need > positions)
            else f". All of them fit with evaluation.max_length: {need}"
        )
        raise PromptsDoNotFit("; ".join(found) + tail)


def measure_prompts(
    model_cfg: dict,
    tasks: dict,
    benchmark_dirs: dict,
    evaluation: dict,
    *,
    base_dir: str | os.PathLike = ".",
    model_dir=None,
    prefetched=None,
    tokenizer=None,
    positions: int | None = None,
) -> dict:
    """The study's built-in tasks measured for one model: what :func:`check_prompts` writes.

    ``tokenizer`` (with ``positions``) skips :func:`load_tokenizer` (tests, and callers
    that have one loaded already)."""
    builtin = {n: t for n, t in tasks.items() if not t.get("synthetic")}
    if tokenizer is None:
        tokenizer, positions = load_tokenizer(model_cfg, base_dir, model_dir, prefetched)
    setting = evaluation.get("max_length")
    max_length = int(setting or positions)
    requests = build_requests(
        study_specs(builtin, benchmark_dirs),
        tokenizer,
        apply_chat_template=evaluation.get("apply_chat_template", True),
        limit=evaluation.get("limit"),
    )
    measured = measure(requests, builtin, tokenizer, max_length)
    return {
        "model": model_cfg.get("name"),
        "max_length": max_length,
        "max_length_setting": setting,
        "model_positions": positions,
        "apply_chat_template": evaluation.get("apply_chat_template", True),
        "chat_template": model_cfg.get("chat_template", "tokenizer"),
        "tasks": measured,
        "needs_max_length": max((r["needs_max_length"] or 0 for r in measured.values()), default=0),
        "problems": problems(measured, max_length, setting, positions),
    }


def summary(record: dict) -> str:
    lines = [
        f"{'task':<24} {'type':<15} {'requests':>9} {'longest':>8} {'gen':>5} {'budget':>7} "
        f"{'cut':>6} {'needs':>6}  longest in"
    ]
    for name, r in record["tasks"].items():
        lines.append(
            f"{name:<24} {r['output_type'] or '':<15} {r['requests']:>9} {r['longest_prompt_tokens']:>8} "
            f"{r['max_gen_toks']:>5} {r['budget'] or '':>7} {r['truncated']:>6} "
            f"{r['needs_max_length'] or '':>6}  {r.get('longest_in', '')}"
        )
    return "\n".join(lines)


def check_prompts(
    model_cfg: dict,
    tasks: dict,
    benchmark_dirs: dict,
    evaluation: dict,
    out_json,
    *,
    base_dir: str | os.PathLike = ".",
    model_dir=None,
    prefetched=None,
) -> dict:
    """Measure, print the table, and write ``out_json`` only when every prompt fits; else
    raise :class:`PromptsDoNotFit` (the rule fails; no evaluation job starts)."""
    record = measure_prompts(
        model_cfg, tasks, benchmark_dirs, evaluation, base_dir=base_dir, model_dir=model_dir, prefetched=prefetched
    )
    print(
        f"[check_prompts] {record['model']}: max_length {record['max_length']} "
        f"(model positions {record['model_positions']}), chat template {record['chat_template']}",
        flush=True,
    )
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
    return {
        name: {k: r[k] for k in keep}
        | ({"longest_in": r["longest_in"]} if r.get("longest_in") else {})
        | {"max_length": max_length}
        for name, r in measured.items()
    }
