import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.io import atomic_write_json  # noqa: E402
from workflow_scripts.prefetch import prefetch_model  # noqa: E402

with logged(snakemake):  # noqa: F821
    record = prefetch_model(snakemake.params.model_id, snakemake.params.revision)  # noqa: F821
    atomic_write_json(snakemake.output[0], record)  # noqa: F821
    print(f"[prefetch] {record}")
