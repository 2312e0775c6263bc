import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import logged  # noqa: E402

from workflow_scripts.plots import write_figures  # noqa: E402

with logged(snakemake):  # noqa: F821
    write_figures(snakemake.input.scores, snakemake.input.loss, dict(snakemake.output),  # noqa: F821
                  study=snakemake.params.study)  # noqa: F821
