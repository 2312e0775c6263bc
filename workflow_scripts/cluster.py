"""The user's cluster names (partition, account, QoS, constraint), kept outside git.

The SLURM profile in ``slurm/`` holds the workflow's own settings and is tracked; what names
a site's partition or account lives in an untracked YAML file, so that setting it leaves
the checkout clean (``run.json`` records ``git.dirty``): ``slurm/cluster.yaml`` (ignored by
git; ``slurm/cluster.example.yaml`` shows the keys), or the file ``$LRBS_CLUSTER`` names.

    partition: gpu        # sbatch -p
    account: my_account   # sbatch -A (leave out where the cluster has no accounts)
    qos: normal           # sbatch --qos
    constraint: h100      # sbatch -C

Rules ``train`` and ``evaluate`` (and the packs) ask for these through the SLURM plugin's
resources (rules/common.smk: ``cluster_resources``); resources never rerun a finished job.
Before any job, where ``sinfo`` is on PATH (a login node), the partition must exist and
the account, where the cluster's accounting can say, must be the user's: one message
otherwise, instead of one failed ``sbatch`` per job.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

import yaml

CLUSTER_ENV = "LRBS_CLUSTER"
DEFAULT_FILE = Path("slurm") / "cluster.yaml"
# key in the file -> the SLURM plugin's resource
RESOURCES = {"partition": "slurm_partition", "account": "slurm_account", "qos": "qos", "constraint": "constraint"}


class ClusterError(ValueError):
    """Cluster names that cannot work; the message names the file, the key and the fix."""


def cluster_file(repo: str | Path) -> Path | None:
    """The file of cluster names: ``$LRBS_CLUSTER``, else ``slurm/cluster.yaml`` if present."""
    if os.environ.get(CLUSTER_ENV):
        path = Path(os.path.expanduser(os.environ[CLUSTER_ENV]))
        if not path.is_file():
            raise ClusterError(f"{CLUSTER_ENV}={path} is not a file. Point it at a YAML of cluster names, or unset it.")
        return path
    path = Path(repo) / DEFAULT_FILE
    return path if path.is_file() else None


def load_names(path: str | Path) -> dict[str, str]:
    """The cluster names in ``path``, checked: only known keys, each a non-empty string."""
    names = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(names, dict):
        raise ClusterError(f"{path}: expected keys {', '.join(RESOURCES)}, found {type(names).__name__}.")
    for key, value in names.items():
        if key not in RESOURCES:
            raise ClusterError(f"{path}: unknown key {key!r}; the keys are {', '.join(RESOURCES)}.")
        if not isinstance(value, str | int) or not str(value).strip():
            raise ClusterError(f"{path}: {key} must be a name, not {value!r}.")
    return {key: str(value) for key, value in names.items()}


def slurm_resources(names: dict[str, str]) -> dict[str, str]:
    """The SLURM plugin's resources for these names."""
    return {RESOURCES[key]: value for key, value in names.items()}


def _lines(cmd: list[str]) -> list[str] | None:
    """The output lines of ``cmd``, or None when it cannot answer (missing, failing)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.split() if proc.returncode == 0 else None


def check_names(names: dict[str, str], source: str | Path) -> None:
    """Refuse a partition this cluster does not have, or an account that is not the user's.
    Nothing is checked where ``sinfo`` is not on PATH (not a cluster node), and an account
    only where ``sacctmgr`` answers (it needs slurmdbd)."""
    if not shutil.which("sinfo"):
        return
    if "partition" in names:
        partitions = [p.rstrip("*") for p in _lines(["sinfo", "-h", "-o", "%P"]) or []]
        if partitions and names["partition"] not in partitions:
            raise ClusterError(
                f"{source}: partition {names['partition']!r} does not exist on this cluster "
                f"(sinfo lists: {', '.join(partitions)}). Set partition to one of them."
            )
    if "account" in names and shutil.which("sacctmgr"):
        user = getpass.getuser()
        query = ["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=account"]
        accounts = _lines(query)
        if accounts is not None and names["account"] not in accounts:
            raise ClusterError(
                f"{source}: account {names['account']!r} is not one of {user}'s "
                f"(sacctmgr lists: {', '.join(sorted(set(accounts))) or 'none'}). Set account to one of them."
            )


def cluster_names(repo: str | Path) -> dict[str, str]:
    """The checked SLURM resources from the user's cluster file ({} without one)."""
    path = cluster_file(repo)
    if path is None:
        return {}
    names = load_names(path)
    check_names(names, path)
    return slurm_resources(names)
