"""What a result needs to be cited: package versions, git commit, file fingerprints."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path

PACKAGES = [
    "torch",
    "transformers",
    "trl",
    "lm_eval",
    "datasets",
    "tokenizers",
    "accelerate",
    "snakemake",
    "pandas",
    "numpy",
]
REPO_DIR = Path(__file__).resolve().parent.parent


def package_versions(packages=PACKAGES) -> dict:
    out = {"python": platform.python_version()}
    for p in packages:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = None
    return out


def git_commit(repo: Path = REPO_DIR) -> dict:
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
