import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.config import with_tracking
from workflow_scripts.launch import train_one
from workflow_scripts.spec import cell_job

with logged(snakemake, offline=True):
    out_dir = Path(snakemake.output.run).parent
    job = cell_job(
        snakemake.params.spec,
        snakemake.params.base_model,
        snakemake.input.data,
        out_dir,
        threads=snakemake.threads,
        data_source=snakemake.input.source,
        prefetched=(list(snakemake.input.prefetch) or [None])[0],
    )
    # tracking from the config, not params: watching the curve retrains no finished cell
    train_one(with_tracking(job, snakemake.config), out_dir / ".launch")
