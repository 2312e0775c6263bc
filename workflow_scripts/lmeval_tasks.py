"""lm-eval task definitions for the study's tasks.

Synthetic (demo) tasks are defined here as config dicts that mirror the lm-eval task of
the benchmark whose schema they use: gsm8k's strict/flexible regex filters and
exact_match, ARC's and HellaSwag's loglikelihood multiple choice (acc, acc_norm), and an
IFEval-style verifier (prompt_level_strict_acc). Tasks without ``synthetic:`` are lm-eval
built-ins, passed by name.

The user turn of every synthetic task is exactly the prompt the SFT data was made from
(:func:`workflow_scripts.synthetic.prompt_of`), so training and evaluation agree.
"""

from __future__ import annotations

from .synthetic import check_format, expected_response

EOS = "<|end|>"
SEED = 1234  # lm-eval's random, numpy, torch and few-shot seeds (prompt_fit builds the same shots)


def split_metric(metric: str) -> tuple[str, str]:
    """``"acc_norm,none"`` -> ``("acc_norm", "none")``: lm-eval's metric and filter names."""
    name, filt = metric.split(",", 1)
    return name, filt


def stderr_key(metric: str) -> str:
    """The key lm-eval reports a metric's standard error under (``acc_stderr,none``)."""
    name, filt = split_metric(metric)
    return f"{name}_stderr,{filt}"


def _data(name: str, test_path: str) -> dict:
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(test_path)}},
        "test_split": "test",
        "num_fewshot": 0,
        "target_delimiter": " ",
        "metadata": {"version": 1.0, "source": "workflow_scripts.synthetic"},
    }


def _process_format(doc, results):
    return {"prompt_level_strict_acc": float(check_format(doc, results[0]))}


def synthetic_task_config(name: str, generator: str, test_path: str, max_gen_toks: int = 32) -> dict:
    cfg = _data(name, test_path)
    gen_kwargs = {"until": [EOS], "do_sample": False, "max_gen_toks": max_gen_toks}
    if generator == "arithmetic":
        cfg.update(
            {
                "output_type": "generate_until",
                "doc_to_text": "{{question}}",
                "doc_to_target": "{{answer.split('####')[-1].strip()}}",
                "generation_kwargs": gen_kwargs,
                "metric_list": [
                    {
                        "metric": "exact_match",
                        "aggregation": "mean",
                        "higher_is_better": True,
                        "ignore_case": True,
                        "ignore_punctuation": False,
                    }
                ],
                "filter_list": [
                    {
                        "name": "strict-match",
                        "filter": [
                            {"function": "regex", "regex_pattern": r"#### (\-?[0-9]+)"},
                            {"function": "take_first"},
                        ],
                    },
                    {
                        "name": "flexible-extract",
                        "filter": [
                            {"function": "regex", "group_select": -1, "regex_pattern": r"(-?[0-9]+)"},
                            {"function": "take_first"},
                        ],
                    },
                ],
            }
        )
    elif generator in ("compare", "sequence"):
        text, choice, target = {
            "compare": ("{{question}}", "{{choices.text}}", "{{choices.label.index(answerKey)}}"),
            "sequence": ("{{ctx}}", "{{endings}}", "{{label}}"),
        }[generator]
        cfg.update(
            {
                "output_type": "multiple_choice",
                "doc_to_text": text,
                "doc_to_choice": choice,
                "doc_to_target": target,
                "metric_list": [
                    {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                    {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
                ],
            }
        )
    elif generator == "format":
        cfg.update(
            {
                "output_type": "generate_until",
                "doc_to_text": "{{prompt}}",
                "doc_to_target": expected_response,
                "generation_kwargs": gen_kwargs,
                "process_results": _process_format,
                "metric_list": [{"metric": "prompt_level_strict_acc", "aggregation": "mean", "higher_is_better": True}],
            }
        )
    else:
        raise ValueError(f"unknown synthetic generator {generator!r}")
    return cfg


def task_specs(tasks: dict, test_files: dict[str, str], benchmark_dirs: dict[str, str] | None = None) -> list:
    """What to pass as ``tasks=`` to lm-eval, reading local files only: dicts for synthetic
    tasks; lm-eval's own definitions (dicts, or a Group for bbh) for built-in tasks, on the
    files in ``benchmark_dirs[name]`` (prefetched on the login node, or the user's copy)."""
    from .builtin_tasks import builtin_specs

    out = []
    for name, t in sorted(tasks.items()):
        if t.get("synthetic"):
            out.append(synthetic_task_config(name, t["synthetic"], test_files[name]))
        else:
            out.extend(builtin_specs(name, (benchmark_dirs or {})[name], t.get("num_fewshot")))
    return out
