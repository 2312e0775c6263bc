import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.plots import write_figures

with logged(snakemake):
    inp = snakemake.input
    write_figures(
        inp.scores,
        inp.loss,
        dict(snakemake.output),
        study=snakemake.params.study,
        slopes_csv=inp.slopes,
        split_csv=inp.split,
        optima_csv=inp.optima,
        comparison_csv=inp.comparison,
        sizes_csv=inp.sizes,
        published_csv=inp.published,
        reference_csv=inp.reference,
        stability_csv=inp.stability,
    )
