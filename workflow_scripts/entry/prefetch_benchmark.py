import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.benchmark_data import fetch_benchmark

with logged(snakemake):
    record = fetch_benchmark(
        snakemake.wildcards.task,
        snakemake.output[0],
        revision=snakemake.params.revision,
    )
    print(f"[prefetch] {snakemake.wildcards.task}: {record.get('dataset')} at {record.get('revision')}")
