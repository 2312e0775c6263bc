import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.evaluate import evaluate_cell  # noqa: E402

with logged(snakemake, offline=True):  # noqa: F821
    p = snakemake.params  # noqa: F821
    evaluate_cell(
        snakemake.input.model,
        p.tasks,
        p.test_files,
        snakemake.output.results,  # noqa: F821
        snakemake.output.samples,
        threads=snakemake.threads,
        run_json=snakemake.input.run,  # noqa: F821
        archive_dir=p.archive,
        benchmark_dirs=p.benchmark_dirs,
        **p.evaluation,
    )
