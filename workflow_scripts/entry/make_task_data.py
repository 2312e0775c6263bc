import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.synthetic import write_task

with logged(snakemake):
    p = snakemake.params
    write_task(p.generator, p.seed, p.n_train, p.n_test, snakemake.output.train, snakemake.output.test)
