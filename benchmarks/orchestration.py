"""Snakemake orchestration cost: DAG build + dry run for grids of 10, 100 and 1,000 cells,
and a no-op rerun of the finished demo study.

    python benchmarks/orchestration.py            # prints a Markdown table
    python benchmarks/orchestration.py 1000       # one grid size only

Each grid is the demo study's SFT stage with more ratios and seeds: one train job per cell
and one evaluate job per (cell, task) with the demo's 4 tasks, so a 1,000-cell grid is
1,000 train + 4,000 evaluate jobs. Times are wall seconds and child CPU seconds of one
`snakemake -n` process, best of 3; each grid's dry runs alternate with those of three
Snakefiles of shell rules (Snakemake's own floors): ``BARE``, the same number of train and
evaluate jobs only; ``FLOOR``, every job of the study's DAG reading and writing the same
files; ``DIRECTIVES``, FLOOR with the kinds of directives our train and evaluate rules carry,
as constants. Each floor's job stats are checked against the workflow's before it is timed.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 3  # best of


def grid_config(cells: int) -> dict:
    cfg = yaml.safe_load((REPO / "studies" / "demo.yaml").read_text())
    cfg["models"] = cfg["models"][:1]  # one model (the demo's second has an SFT grid of its own)
    cfg["stages"].pop("dpo", None)  # a grid of N SFT cells (the demo's DPO stage names one parent cell)
    batch_sizes = [8, 32]
    seeds = [0] if cells <= 10 else [0, 1, 2, 3, 4]
    n_ratios = cells // (len(batch_sizes) * len(seeds))
    cfg["stages"]["sft"]["grid"] = {"ratios": [1e-6 * 1.05**i for i in range(n_ratios)], "batch_sizes": batch_sizes}
    cfg["stages"]["sft"]["seeds"] = seeds
    return cfg


# cell names that match the workflow's wildcard pattern (grid.CELL_PATTERN: r1e-06_bs8_s0)
CELLS = """\
CELLS = [f"r{{i}}e-06_bs{{b}}_s{{s}}" for i in range({n}) for b in (8, 32) for s in range({seeds})]
TASKS = ["arith", "compare", "sequence", "format"]
"""

BARE = (
    CELLS
    + """\
rule all:
    input: expand("runs/m/sft/{{cell}}/eval/tasks/{{task}}/results.json", cell=CELLS, task=TASKS)
rule data:
    output: "data/sft_train.jsonl"
    shell: "touch {{output}}"
rule train:
    input: "data/sft_train.jsonl"
    output: model=directory("runs/{{model}}/{{stage}}/{{cell}}/model"), run="runs/{{model}}/{{stage}}/{{cell}}/run.json"
    shell: "touch {{output}}"
rule evaluate:
    input: model="runs/{{model}}/{{stage}}/{{cell}}/model", run="runs/{{model}}/{{stage}}/{{cell}}/run.json"
    output: "runs/{{model}}/{{stage}}/{{cell}}/eval/tasks/{{task}}/results.json"
    shell: "touch {{output}}"
"""
)

# The floor with the same jobs AND the same files: every job of the study's DAG (task data,
# training data, base model, train, evaluate per (cell, task), tables, statistics, figures)
# reading and writing the files it does in the study, from shell rules with constant inputs:
# no input functions, params, resources, logs, benchmarks or scripts. What our rules add on
# top of it is the cost of the workflow's own code and directives.
FLOOR = (
    CELLS
    + """\
CELL = "runs/{{model}}/{{stage}}/{{cell}}"
EVAL = CELL + "/eval/tasks/{{task}}"
rule all:
    input: "tables/scores.csv", "tables/split.csv", "figures/split.pdf"
rule make_task_data:
    output: train="data/synthetic/{{task}}/train.jsonl", test="data/synthetic/{{task}}/test.jsonl"
    shell: "touch {{output}}"
rule make_train_data:
    input: expand("data/synthetic/{{task}}/train.jsonl", task=TASKS)
    output: data="data/{{stage}}_train.jsonl", source="data/{{stage}}_train.source.json"
    shell: "touch {{output}}"
rule build_tiny_model:
    input: "data/sft_train.jsonl"
    output: directory("models/{{model}}/base")
    shell: "mkdir -p {{output}}"
rule train:
    input: base="models/{{model}}/base", data="data/{{stage}}_train.jsonl", source="data/{{stage}}_train.source.json"
    output: model=directory(CELL + "/model"), run=CELL + "/run.json", history=CELL + "/log_history.json"
    shell: "touch {{output}}"
rule evaluate:
    input: model=CELL + "/model", run=CELL + "/run.json", data="data/synthetic/{{task}}/test.jsonl"
    output: results=EVAL + "/results.json", samples=directory(EVAL + "/samples")
    shell: "touch {{output}}"
rule aggregate:
    input:
        [f"runs/m/sft/{{c}}/{{f}}" for c in CELLS for f in ("run.json", "log_history.json")],
        [f"runs/m/sft/{{c}}/eval/tasks/{{t}}/results.json" for c in CELLS for t in TASKS],
    output: "tables/scores.csv"
    shell: "touch {{output}}"
rule statistics:
    input: "tables/scores.csv", expand("runs/m/sft/{{cell}}/eval/tasks/{{task}}/samples", cell=CELLS, task=TASKS)
    output: "tables/split.csv"
    shell: "touch {{output}}"
rule plots:
    input: "tables/scores.csv", "tables/split.csv"
    output: "figures/split.pdf"
    shell: "touch {{output}}"
"""
)

# The floor for rules of this workflow's kind: FLOOR's jobs and files, with the directives the
# workflow's train and evaluate rules carry (script, log, benchmark, conda, threads,
# resources, params, train's wildcard constraint) and its global wildcard constraints (the
# patterns of workflow_scripts/grid.py and common.smk), all constants, as many params as each
# real rule has. What the workflow costs beyond it is its own code: input and params
# functions, resource functions, the study's loading and checks.
WILDCARD_CONSTRAINTS = r"""wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    stage=r"(?:sft|dpo)(?:_[a-z0-9]+)?",
    cell=r"(?:r|lr)[0-9.]+e[+-]\d+_bs\d+_s\d+",
    task=r"[A-Za-z0-9_]+",
"""
DIRECTIVES = {
    "train": """\
    log: "logs/train/{model}/{stage}/{cell}.log"
    benchmark: "timings/train/{model}/{stage}/{cell}.tsv"
    wildcard_constraints: stage="sft"
    conda: "env.yaml"
    threads: 1
    resources: mem_mb=16000, runtime=240, gpu=1, cpus_per_gpu=4
    params: spec={"recipe": {"lr_scheduler_type": "cosine"}}, base_model="models/m/base"
    script: "entry.py"
""",
    "evaluate": """\
    log: "logs/evaluate/{model}/{stage}/{cell}/{task}.log"
    benchmark: "timings/evaluate/{model}/{stage}/{cell}/{task}.tsv"
    conda: "env.yaml"
    threads: 1
    resources: mem_mb=16000, runtime=240, gpu=1, cpus_per_gpu=4
    params:
        evaluation={
            "task": {"arith": {"synthetic": "arithmetic"}},
            "data": {"arith": "data/synthetic/arith/test.jsonl"},
            "scoring": {"limit": None, "max_length": 2048, "apply_chat_template": True},
        },
        archive="archive/{model}/{stage}/{cell}/eval",
    script: "entry.py"
""",
}


def floor_with_directives(cells: int, workdir: Path) -> str:
    """FLOOR, with the global wildcard constraints and the train and evaluate rules carrying
    the workflow's kinds of directives (``DIRECTIVES``)."""
    (workdir / "entry.py").write_text("")
    (workdir / "env.yaml").write_text("dependencies: [python]\n")
    text = bare_snakefile(cells, FLOOR)
    head, rules = text.split("rule all:\n", 1)
    text = head + WILDCARD_CONSTRAINTS + "rule all:\n" + rules
    for rule, directives in DIRECTIVES.items():
        start = f"rule {rule}:\n"
        before, after = text.split(start, 1)
        body, rest = after.split('    shell: "touch {output}"\n', 1)
        text = before + start + body + directives + rest
    return text


def bare_snakefile(cells: int, template: str = BARE) -> str:
    """One of Snakemake's own floors for a grid of ``cells`` cells (``BARE``: the same train
    and evaluate job count and nothing else; ``FLOOR``: every job and the same files, so the
    same dependency lookups), from shell rules with no functions, resources, logs or scripts."""
    seeds = 1 if cells <= 10 else 5
    return template.format(n=cells // (2 * seeds), seeds=seeds)


def job_stats(out: str) -> dict[str, int]:
    """``{rule: jobs}`` from the first "Job stats" table of a dry run's output."""
    stats = {}
    for line in out.split("Job stats:", 1)[1].splitlines():
        row = line.split()
        if len(row) == 2 and row[1].isdigit():
            stats[row[0]] = int(row[1])
            if row[0] == "total":
                return stats
    raise SystemExit(f"no job stats in: {out[-2000:]}")


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout + proc.stderr


def dry_run(snakefile: Path, workdir: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", workdir, *extra, "-n", "--quiet", "rules"]


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10, 100, 1000]
    rows = []
    for cells in sizes:
        with tempfile.TemporaryDirectory() as d:
            cfg_path = Path(d) / "study.yaml"
            cfg_path.write_text(yaml.safe_dump(grid_config(cells)))
            (Path(d) / "directives").write_text(floor_with_directives(cells, Path(d)))
            (Path(d) / "floor").write_text(bare_snakefile(cells, FLOOR))
            (Path(d) / "bare").write_text(bare_snakefile(cells, BARE))
            cmds = {"ours": dry_run(REPO / "Snakefile", d, "--configfile", str(cfg_path))}
            cmds.update({name: dry_run(Path(d) / name, d) for name in ("directives", "floor", "bare")})
            # interleaved, so that all see the same stretch of a shared machine
            runs = [{name: timed(cmd, REPO) for name, cmd in cmds.items()} for _ in range(ROUNDS)]
            best = {name: min(r[name][:2] for r in runs) for name in cmds}
            stats = {name: job_stats(runs[0][name][2]) for name in cmds}
            counts = {name: (s.get("train", 0), s.get("evaluate", 0), s["total"]) for name, s in stats.items()}
            # the floors must have the workflow's jobs: all of them (floor, directives), or its
            # train and evaluate jobs (bare)
            for name in ("directives", "floor"):
                if stats[name] != stats["ours"]:
                    raise SystemExit(f"{name}: {stats[name]} is not the workflow's {stats['ours']}")
            if counts["bare"][:2] != counts["ours"][:2]:
                raise SystemExit(f"bare: train, evaluate {counts['bare'][:2]}, not {counts['ours'][:2]}")
            ratios = ", ".join(f"{best['ours'][1] / best[k][1]:.2f}x {k}" for k in ("directives", "floor", "bare"))
            rows.append((f"dry run, {cells} cells", *counts["ours"], *best["ours"], ratios))
            for name, what in (
                ("directives", "floor + the workflow's kinds of directives (constants)"),
                ("floor", "shell rules, same jobs and files"),
                ("bare", "shell rules, same train+evaluate count"),
            ):
                rows.append((f"{name}: {what}, {cells} cells", *counts[name], *best[name], ""))
    if (REPO / "results" / "tables" / "scores.csv").exists():
        cmd = [sys.executable, "-m", "snakemake", "--configfile", "studies/demo.yaml", "--cores", "2"]
        # a dry run first: a demo that is not up to date (code or params changed since it ran)
        # would otherwise be retrained by the "no-op" runs
        _, _, out = timed(cmd + ["-n"], REPO)
        if "Nothing to be done" not in out:
            raise SystemExit(
                "the demo study in results/ is not up to date: run `make demo` first (no-op rerun not timed)"
            )
        runs = [timed(cmd, REPO) for _ in range(3)]
        assert all("Nothing to be done" in out for _, _, out in runs)
        wall, cpu, _ = min(runs)
        rows.append(("no-op rerun of the finished demo", 0, 0, 0, wall, cpu, ""))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| what | train jobs | evaluate jobs (cell x task) | all jobs | wall s | CPU s | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for what, train, evaluate, total, wall, cpu, ratio in rows:
        print(f"| {what} | {train} | {evaluate} | {total} | {wall:.2f} | {cpu:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
