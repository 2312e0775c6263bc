import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.data import prepare_stage_data
from workflow_scripts.io import atomic_write_json

with logged(snakemake):
    record = prepare_stage_data(
        snakemake.wildcards.stage,
        snakemake.params.dataset,
        snakemake.params.train_files,
        snakemake.output.data,
        seed=snakemake.params.seed,
    )
    atomic_write_json(snakemake.output.source, record)
    print(f"[data] {snakemake.output.data}: {record}")
