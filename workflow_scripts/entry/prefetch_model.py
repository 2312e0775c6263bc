import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.io import atomic_write_json
from workflow_scripts.prefetch import prefetch_model

with logged(snakemake):
    record = prefetch_model(snakemake.params.model_id, snakemake.params.revision)
    atomic_write_json(snakemake.output[0], record)
    print(f"[prefetch] {record}")
