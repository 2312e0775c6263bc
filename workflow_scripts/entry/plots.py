import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.plots import write_figures  # noqa: E402

with logged(snakemake):  # noqa: F821
    inp = snakemake.input  # noqa: F821
    write_figures(
        inp.scores,
        inp.loss,
        dict(snakemake.output),
        study=snakemake.params.study,  # noqa: F821
        slopes_csv=inp.slopes,
        split_csv=inp.split,
        published_csv=inp.published,
        reference_csv=inp.reference,
    )
