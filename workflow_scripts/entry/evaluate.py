import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.evaluate import evaluate_cell

with logged(snakemake, offline=True):
    p = snakemake.params
    evaluate_cell(
        snakemake.input.model,
        p.tasks,
        p.test_files,
        snakemake.output.results,
        snakemake.output.samples,
        threads=snakemake.threads,
        run_json=snakemake.input.run,
        archive_dir=p.archive,
        benchmark_dirs=p.benchmark_dirs,
        **p.evaluation,
    )
