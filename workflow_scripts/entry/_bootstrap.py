"""Shared preamble of the entry scripts: import path and log redirection."""

import contextlib
import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@contextlib.contextmanager
def logged(snakemake, offline: bool = False):
    """Send stdout and stderr of the job to its Snakemake log file (if it has one).

    Also points the Hugging Face cache at the study's ``cache_dir``, before any library
    that reads HF_HOME is imported (the library functions import them lazily), and, for
    compute jobs (``offline=True``), turns the hub off: what they need was prefetched.
    """
    cache = snakemake.config.get("cache_dir")
    if cache:
        os.environ["HF_HOME"] = os.path.abspath(os.path.expanduser(cache))
    if offline:
        from workflow_scripts.prefetch import set_offline

        set_offline()
    if not snakemake.log:
        yield
        return
    Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
    with open(snakemake.log[0], "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            yield
        except BaseException:  # the reason a job failed belongs in its log, not only in Snakemake's
            traceback.print_exc()
            raise
