"""The recipes that passed :func:`workflow_scripts.recipes.check_recipe`, remembered.

Importing TRL costs seconds (torch, transformers), and Snakemake reads the config on every
invocation, so a recipe that passed is remembered in this process and in a small file per
recipe under the user's cache (``$XDG_CACHE_HOME/lrbs-study/recipe-checks``, or the folder
``LRBS_RECIPE_CHECK_CACHE`` names; ``off`` there disables it). The file's name is a hash of
everything the verdict depends on (:func:`fingerprint`): stage kind, recipe, the keyword
arguments the pipeline adds, the versions of trl, transformers, torch and accelerate, the
installed packages (their folder's mtime: an optimizer's package installed or removed) and
the source of the recipe check's modules (:data:`CHECK_MODULES`). Refusals are never
remembered.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

from .recipe_fields import PIPELINE_KEYS

CACHE_ENV = "LRBS_RECIPE_CHECK_CACHE"
# the modules whose code decides a verdict: a change to any of them checks every recipe again
CHECK_MODULES = ("recipes", "recipe_fields", "recipe_rules", "recipe_cache")
_passed_here: set[str] = set()  # fingerprints checked in this process


def cache_dir() -> Path | None:
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "no", "false") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrbs-study" / "recipe-checks"


def fingerprint(kind: str, recipe: dict, kwargs: dict) -> str | None:
    """The hash a verdict on this recipe is remembered under; None when nothing is remembered
    (the cache is off, or trl is not installed)."""
    if cache_dir() is None:
        return None
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.origin:
        return None
    versions = {}
    for package in ("trl", "transformers", "torch", "accelerate"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    code = hashlib.sha256()  # the checks themselves
    for module in CHECK_MODULES:
        code.update(Path(__file__).with_name(f"{module}.py").read_bytes())
    payload = {
        "kind": kind,
        "recipe": recipe,
        "kwargs": kwargs,
        "pipeline_keys": PIPELINE_KEYS,
        "versions": versions,
        "python": sys.version,
        "packages_mtime": os.stat(Path(spec.origin).parent.parent).st_mtime_ns,
        "code": code.hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


def passed(fingerprint: str) -> bool:
    """Whether the recipe with this fingerprint passed before, in this process or on file."""
    folder = cache_dir()
    if fingerprint in _passed_here or (folder is not None and (folder / f"{fingerprint}.json").is_file()):
        _passed_here.add(fingerprint)
        return True
    return False


def remember(fingerprint: str, record: dict) -> None:
    """Remember that the recipe with this fingerprint passed (``record`` goes in its file)."""
    _passed_here.add(fingerprint)
    folder = cache_dir()
    if folder is None:
        return
    try:  # a cache that cannot be written only costs the next run the check
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, default=repr)
        os.replace(tmp, folder / f"{fingerprint}.json")
    except OSError:
        pass
