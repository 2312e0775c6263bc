import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.train import train_cell  # noqa: E402

with logged(snakemake, offline=True):  # noqa: F821
    train_cell(snakemake.params.spec, snakemake.params.base_model, snakemake.input.data,  # noqa: F821
               Path(snakemake.output.run).parent, threads=snakemake.threads,  # noqa: F821
               data_source=snakemake.input.source,  # noqa: F821
               prefetched=(list(snakemake.input.prefetch) or [None])[0])  # noqa: F821
