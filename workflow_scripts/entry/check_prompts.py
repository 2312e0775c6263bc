import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.prompt_fit import check_prompts

with logged(snakemake, offline=True):
    i, p = snakemake.input, snakemake.params
    check_prompts(
        p.model,
        p.tasks,
        p.benchmark_dirs,
        p.evaluation,
        snakemake.output[0],
        model_dir=(list(i.base) or [None])[0],
        prefetched=(list(i.prefetch) or [None])[0],
    )
