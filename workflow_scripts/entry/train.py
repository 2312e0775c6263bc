import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.launch import train_one  # noqa: E402
from workflow_scripts.spec import cell_job  # noqa: E402

with logged(snakemake, offline=True):  # noqa: F821
    out_dir = Path(snakemake.output.run).parent  # noqa: F821
    job = cell_job(
        snakemake.params.spec,
        snakemake.params.base_model,
        snakemake.input.data,
        out_dir,  # noqa: F821
        threads=snakemake.threads,
        data_source=snakemake.input.source,  # noqa: F821
        prefetched=(list(snakemake.input.prefetch) or [None])[0],
    )  # noqa: F821
    train_one(job, out_dir / ".launch")
