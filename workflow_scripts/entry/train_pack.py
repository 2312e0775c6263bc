import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.launch import run_cells  # noqa: E402

with logged(snakemake, offline=True):  # noqa: F821
    jobs = snakemake.params.jobs  # noqa: F821
    run_cells(jobs, Path(snakemake.log.pack).parent / f".{Path(snakemake.log.pack).stem}")  # noqa: F821
