import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.aggregate import write_tables

with logged(snakemake):
    i, p, o = snakemake.input, snakemake.params, dict(snakemake.output)
    write_tables(p.cells, p.tasks, p.study, o, config=p.config, published_csv=i.published, reference=p.reference)
