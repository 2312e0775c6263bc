"""A real single-node SLURM cluster for the tests (Debian's slurm-wlm 22.05 and munge).

``slurm_cluster(folder)`` is a context manager: it writes slurm.conf and gres.conf into
``folder``, makes four fake GPU devices (character devices 1:3, like /dev/null) for the GPU
GRES, starts munged, slurmctld and slurmd in the foreground as child processes, waits until
the node is idle, yields a ``SlurmCluster`` whose ``env`` (``SLURM_CONF``, and the ``PATH``
with the SLURM tools) every client command needs, and afterwards cancels the jobs left and
stops the three daemons by pid. Everything lives in ``folder`` (own munge key and socket,
free TCP ports), with one exception: /etc/slurm/slurm.conf is a symlink to the cluster's
slurm.conf while it runs, and removed afterwards. ``SLURM_CONF`` is not enough: inside a job,
the Snakemake plugin's job step removes every ``SLURM_*`` variable but the job ids before it
calls ``srun``, so srun only finds the default path. A machine with its own
/etc/slurm/slurm.conf gets no test cluster (``ensure_slurm`` says so). Without ``folder``
(the tests' way), the cluster makes its own under /tmp and removes it afterwards.

The daemons run as root, the clients as anyone: an ordinary user's ``sbatch``, ``squeue`` and
the ``srun`` inside their jobs read slurm.conf (also through the /etc/slurm/slurm.conf link)
and talk to munged over its socket. So the folder and every folder above it let other users
through (a pytest tmp_path does not: /tmp/pytest-of-root is mode 700, and the cluster refuses
such a folder), the folder is 0755 and so is the socket's folder ``munge/``; only the key, with
munged's seed and pid files, stays private (``munge-key/``, 0700). munged runs without
``--force``, so it checks this itself: it refuses a key others can read, folders others can
write, and a socket others cannot reach ("execute permissions for all required"). A job runs
as the user who submitted it; ``client_dirs()`` are the folders that user's PATH needs.

``ensure_slurm()`` installs the packages with apt-get when ``slurmctld`` is missing (root
only) and returns None, or the reason why no cluster can run (the tests then skip, or fail
where ``LRBS_REQUIRE_SLURM=1``, as in CI).

Why this configuration (checked on Slurm 22.05.8, /work/shared/reference/slurm.md):
proctrack/linuxproc and task/none need no cgroups or systemd; accounting_storage/none means
no slurmdbd, so ``sacct`` fails and the Snakemake plugin must poll with ``squeue``, which only
sees finished jobs for MinJobAge seconds (600 here); DefMemPerCPU keeps one job from taking
the whole node; config_overrides lets the node claim 16 CPUs and 64 GB on a 2-core CI machine;
a GPU GRES needs device files (``File=``), else slurmd drops it and the node drains; with it,
slurmd sets CUDA_VISIBLE_DEVICES in every job and step that asks for a GPU.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
N_GPUS = 4
NODE_CPUS = 16  # 4 GPU jobs at --cpus-per-gpu=4 at once (config_overrides: any machine)
NODE_MEMORY_MB = 64000  # 4 jobs at mem_mb=16000; not enforced (no cgroups)
PARTITIONS = ("cpu", "gpu")  # cpu is the default partition: a job lands on gpu only if asked
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")  # where srun inside a job looks (see above)
MARKER = "# Single-node test cluster of tests/slurm_cluster.py"
CLUSTER_DIRS = Path("/tmp")  # where slurm_cluster() makes its folder when given none


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def _apt_env() -> dict:
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def install_slurm(timeout: float = 900) -> str | None:
    """apt-get install slurm-wlm munge (update the package lists first if that fails)."""
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_apt_env(), timeout=timeout)
    if proc.returncode != 0:  # e.g. a fresh container without package lists
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=_apt_env(), timeout=timeout)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_apt_env(), timeout=timeout)
    if proc.returncode != 0:
        return f"apt-get install {' '.join(PACKAGES)} failed: {(proc.stderr or proc.stdout)[-1500:]}"
    return None


def missing_tools() -> list[str]:
    return [t for t in (*DAEMONS, "mungekey", *CLIENTS) if not _which(t)]


def client_dirs() -> list[str]:
    """The folders of SLURM's client tools: what another user's PATH needs (``SlurmCluster.env``
    has root's PATH, with folders other users may not enter)."""
    return list(dict.fromkeys(str(Path(_which(t)).parent) for t in CLIENTS if _which(t)))


def ensure_slurm() -> str | None:
    """None when slurmctld, slurmd and munged are there (installed now if need be), else why not."""
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root (SlurmUser=root); not root"
    if conf_conflict():
        return conf_conflict()
    if not missing_tools():
        return None
    if not shutil.which("apt-get"):
        return f"SLURM is not installed ({', '.join(missing_tools())} missing) and there is no apt-get"
    try:
        reason = install_slurm()
    except subprocess.TimeoutExpired:
        reason = f"apt-get install {' '.join(PACKAGES)} timed out"
    if reason:
        return reason
    if missing_tools():
        return f"after apt-get install, still missing: {', '.join(missing_tools())}"
    return None


def conf_conflict() -> str | None:
    """Why /etc/slurm/slurm.conf cannot point at a new test cluster now, or None."""
    if not (SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink()):
        return None
    try:
        text = SYSTEM_CONF.read_text()
    except FileNotFoundError:  # a dangling link: a test cluster that was killed
        return None if SYSTEM_CONF.is_symlink() else f"{SYSTEM_CONF} is unreadable"
    if not text.startswith(MARKER):
        return (
            f"{SYSTEM_CONF} exists (a real SLURM setup?); the test cluster needs that path for "
            "srun inside jobs and does not replace it"
        )
    pid_file = Path(os.readlink(SYSTEM_CONF)).parent / "slurmctld.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().split()[0])
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"slurmctld"):
            return f"another test cluster is running ({SYSTEM_CONF} -> {os.readlink(SYSTEM_CONF)})"
    return None  # a test cluster's conf left behind


def link_system_conf(conf: Path) -> None:
    if conf_conflict():
        raise RuntimeError(conf_conflict())
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        SYSTEM_CONF.unlink()
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.symlink_to(conf)


def unlink_system_conf(conf: Path) -> None:
    if SYSTEM_CONF.is_symlink() and Path(os.readlink(SYSTEM_CONF)) == conf:
        SYSTEM_CONF.unlink()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_fake_gpus(folder: Path, n: int = N_GPUS) -> str:
    """n character devices 1:3 (what /dev/null is) named fakegpu0..n-1; the gres.conf File=.

    In ``folder`` if the file system allows device nodes to be made there, else in /dev."""
    for base in (folder, Path("/dev")):
        try:
            base.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                dev = base / f"fakegpu{i}"
                if not dev.exists():
                    os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # S_IFCHR
            return f"{base}/fakegpu[0-{n - 1}]"
        except OSError:
            continue
    raise OSError("cannot make the fake GPU devices (mknod) in the test folder or /dev")


def slurm_conf(folder: Path, node: str, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
{MARKER} (Slurm 22.05), in {folder}
ClusterName=lrbstest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/munge.socket
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=1000
GresTypes=gpu
# squeue (no slurmdbd) sees a finished job only this long
MinJobAge=600
ReturnToService=2
SchedulerParameters=sched_interval=1
NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} Gres=gpu:{N_GPUS} State=UNKNOWN
PartitionName={PARTITIONS[0]} Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITIONS[1]} Nodes={node} MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    folder: Path
    node: str
    env: dict  # what client commands (sbatch, squeue, snakemake's plugin) need
    procs: dict = field(default_factory=dict)  # daemon name -> Popen

    @property
    def pids(self) -> dict:
        return {name: p.pid for name, p in self.procs.items()}

    def run(self, *cmd: str, check: bool = True) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **self.env), timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}\n{self.logs()}")
        return proc.stdout

    def jobs(self) -> list[dict]:
        """Every job the controller still knows (MinJobAge keeps finished ones), as dicts of
        ``scontrol -d show job`` fields (JobId, JobName, Comment, Partition, JobState,
        StartTime, EndTime, TresPerJob; GRES, the GPU indices, only while the job runs)."""
        out = self.run("scontrol", "-d", "-o", "show", "job", check=False)
        return [parse_scontrol(line) for line in out.splitlines() if line.startswith("JobId=")]

    def logs(self) -> str:
        parts = []
        for name in sorted((self.folder / "log").iterdir()):
            parts.append(f"--- {name.name}\n" + name.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def node_state(self) -> str:
        """The node's state ("idle", "mix", "alloc", "drain", ...); one line per partition."""
        states = set(self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%t", check=False).split())
        return states.pop() if len(states) == 1 else ",".join(sorted(states))


def parse_scontrol(line: str) -> dict:
    """``scontrol -o show job`` prints Key=Value pairs separated by spaces (values that hold
    spaces, like Command=, come last or are not needed here)."""
    fields, key = {}, None
    for part in line.split(" "):
        if "=" in part and part.split("=", 1)[0].replace(":", "").replace("/", "").isalnum():
            key, value = part.split("=", 1)
            fields[key] = value
        elif key is not None:
            fields[key] += " " + part
    return fields


def _start(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    """A daemon in the foreground, as our child (its pid is the daemon's), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def closed_to_others(path: Path) -> Path | None:
    """The first folder from / down to ``path`` that other users cannot pass through, or None."""
    for folder in [*reversed(path.parents), path]:
        if not folder.stat().st_mode & 0o001:
            return folder
    return None


@contextlib.contextmanager
def slurm_cluster(folder: str | Path | None = None, ready_timeout: float = 30):
    """Start a single-node cluster in ``folder`` (a new folder under /tmp, removed afterwards,
    when None); yield a SlurmCluster; stop it by pid."""
    made = folder is None
    folder = Path(tempfile.mkdtemp(prefix="lrbs-slurm-", dir=CLUSTER_DIRS) if made else folder).resolve()
    try:
        with _cluster_in(folder, ready_timeout) as cluster:
            yield cluster
    finally:
        if made:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _cluster_in(folder: Path, ready_timeout: float):
    folder.mkdir(parents=True, exist_ok=True)
    closed = closed_to_others(folder.parent)
    if closed:  # munged would refuse too: "Socket is inaccessible: execute permissions for all required"
        raise RuntimeError(
            f"{closed} (mode {closed.stat().st_mode & 0o777:o}) is closed to other users: their sbatch could "
            f"not read {folder}/slurm.conf nor reach munged; give slurm_cluster() no folder (one under /tmp)"
        )
    folder.chmod(0o755)  # clients of any user read slurm.conf and reach munge/
    for sub in ("munge", "munge-key", "state", "spool", "log"):
        (folder / sub).mkdir(exist_ok=True)
        (folder / sub).chmod(0o700 if sub == "munge-key" else 0o755)
    node = socket.gethostname().split(".")[0]
    gpu_files = make_fake_gpus(folder / "dev")
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, node, free_port(), free_port()))
    (folder / "gres.conf").write_text(f"NodeName={node} Name=gpu File={gpu_files}\n")
    key = folder / "munge-key" / "munge.key"
    if not key.exists():
        subprocess.run([_which("mungekey"), "-c", "-k", str(key)], check=True, capture_output=True)
    os.chmod(key, 0o600)

    path = os.pathsep.join(dict.fromkeys([*os.environ.get("PATH", "").split(os.pathsep), *SBIN]))
    env = {"SLURM_CONF": str(conf), "PATH": path}
    full_env = dict(os.environ, **env)
    cluster = SlurmCluster(folder, node, env)
    log = folder / "log"
    try:
        link_system_conf(conf)
        m, private = folder / "munge", key.parent
        cluster.procs["munged"] = _start(
            [
                _which("munged"),
                "-F",
                f"--key-file={key}",
                f"--socket={m}/munge.socket",
                f"--pid-file={private}/munged.pid",
                f"--log-file={log}/munged.log",
                f"--seed-file={private}/munged.seed",
            ],
            log / "munged.out",
            full_env,
        )
        _wait(lambda: (m / "munge.socket").exists(), 10, "munged socket", cluster)
        cluster.procs["slurmctld"] = _start(
            [_which("slurmctld"), "-D", "-f", str(conf)], log / "slurmctld.out", full_env
        )
        _wait(
            lambda: cluster.run("scontrol", "ping", check=False).count("UP") > 0,
            ready_timeout,
            "slurmctld to answer",
            cluster,
        )
        cluster.procs["slurmd"] = _start(
            [_which("slurmd"), "-D", "-f", str(conf), "-N", node], log / "slurmd.out", full_env
        )
        _wait(lambda: cluster.node_state() == "idle", ready_timeout, "the node to be idle", cluster)
        yield cluster
    finally:
        if "slurmctld" in cluster.procs and cluster.procs["slurmctld"].poll() is None:
            left = cluster.run("squeue", "-h", "-o", "%i", check=False).split()  # of every user
            if left:
                subprocess.run(["scancel", "--full", *left], env=full_env, capture_output=True, timeout=30)
            with contextlib.suppress(RuntimeError):
                _wait(
                    lambda: not cluster.run("squeue", "-h", "-t", "RUNNING,COMPLETING", check=False).strip(),
                    15,
                    "jobs to end",
                    cluster,
                )
        for name in reversed(list(cluster.procs)):
            _stop(cluster.procs[name])
        unlink_system_conf(conf)


def _wait(condition, timeout: float, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [n for n, p in cluster.procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}\n{cluster.logs()}")
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}\n{cluster.logs()}")
