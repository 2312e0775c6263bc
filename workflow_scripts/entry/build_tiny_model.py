import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.tiny_model import build_from_sft_file  # noqa: E402

with logged(snakemake):  # noqa: F821
    info = build_from_sft_file(snakemake.input.sft, snakemake.output[0], snakemake.params.build)  # noqa: F821
    print(info)
