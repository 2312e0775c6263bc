"""Training speed: the pipeline's entry point (``workflow_scripts.train.train_cell``, TRL's
SFTTrainer) against a plain PyTorch loop on the same model, tokens, precision and optimizer.

    python benchmarks/training.py --tiny          # CPU: a tiny Llama, a few steps (~1 min)
    python benchmarks/training.py                 # one GPU: SmolLM2 135M, 360M, 1.7B shapes
    python benchmarks/training.py --shapes 135m --compile --optim adamw_torch

Random weights from a LlamaConfig with SmolLM2's shapes (no download), sequence 2048,
micro-batch 16 (8 for 1.7B), one optimizer step per micro-batch (no accumulation). Every
measurement runs in its own process (clean peak memory, no shared compile cache).

Token counting: every training row is a chat whose user turn has more words than the
sequence length, so TRL truncates each row to exactly ``max_length`` tokens and every
step holds ``micro x seq`` tokens, the same as the plain loop's random ``micro x seq``
batch. The entry point's count is checked against the ``num_tokens`` TRL itself logs.
tokens/s is that of the fastest window of 10 steps after the warm-up steps, so model load,
tokenisation, compilation and saving are left out, and so is most of the noise of a shared
machine. The clock is wall time after a device synchronise on a GPU, and the process's CPU
time on a CPU (one thread). ``wall s`` is the whole train_cell call.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

H200_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H200 SXM
WINDOW = 10  # timed steps per clock reading

SHAPES = {  # SmolLM2 configs (tied embeddings); micro = micro-batch
    "135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        rope_theta=100000.0,
        micro=16,
    ),
    "360m": dict(
        hidden_size=960,
        intermediate_size=2560,
        num_hidden_layers=32,
        num_attention_heads=15,
        num_key_value_heads=5,
        vocab_size=49152,
        rope_theta=100000.0,
        micro=16,
    ),
    "1.7b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=49152,
        rope_theta=130000.0,
        micro=8,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=2048,
        rope_theta=10000.0,
        micro=8,
    ),
}


def clock() -> float:
    """Wall time after a device synchronise on a GPU; process CPU time on a CPU, which a busy
    shared machine disturbs far less than wall time (the CPU runs use one thread)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def peak_memory_gib() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB -> GiB


def boundaries(opts: dict) -> range:
    """Steps at whose end the clock is read: after warm-up, then every WINDOW steps."""
    return range(opts["warmup"], opts["warmup"] + opts["steps"] + 1, WINDOW)


def best_rate(stamps: dict, opts: dict) -> float:
    """tokens/s of the fastest window of WINDOW steps (the least disturbed by other load)."""
    b = list(boundaries(opts))
    return WINDOW * opts["micro"] * opts["seq"] / min(stamps[j] - stamps[i] for i, j in zip(b, b[1:]))


def make_base(shape: str, seq: int, out: Path) -> int:
    """Random-init model + word-level tokenizer saved like a hub model; returns the parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from workflow_scripts.tiny_model import build_tokenizer

    s = dict(SHAPES[shape])
    s.pop("micro")
    tokenizer = build_tokenizer([" ".join(f"w{i}" for i in range(1000))], max_length=seq)
    config = LlamaConfig(
        **{k: v for k, v in s.items() if k != "rope_theta"},
        rope_parameters={"rope_type": "default", "rope_theta": s["rope_theta"]},
        max_position_embeddings=max(seq, 2048),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config)
    if device == "cuda":
        model = model.to(torch.bfloat16)  # half the bytes to save and load; train_cell sets the dtype itself
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def write_rows(path: Path, n: int, seq: int) -> None:
    """n chat rows each longer than seq tokens (one word = one token), so each is cut to seq."""
    rng = random.Random(0)
    with open(path, "w") as f:
        for _ in range(n):
            user = " ".join(f"w{rng.randrange(1000)}" for _ in range(seq + 8))
            f.write(
                json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "w1"}]})
                + "\n"
            )


def cell_spec(base: Path, opts: dict) -> dict:
    """The spec exactly as the pipeline builds it (spec.training_spec) for a one-cell study."""
    from workflow_scripts.config import load_study

    # no activation checkpointing, like the plain loop (the pipeline's automatic choice is
    # the same for these shapes on an H200; on a smaller GPU it could differ)
    recipe = {
        "max_length": opts["seq"],
        "lr_scheduler_type": "linear",
        "optim": opts["optim"],
        "activation_checkpointing": False,
    }
    if opts["compile"]:
        recipe["torch_compile"] = True
    if opts["liger"]:
        recipe["use_liger_kernel"] = True
    steps = opts["warmup"] + opts["steps"]
    cfg = {
        "study": "bench-training",
        "models": [{"name": "bench", "id": str(base)}],
        "stages": {
            "sft": {
                "grid": {"learning_rates": [1e-5], "batch_sizes": [opts["micro"]]},
                "seeds": [0],
                "micro_batch_size": opts["micro"],
                "train_examples": steps * opts["micro"],
                "dataset": {"source": "synthetic", "seed": 0},
                "recipe": recipe,
                "divergence": {"max_loss_factor": 1e9},  # a benchmark must never stop early
            }
        },
        "tasks": {"arith": {"synthetic": "arithmetic", "category": "reasoning", "metric": "exact_match,strict-match"}},
    }
    study = load_study(cfg)
    return study.training_spec(study.cells[0])


def measure_entry(opts: dict) -> dict:
    """train_cell on the saved model and rows; a step-timing callback rides on the progress one."""
    import transformers

    from workflow_scripts import train

    stamps, loaded = {}, {}
    original_progress = train.progress_callback

    def timed_progress():
        cb = original_progress()
        on_step_end = cb.on_step_end

        def stamp(args, state, control, **kw):
            if state.global_step in boundaries(opts):
                stamps[state.global_step] = clock()
            return on_step_end(args, state, control, **kw)

        cb.on_step_end = stamp
        return cb

    # train_cell has no option for the attention kernel: add it to the model load
    original_load = transformers.AutoModelForCausalLM.from_pretrained

    def load(*a, **kw):
        kw.setdefault("attn_implementation", opts["attn"])
        model = original_load(*a, **kw)
        loaded.update(dtype=str(model.dtype).replace("torch.", ""), attn=model.config._attn_implementation)
        return model

    train.progress_callback = timed_progress
    transformers.AutoModelForCausalLM.from_pretrained = load
    spec = cell_spec(Path(opts["base"]), opts)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        record = train.train_cell(spec, opts["base"], opts["rows"], out, threads=opts["threads"])
        history = json.loads((Path(out) / "log_history.json").read_text())
    wall = time.perf_counter() - t0
    logged = [(h["step"], h["num_tokens"]) for h in history if "num_tokens" in h]
    step, tokens = logged[-1]
    per_step = opts["micro"] * opts["seq"]
    if tokens != step * per_step:
        raise SystemExit(
            f"TRL counted {tokens} tokens after {step} steps, not {step} x {per_step}: rows are not all full length"
        )
    return {
        "tokens_per_s": best_rate(stamps, opts),
        "peak_gib": peak_memory_gib(),
        "wall_s": wall,
        "steps": record["optimizer_steps"],
        "trl_num_tokens": tokens,
        **loaded,
    }


def measure_plain(opts: dict) -> dict:
    """A plain loop: forward with labels, backward, clip to 1.0 (Trainer's default), AdamW step."""
    import torch
    from transformers import AutoModelForCausalLM

    from workflow_scripts.trl_config import choose_precision

    torch.set_num_threads(opts["threads"])
    if opts["liger"]:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(fused_linear_cross_entropy=False)  # as TRL applies it
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, opts["dtype"])  # the dtype train_cell loaded the weights in
    model = AutoModelForCausalLM.from_pretrained(opts["base"], dtype=dtype, attn_implementation=opts["attn"]).to(device)
    model.train()
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=choose_precision()["bf16"])
    step_fn = torch.compile(model) if opts["compile"] else model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-5, weight_decay=0.0, fused=True if opts["optim"] == "adamw_torch_fused" else None
    )
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(10, 1000, (opts["micro"], opts["seq"]), generator=g).to(device)
    stamps = {}
    for step in range(1, opts["warmup"] + opts["steps"] + 1):
        with autocast:
            loss = step_fn(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step in boundaries(opts):
            stamps[step] = clock()
    return {"tokens_per_s": best_rate(stamps, opts), "peak_gib": peak_memory_gib()}


def in_child(fn, *args):
    """Run fn in a fresh process: its own peak memory, CUDA context and compile cache."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def mfu(tokens_per_s: float, params: int, shape: str, seq: int, gpu: bool) -> tuple[str, str]:
    """6N (weights only) and 6N + 6*L*s*h (with attention, as in the GPU anchors)."""
    if not gpu:
        return "n/a", "n/a"
    s = SHAPES[shape]
    attention = 6 * s["num_hidden_layers"] * seq * s["hidden_size"]
    return (
        f"{100 * 6 * params * tokens_per_s / H200_BF16_PEAK:.1f}%",
        f"{100 * (6 * params + attention) * tokens_per_s / H200_BF16_PEAK:.1f}%",
    )


def main() -> None:
    import torch

    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny Llama, seq 128, few steps (default without a GPU)")
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), help="default: 135m 360m 1.7b (tiny with --tiny)")
    p.add_argument("--seq", type=int, help="sequence length (default 2048; 128 with --tiny)")
    p.add_argument("--warmup", type=int, help="steps before the clock starts (default 10, 15 with --compile; 3 tiny)")
    p.add_argument("--steps", type=int, help=f"timed steps, a multiple of {WINDOW} (default 30; 40 tiny)")
    p.add_argument("--compile", action="store_true", help="torch.compile (recipe torch_compile: true)")
    p.add_argument("--liger", action="store_true", help="Liger kernels (recipe use_liger_kernel: true)")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="attention implementation")
    p.add_argument("--threads", type=int, help="torch threads (default 1 on CPU, 4 on GPU)")
    p.add_argument(
        "--optim",
        default="adamw_torch_fused",
        choices=["adamw_torch_fused", "adamw_torch"],
        help="recipe optim; the plain loop uses AdamW(fused=True) or torch's default (foreach)",
    )
    args = p.parse_args()
    tiny = args.tiny or not gpu
    if args.liger:
        try:
            import liger_kernel  # noqa: F401
        except ImportError:
            raise SystemExit("--liger: liger-kernel is not importable here") from None
    shapes = args.shapes or (["tiny"] if tiny else ["135m", "360m", "1.7b"])
    seq = args.seq or (128 if tiny else 2048)
    warmup = args.warmup or (3 if tiny else 15 if args.compile else 10)
    steps = -(-(args.steps or (40 if tiny else 30)) // WINDOW) * WINDOW
    threads = args.threads or (4 if gpu else 1)
    flags = " ".join(f for f, on in [("compile", args.compile), ("liger", args.liger)] if on)
    options = f"{args.attn}, {args.optim}" + (f", {flags}" if flags else "")
    rows = []
    for shape in shapes:
        micro = SHAPES[shape]["micro"]
        with tempfile.TemporaryDirectory() as d:
            base, data = Path(d) / "base", Path(d) / "rows.jsonl"
            params = in_child(make_base, shape, seq, base)
            write_rows(data, (warmup + steps) * micro, seq)
            opts = dict(
                base=str(base),
                rows=str(data),
                seq=seq,
                micro=micro,
                warmup=warmup,
                steps=steps,
                threads=threads,
                compile=args.compile,
                liger=args.liger,
                attn=args.attn,
                optim=args.optim,
            )
            entry = in_child(measure_entry, opts)
            plain = in_child(measure_plain, dict(opts, dtype=entry["dtype"]))
        for name, r in (("plain loop", plain), ("train_cell", entry)):
            m6, m6a = mfu(r["tokens_per_s"], params, shape, seq, gpu)
            wall = f"{r['wall_s']:.1f}" if "wall_s" in r else "-"
            rows.append(
                f"| {shape} ({params / 1e6:.1f}M) | {micro} x {seq} | {name} | {r['tokens_per_s']:,.0f} "
                f"| {m6} | {m6a} | {r['peak_gib']:.2f} | {r['tokens_per_s'] / plain['tokens_per_s']:.2f} "
                f"| {wall} |"
            )
        last_entry = entry
    device = (
        torch.cuda.get_device_name(0)
        if gpu
        else f"CPU, {os.cpu_count()} cores, {threads} thread(s), load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"\ndevice: {device}; torch {torch.__version__}; weights {last_entry['dtype']}"
        f"{' + bf16 autocast' if gpu else ''}; options: {options}; {warmup} warm-up steps, then the fastest of "
        f"{steps // WINDOW} windows of {WINDOW} steps"
    )
    print("| shape | micro x seq | path | tokens/s | MFU 6N | MFU 6N+attn | peak GiB | vs plain | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"\ntokens per step = micro-batch x seq: every row is truncated to exactly {seq} tokens "
        f"(TRL's own num_tokens agreed: {int(last_entry['trl_num_tokens']):,} after {last_entry['steps']} steps). "
        f"peak = {'torch.cuda.max_memory_allocated' if gpu else 'peak RSS of the measuring process'}; "
        "MFU against 989 TFLOP/s (H200 bf16 dense), n/a on CPU; wall s = the whole train_cell call "
        "(load, tokenise, train, save)."
        + ("" if gpu else " On CPU, tokens/s is per second of process CPU time (one thread), not wall time.")
    )


if __name__ == "__main__":
    main()
