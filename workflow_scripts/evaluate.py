"""Score one trained cell on some tasks with lm-eval's ``simple_evaluate`` (rule evaluate:
one task per job).

Writes the raw results JSON (lm-eval's own structure, less the samples) and the
per-sample outputs as JSONL, one file per lm-eval task, so every score can be traced to the
model's answers and re-analysed (bootstraps over items need them); and the same evaluation,
dated, in lm-eval's own layout into the archive (:func:`archive_evaluation`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import json
import sys
import threading
import time
from pathlib import Path

from .io import atomic_path
from .lmeval_tasks import SEED, task_specs
from .provenance import git_commit, package_versions


def lm_eval_device() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        return "cuda", "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "cpu", "float32"


def evaluate_cell(
    model_dir: str,
    tasks: dict,
    test_files: dict[str, str],
    out_json: str | Path,
    samples_dir: str | Path,
    *,
    batch_size=64,
    limit=None,
    apply_chat_template=True,
    max_length=None,
    threads: int = 1,
    seed: int = SEED,
    run_json=None,
    archive_dir=None,
    benchmark_dirs: dict[str, str] | None = None,
    backend: str = "hf",
    max_batch_size: int = 64,
) -> dict:
    t0 = time.time()
    if run_json is not None:
        run = json.loads(Path(run_json).read_text())
        if run.get("status", "ok") != "ok":
            return write_skipped(run, out_json, samples_dir)

    with collector_paused():  # seconds of imports
        import torch

        env_info = early_env_info()  # beside the other imports
        import lm_eval
        from lm_eval.loggers import EvaluationTracker
        from lm_eval.tasks import TaskManager
        from lm_eval.utils import handle_non_serializable

        if backend == "hf":  # what simple_evaluate imports on its way to the model, imported here
            import lm_eval.models.huggingface  # noqa: F401
            import transformers.modeling_utils  # noqa: F401

    torch.set_num_threads(threads)
    device, dtype = lm_eval_device()
    model_args = backend_model_args(backend, str(model_dir), dtype, max_length, seed)
    specs = task_specs(tasks, test_files, benchmark_dirs)
    # lm-eval's own record of the run (model, chat template, times), written in its layout
    # into the archive: the dated entry lm-eval's tools read
    tracker = EvaluationTracker(output_path=str(archive_dir) if archive_dir is not None else None)
    print(f"[evaluate] {model_dir}: tasks {sorted(tasks)} on {device} ({dtype}), batch {batch_size}", flush=True)
    with lm_eval_shortcuts(env_info):
        out = lm_eval.simple_evaluate(
            model=backend,
            model_args=model_args,
            tasks=specs,
            batch_size=batch_size,
            device=device,
            max_batch_size=max_batch_size,
            limit=limit,
            apply_chat_template=apply_chat_template,
            log_samples=True,
            evaluation_tracker=tracker,
            # every spec is a full config (or Group) on local files: skip lm-eval's scan of its
            # own task folder (~14 s per job)
            task_manager=TaskManager(include_defaults=False),
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    samples = out.pop("samples", {})
    out["pipeline"] = {
        "versions": package_versions(),
        "git": git_commit(),
        "wall_s": round(time.time() - t0, 3),
        "device": device,
        "dtype": dtype,
        "truncated": count_truncated(samples, tasks, str(model_dir), max_length),
        # what the scores were computed with (speed settings aside): evaluations.py reads it
        "scoring": {"limit": limit, "apply_chat_template": apply_chat_template, "max_length": max_length},
    }
    samples_dir = Path(samples_dir)
    samples_dir.mkdir(parents=True, exist_ok=True)
    for task, rows in samples.items():
        with atomic_path(samples_dir / f"{task}.jsonl") as tmp:
            with open(tmp, "w") as f:
                for r in rows:
                    f.write(json.dumps(r, default=handle_non_serializable, sort_keys=True) + "\n")
    archived = archive_evaluation(tracker, out, samples)  # adds lm-eval's tracker fields to out
    text = json.dumps(out, default=handle_non_serializable, indent=2, sort_keys=True)
    with atomic_path(out_json) as tmp:
        tmp.write_text(text + "\n")
    scores = {
        t: {m: round(float(v), 4) for m, v in r.items() if "," in m and "_stderr" not in m and isinstance(v, float)}
        for t, r in out["results"].items()
    }
    print(f"[evaluate] done in {time.time() - t0:.1f}s: {scores}; archived: {[str(f) for f in archived]}", flush=True)
    return out


@contextlib.contextmanager
def collector_paused():
    """Import the heavy libraries without Python's cyclic garbage collector, then freeze them.

    torch, transformers, datasets and lm-eval make ~700,000 objects as they import, and almost
    no garbage; every full collection after that walks all of them again, and so does the
    interpreter's exit, module by module. Paused here, then ``gc.freeze`` moves what the imports
    made (modules, classes, functions: alive to the end of the process anyway) out of the
    collector's sight: 0.8 s less in the imports and 0.9 s less at exit in a 10 s demo job. The
    collector is back on, as it was, for the evaluation itself; what the caller left is
    collected first, so only the imports' own few objects are frozen, and only where this call
    imports them (the first evaluation in a process).
    """
    if "lm_eval" in sys.modules:
        yield
        return
    enabled = gc.isenabled()
    gc.collect()  # the caller's garbage, while the heap is still small
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def early_env_info():
    """Start torch's ``collect_env`` (results.json's ``pretty_env_info``, as lm-eval records it)
    in a thread: ~0.8 s of subprocesses (pip, lscpu, nvidia-smi) that lm-eval runs only once
    scoring is done. Returns a stand-in for ``torch.utils.collect_env.get_pretty_env_info`` that
    waits for that thread and returns its text, or raises its error (lm-eval records that)."""
    import torch.backends.xnnpack  # noqa: F401  collect_env's one lazy import, made here, not in the thread
    import torch.utils.collect_env

    plain = torch.utils.collect_env.get_pretty_env_info
    box: dict = {}

    def collect():
        try:
            box["text"] = plain()
        except Exception as e:  # noqa: BLE001  raised where lm-eval asks for it
            box["error"] = e

    thread = threading.Thread(target=collect, name="torch collect_env", daemon=True)
    thread.start()

    def get_pretty_env_info() -> str:
        thread.join()
        if "text" in box:
            return box["text"]
        if "error" in box:
            raise box["error"]
        return plain()

    return get_pretty_env_info


@contextlib.contextmanager
def lm_eval_shortcuts(env_info=None):
    """Two fixed costs of every lm-eval 0.4.13 evaluation, cut without changing what it computes.

    Templates: ``lm_eval.utils.apply_template`` compiles its Jinja template anew for every
    document and field (``Environment.from_string`` caches nothing: ~1 ms a call, some 1,200
    calls for a 200-item task, 1 s of a 10 s demo job). Here each distinct template is compiled
    once, in lm-eval's own environment, and rendered per document as lm-eval renders it (a
    ``Template`` renders every call in a fresh context): the same text.

    Environment record: lm-eval's ``add_env_info`` takes torch's ``get_pretty_env_info`` from
    ``env_info`` (:func:`early_env_info`, started now if not given), computed while the model
    loads and the task is scored rather than after.

    Both are put back on exit; tests/test_evaluate_speed.py checks them against lm-eval's own.
    """
    import lm_eval.utils
    import torch.utils.collect_env

    plain_template, plain_env_info = lm_eval.utils.apply_template, torch.utils.collect_env.get_pretty_env_info
    compiled = functools.lru_cache(maxsize=4096)(lm_eval.utils.env.from_string)

    def apply_template(template, doc):
        if not isinstance(template, str):
            return plain_template(template, doc)
        return compiled(template).render(**doc)

    lm_eval.utils.apply_template = apply_template
    torch.utils.collect_env.get_pretty_env_info = env_info or early_env_info()
    try:
        yield
    finally:
        lm_eval.utils.apply_template, torch.utils.collect_env.get_pretty_env_info = plain_template, plain_env_info


def count_truncated(samples: dict, tasks: dict, model_dir: str, max_length=None) -> dict:
    """Per task: requests, how many lm-eval cut from the left (prompt over its budget), the
    longest prompt (:func:`workflow_scripts.prompt_fit.truncation_from_samples`), measured with
    the cell's own tokenizer and chat template. A failure is recorded, never raised: the
    scores are already computed."""
    try:
        from lm_eval.models.huggingface import HFLM
        from lm_eval.models.utils import resolve_max_length
        from transformers import AutoConfig, AutoTokenizer

        from .prompt_fit import truncation_from_samples

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if not max_length:  # what lm-eval's HFLM takes when none is given
            max_length = resolve_max_length(
                AutoConfig.from_pretrained(model_dir), tokenizer, default=HFLM._DEFAULT_MAX_LENGTH
            )
        counts = truncation_from_samples(samples, tasks, tokenizer, int(max_length))
    except Exception as e:  # noqa: BLE001
        print(f"[evaluate] could not count truncated prompts: {type(e).__name__}: {e}", flush=True)
        return {"error": f"{type(e).__name__}: {e}"}
    cut = {k: v["truncated"] for k, v in counts.items() if v["truncated"]}
    if cut:
        print(f"[evaluate] WARNING: lm-eval cut prompts from the left (max_length {max_length}): {cut}", flush=True)
    return counts


def backend_model_args(backend: str, model_dir: str, dtype: str, max_length, seed: int) -> dict:
    """lm-eval model_args for the HF backend (default) or the vLLM backend (optional extra)."""
    if backend == "hf":
        args = {"pretrained": model_dir, "dtype": dtype}
        if max_length:
            args["max_length"] = max_length
        return args
    if backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise RuntimeError(
                "evaluation.backend is vllm but the vllm package is not installed in this "
                "job's environment: pip install -e .[vllm] on the GPU nodes, or set "
                "evaluation.backend: hf."
            )
        args = {"pretrained": model_dir, "dtype": dtype, "seed": seed, "gpu_memory_utilization": 0.8}
        if max_length:
            args["max_model_len"] = max_length
        return args
    raise ValueError(f"unknown lm-eval backend {backend!r}")


def archive_evaluation(tracker, results: dict, samples: dict) -> list[Path]:
    """Write one evaluation into the archive the way lm-eval's ``EvaluationTracker`` writes it:
    ``<archive>/<model name>/results_<ISO time>.json`` (the results with lm-eval's config record
    and task hashes) and ``samples_<task>_<ISO time>.jsonl`` per task, so lm-eval's tools read
    it. Each evaluation is a new, dated entry; nothing in the workflow deletes the archive, so
    a re-evaluation (Snakemake deletes a job's outputs before it reruns it) loses none.
    ``results`` gains the tracker's fields (model name, chat template, times, task hashes).
    Returns the files written (none without an output path)."""
    if tracker.output_path is None:
        return []
    samples = copy.deepcopy(samples)  # lm-eval rewrites each sample's arguments as it saves it
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results.get("configs", {}):
        if task in samples:
            tracker.save_results_samples(task_name=task, samples=samples[task])
    folder = Path(tracker.output_path) / str(tracker.general_config_tracker.model_name_sanitized)
    files = sorted(folder.glob(f"*_{tracker.date_id}.json*"))
    if not files:  # lm-eval logs a failed save and goes on; an evaluation must not lose its record
        raise RuntimeError(f"lm-eval's EvaluationTracker wrote nothing into {folder}")
    return files


def write_skipped(run: dict, out_json, samples_dir) -> dict:
    """A cell that did not train to the end is not scored: record why instead of a number."""
    why = run.get("diverged") or {}
    out = {
        "status": "skipped",
        "reason": f"training {run['status']}: {why.get('reason', '')}".strip(),
        "run_status": run["status"],
        "results": {},
    }
    Path(samples_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"[evaluate] skipped {run['run_id']}: {out['reason']}", flush=True)
    return out


def primary_scores(results: dict, tasks: dict) -> dict:
    return {name: round(results.get(name, {}).get(t["metric"], float("nan")), 4) for name, t in tasks.items()}
