import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.aggregate import write_tables  # noqa: E402

with logged(snakemake):  # noqa: F821
    write_tables(
        snakemake.params.cells,
        snakemake.params.tasks,
        snakemake.params.study,  # noqa: F821
        dict(snakemake.output),
        config=snakemake.params.config,  # noqa: F821
        published_csv=snakemake.input.published,
        reference=snakemake.params.reference,
    )  # noqa: F821
