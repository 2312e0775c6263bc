import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.synthetic import write_task  # noqa: E402

with logged(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    write_task(p.generator, p.seed, p.n_train, p.n_test, snakemake.output.train, snakemake.output.test)  # noqa: F821
