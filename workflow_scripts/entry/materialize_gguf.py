import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged  # noqa: E402

from workflow_scripts.gguf_source import materialize  # noqa: E402

with logged(snakemake):  # noqa: F821
    g = snakemake.params.gguf  # noqa: F821
    materialize(g["package"], snakemake.output[0], g.get("file"), g.get("tokenizer", "as_shipped"))  # noqa: F821
