"""Shared preamble of the entry scripts: import path and log redirection."""

import contextlib
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@contextlib.contextmanager
def logged(snakemake, offline: bool = False):
    """Send stdout and stderr of the job to its Snakemake log file (if it has one).

    Also points the Hugging Face cache at the study's ``cache_dir`` (if it sets one; the
    user's own HF_HOME otherwise), keeping the user's stored hub token, before any library
    that reads HF_HOME is imported (the library functions import them lazily), and, for
    compute jobs (``offline=True``), turns the hub off: what they need was prefetched.
    """
    from workflow_scripts.prefetch import set_offline, use_cache_dir

    use_cache_dir(snakemake.config.get("cache_dir"))
    if offline:
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
