import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.analysis import write_analysis  # noqa: E402

with logged(snakemake):  # noqa: F821
    write_analysis(
        snakemake.input.scores,
        snakemake.params.cells,
        snakemake.params.tasks,  # noqa: F821
        dict(snakemake.output),
        study=snakemake.params.study,
    )  # noqa: F821
