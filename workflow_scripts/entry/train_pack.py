import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.config import with_tracking
from workflow_scripts.launch import run_cells

with logged(snakemake, offline=True):
    # tracking from the config, not params: watching the curves retrains no finished cell
    jobs = [with_tracking(job, snakemake.config) for job in snakemake.params.jobs]
    run_cells(jobs, Path(snakemake.log.pack).parent / f".{Path(snakemake.log.pack).stem}")
