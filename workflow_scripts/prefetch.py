"""Fetch hub models once, on the login node; find them again, offline, on compute nodes.

Compute nodes on most clusters have no internet. The ``prefetch_model`` rule (a local
rule: it runs where ``snakemake`` runs) downloads each hub model of the study at its
revision into the study's ``cache_dir`` (``HF_HOME``) and writes a record with the commit
the revision resolved to. Training jobs run with the hub offline and load exactly that
commit; if it is not in the cache they stop at once, naming the model and the command
that fetches it.

    python -m workflow_scripts.prefetch HuggingFaceTB/SmolLM2-135M --revision main
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class MissingPrefetchError(RuntimeError):
    """Something a compute job needs is not in the local cache."""


def fetch_command(model_id: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"snakemake prefetch --cores 1 (all of the study), or: python -m workflow_scripts.prefetch {model_id}{rev}"


def prefetch_model(model_id: str, revision: str | None = None) -> dict:
    """Download ``model_id`` at ``revision`` into the Hugging Face cache; return its record."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(model_id, revision=revision)
    except Exception as e:  # offline, unknown repo or revision, no access
        raise MissingPrefetchError(
            f"cannot fetch model {model_id!r} at revision {revision!r} into HF_HOME="
            f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}: {type(e).__name__}: {e}. "
            "Run the prefetch on a machine with internet (the cluster's login node)."
        ) from e
    return {"id": model_id, "revision": revision, "commit": Path(path).name, "path": path}


def cached_model(model_id: str, revision: str | None = None) -> str:
    """The cached snapshot folder of ``model_id`` at ``revision`` (a commit or a branch that
    was prefetched), without touching the network; a clear error if it is not there."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model_id, revision=revision, local_files_only=True)
    except Exception as e:
        raise MissingPrefetchError(
            f"model {model_id!r} at revision {revision!r} is not in the local cache (HF_HOME="
            f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}); compute jobs run offline. "
            f"Fetch it on the login node first: {fetch_command(model_id, revision)}"
        ) from e


def set_offline() -> None:
    """Make every Hugging Face library in this process refuse the network (compute jobs)."""
    os.environ.update(OFFLINE_ENV)
    try:  # huggingface_hub reads the variable at import: tell an already-imported one too
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_id")
    p.add_argument("--revision", default=None)
    p.add_argument("--cache-dir", default=None, help="HF_HOME to fetch into (the study's cache_dir)")
    args = p.parse_args(argv)
    if args.cache_dir:
        os.environ["HF_HOME"] = os.path.abspath(os.path.expanduser(args.cache_dir))
    print(json.dumps(prefetch_model(args.model_id, args.revision), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
