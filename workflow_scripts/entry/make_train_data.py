import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.data import prepare_stage_data  # noqa: E402
from workflow_scripts.io import atomic_write_json  # noqa: E402

with logged(snakemake):  # noqa: F821
    record = prepare_stage_data(
        snakemake.wildcards.stage,
        snakemake.params.dataset,  # noqa: F821
        snakemake.params.train_files,
        snakemake.output.data,  # noqa: F821
        seed=snakemake.params.seed,
    )  # noqa: F821
    atomic_write_json(snakemake.output.source, record)  # noqa: F821
    print(f"[data] {snakemake.output.data}: {record}")  # noqa: F821
