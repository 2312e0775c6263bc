"""The user's cluster names come from a file outside git and are checked against the cluster
before any job (workflow_scripts/cluster.py); here against fake `sinfo` and `sacctmgr` on
PATH (tests/test_slurm.py checks a real cluster)."""

import os
import stat
import subprocess
import sys

import pytest
from conftest import REPO

from workflow_scripts.cluster import ClusterError, cluster_file, cluster_names, load_names


def fake(bin_dir, name, output, rc=0):
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {rc}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A login node: sinfo lists cpu (default) and gpu, sacctmgr the user's accounts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake(bin_dir, "sinfo", "cpu*\\ngpu\\n")
    fake(bin_dir, "sacctmgr", "lab-a\\nlab-b\\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def names_file(site, text):
    path = site / "cluster.yaml"
    path.write_text(text)
    return path


def test_names_become_the_slurm_plugins_resources(site, monkeypatch):
    monkeypatch.setenv("LRBS_CLUSTER", str(names_file(site, "partition: gpu\naccount: lab-b\nqos: long\n")))
    assert cluster_names(REPO) == {"slurm_partition": "gpu", "slurm_account": "lab-b", "qos": "long"}


def test_no_file_no_names(tmp_path, monkeypatch):
    monkeypatch.delenv("LRBS_CLUSTER", raising=False)
    assert cluster_file(tmp_path) is None and cluster_names(tmp_path) == {}
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "cluster.yaml").write_text("partition: gpu\n")  # the default place
    assert cluster_file(tmp_path) == tmp_path / "slurm" / "cluster.yaml"


@pytest.mark.parametrize(
    "text,message",
    [
        ("partition: gpu-a100\n", "partition 'gpu-a100' does not exist on this cluster (sinfo lists: cpu, gpu)"),
        ("account: lab-c\n", "account 'lab-c' is not one of"),
        ("partitio: gpu\n", "unknown key 'partitio'; the keys are partition, account, qos, constraint"),
        ("partition: ''\n", "partition must be a name"),
    ],
)
def test_a_name_the_cluster_lacks_is_refused_with_the_file_and_the_fix(site, monkeypatch, text, message):
    path = names_file(site, text)
    monkeypatch.setenv("LRBS_CLUSTER", str(path))
    with pytest.raises(ClusterError, match="^" + str(path)) as err:
        cluster_names(REPO)
    assert message in str(err.value)


def test_without_accounting_an_account_is_not_checked(site, monkeypatch):
    fake(site / "bin", "sacctmgr", "", rc=1)  # no slurmdbd
    monkeypatch.setenv("LRBS_CLUSTER", str(names_file(site, "account: anything\n")))
    assert cluster_names(REPO) == {"slurm_account": "anything"}


def test_a_missing_file_named_by_the_variable_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LRBS_CLUSTER", str(tmp_path / "nope.yaml"))
    with pytest.raises(ClusterError, match="is not a file"):
        cluster_file(REPO)
    assert load_names(names_file(tmp_path, "")) == {}


def test_the_tracked_profile_names_no_cluster_and_the_workflow_refuses_a_wrong_partition(site, tmp_path):
    """Setting cluster names leaves the checkout clean; the refusal comes before any job."""
    import yaml

    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert not {"slurm_partition", "slurm_account"} & set(profile["default-resources"])
    assert "slurm/cluster.yaml" in (REPO / ".gitignore").read_text()
    env = dict(os.environ, LRBS_CLUSTER=str(names_file(site, "partition: a100\n")))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
    proc = subprocess.run(
        [*cmd, "--configfile", str(REPO / "studies/demo.yaml"), "-n"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "partition 'a100' does not exist on this cluster" in out, out
