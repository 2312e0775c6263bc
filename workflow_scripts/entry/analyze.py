import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.analysis import write_analysis

with logged(snakemake):
    p = snakemake.params
    write_analysis(
        snakemake.input.scores,
        p.cells,
        p.tasks,
        dict(snakemake.output),
        study=p.study,
        analysis=p.analysis,
        models_csv=snakemake.input.models,
        runs_csv=snakemake.input.runs,
    )
