import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.benchmark_data import fetch_benchmark  # noqa: E402

with logged(snakemake):  # noqa: F821
    record = fetch_benchmark(
        snakemake.wildcards.task,
        snakemake.output[0],  # noqa: F821
        revision=snakemake.params.revision,
    )  # noqa: F821
    print(f"[prefetch] {snakemake.wildcards.task}: {record.get('dataset')} at {record.get('revision')}")  # noqa: F821
