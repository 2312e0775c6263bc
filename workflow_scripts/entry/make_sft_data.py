import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.data import prepare_sft_data  # noqa: E402

with logged(snakemake):  # noqa: F821
    prepare_sft_data(snakemake.params.dataset, snakemake.params.train_files,  # noqa: F821
                     snakemake.output[0], seed=snakemake.params.seed)  # noqa: F821
