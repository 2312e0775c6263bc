"""Snakemake orchestration cost: DAG build + dry run for grids of 10, 100 and 1,000 cells,
and a no-op rerun of the finished demo study.

    python benchmarks/orchestration.py            # prints a Markdown table
    python benchmarks/orchestration.py 1000       # one grid size only

Each grid is the demo study with more ratios and seeds (4 tasks, so a 1,000-cell grid is
about 2,000 training + evaluation jobs). Times are wall seconds and child CPU seconds of one
`snakemake -n` process, best of 3; each grid's dry runs alternate with those of two
Snakefiles of shell rules (Snakemake's own floor): ``FLOOR``, the same jobs reading and
writing the same files, and ``BARE``, the same number of train and evaluate jobs only.
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
    cfg["stages"].pop("dpo", None)  # a grid of N SFT cells (the demo's DPO stage names one parent cell)
    batch_sizes = [8, 32]
    seeds = [0] if cells <= 10 else [0, 1, 2, 3, 4]
    n_ratios = cells // (len(batch_sizes) * len(seeds))
    cfg["stages"]["sft"]["grid"] = {"ratios": [1e-6 * 1.05**i for i in range(n_ratios)], "batch_sizes": batch_sizes}
    cfg["stages"]["sft"]["seeds"] = seeds
    return cfg


BARE = """\
CELLS = [f"r{{i}}_bs{{b}}_s{{s}}" for i in range({n}) for b in (8, 32) for s in range({seeds})]
rule all:
    input: expand("runs/m/sft/{{cell}}/eval/results.json", cell=CELLS)
rule data:
    output: "data/sft_train.jsonl"
    shell: "touch {{output}}"
rule train:
    input: "data/sft_train.jsonl"
    output: model=directory("runs/{{model}}/{{stage}}/{{cell}}/model"), run="runs/{{model}}/{{stage}}/{{cell}}/run.json"
    shell: "touch {{output}}"
rule evaluate:
    input: model="runs/{{model}}/{{stage}}/{{cell}}/model", run="runs/{{model}}/{{stage}}/{{cell}}/run.json"
    output: "runs/{{model}}/{{stage}}/{{cell}}/eval/results.json"
    shell: "touch {{output}}"
"""

# The floor with the same jobs AND the same files: every job of the study's DAG (task data,
# training data, base model, train, evaluate, tables, statistics, figures) reading and
# writing the files it does in the study, from shell rules with constant inputs: no input
# functions, params, resources, logs, benchmarks or scripts. What our rules add on top of it
# is the cost of the workflow's own code and directives.
FLOOR = """\
CELLS = [f"r{{i}}_bs{{b}}_s{{s}}" for i in range({n}) for b in (8, 32) for s in range({seeds})]
TASKS = ["arith", "compare", "sequence", "format"]
CELL = "runs/{{model}}/{{stage}}/{{cell}}"
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
    input: model=CELL + "/model", run=CELL + "/run.json", tests=expand("data/synthetic/{{task}}/test.jsonl", task=TASKS)
    output: results=CELL + "/eval/results.json", samples=directory(CELL + "/eval/samples")
    shell: "touch {{output}}"
rule aggregate:
    input: [f"runs/m/sft/{{c}}/{{f}}" for c in CELLS for f in ("run.json", "log_history.json", "eval/results.json")]
    output: "tables/scores.csv"
    shell: "touch {{output}}"
rule statistics:
    input: "tables/scores.csv", expand("runs/m/sft/{{cell}}/eval/samples", cell=CELLS)
    output: "tables/split.csv"
    shell: "touch {{output}}"
rule plots:
    input: "tables/scores.csv", "tables/split.csv"
    output: "figures/split.pdf"
    shell: "touch {{output}}"
"""

# The floor for rules of this workflow's kind: FLOOR's jobs and files, with the directives the
# workflow's rules carry (script, log, benchmark, conda, threads, resources, params), all
# constants. What the workflow costs beyond it is its own code: input and params functions,
# resource functions, the study's loading and checks.
DIRECTIVES = """\
    log: "logs/{rule}/{{model}}_{{stage}}_{{cell}}.log"
    benchmark: "timings/{rule}/{{model}}_{{stage}}_{{cell}}.tsv"
    conda: "env.yaml"
    threads: 1
    resources: mem_mb=16000, runtime=240, gpu=1, cpus_per_gpu=4
    params: spec={{"recipe": {{"lr_scheduler_type": "cosine"}}}}, base="models/m/base"
    script: "entry.py"
"""


def floor_with_directives(cells: int, workdir: Path) -> str:
    """FLOOR, with every train and evaluate rule carrying the workflow's kinds of directives."""
    (workdir / "entry.py").write_text("")
    (workdir / "env.yaml").write_text("dependencies: [python]\n")
    text = bare_snakefile(cells, FLOOR)
    for rule in ("train", "evaluate"):
        head = f"rule {rule}:\n"
        body, rest = text.split(head, 1)[1].split('    shell: "touch {output}"\n', 1)
        text = text.split(head, 1)[0] + head + body + DIRECTIVES.format(rule=rule) + rest
    return text


def bare_snakefile(cells: int, template: str = BARE) -> str:
    """Snakemake's own floor: the same train + evaluate job count (``BARE``: and nothing
    else; ``FLOOR``: and the same files, so the same dependency lookups), from shell rules
    with no functions, resources, logs or scripts."""
    seeds = 1 if cells <= 10 else 5
    return template.format(n=cells // (2 * seeds), seeds=seeds)


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
            table = runs[0]["ours"][2].split("Job stats:")[1].split("total")[0]  # the first listing
            jobs = sum(
                int(line.split()[-1])
                for line in table.splitlines()
                if line.split() and line.split()[0] in ("train", "evaluate")
            )
            ratios = ", ".join(f"{best['ours'][1] / best[k][1]:.2f}x {k}" for k in ("directives", "floor", "bare"))
            rows.append((f"dry run, {cells} cells", jobs, *best["ours"], ratios))
            for name, what in (
                ("directives", "floor + the workflow's kinds of directives (constants)"),
                ("floor", "shell rules, same jobs and files"),
                ("bare", "shell rules, same train+evaluate count"),
            ):
                rows.append((f"{name}: {what}, {cells} cells", jobs, *best[name], ""))
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
        rows.append(("no-op rerun of the finished demo", 0, wall, cpu, ""))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| what | train+evaluate jobs | wall s | CPU s | CPU ratio |\n|---|---|---|---|---|")
    for what, jobs, wall, cpu, ratio in rows:
        print(f"| {what} | {jobs} | {wall:.2f} | {cpu:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
