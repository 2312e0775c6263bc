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
# What huggingface_hub reads a token from before its token file (constants.py, utils/_auth.py:
# HF_TOKEN, then the older HUGGING_FACE_HUB_TOKEN), and the file's own location
TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")


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


def user_token_path() -> Path:
    """The hub token file huggingface_hub reads in this environment: ``$HF_TOKEN_PATH``, else
    ``$HF_HOME/token``, where HF_HOME defaults to ``$XDG_CACHE_HOME/huggingface`` or
    ``~/.cache/huggingface`` (as huggingface_hub's ``constants`` computes them)."""
    if os.environ.get("HF_TOKEN_PATH"):
        return Path(os.path.expandvars(os.path.expanduser(os.environ["HF_TOKEN_PATH"])))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    home = os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(home))) / "token"


def use_cache_dir(cache_dir: str | None) -> None:
    """Make the study's ``cache_dir`` this process's (and its children's) HF_HOME, keeping the
    user's hub login; call it before huggingface_hub is imported (it reads both at import).

    Without ``cache_dir`` nothing changes: the user's own HF_HOME (a site-wide cache) and
    token are used. With it, the token file stored under the user's HF_HOME (``hf auth
    login``) would no longer be found, and gated models would fail at prefetch; so, unless a
    token is already given by HF_TOKEN / HUGGING_FACE_HUB_TOKEN / HF_TOKEN_PATH, or
    ``cache_dir`` holds a token of its own, HF_TOKEN_PATH is pointed at the user's token file.
    """
    if not cache_dir:
        return
    home = os.path.abspath(os.path.expanduser(cache_dir))
    if not any(os.environ.get(v) for v in TOKEN_ENV):
        token = user_token_path()
        if token.is_file() and not os.path.isfile(os.path.join(home, "token")):
            os.environ["HF_TOKEN_PATH"] = str(token)
    os.environ["HF_HOME"] = home


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
    use_cache_dir(args.cache_dir)
    print(json.dumps(prefetch_model(args.model_id, args.revision), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
