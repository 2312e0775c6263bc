"""What a training run reports and how it stops: TRL/transformers callbacks for progress
lines, divergence (a cell past the edge of stability stops and is recorded as diverged) and
the fault injection the resume test uses."""

from __future__ import annotations

import math
import os
import signal
import time


def progress_callback():
    """One line per logging step: step, percent, loss, learning rate, elapsed and ETA."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.time()

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs or not state.is_world_process_zero:
                return
            elapsed = time.time() - self.t0
            frac = state.global_step / max(1, state.max_steps)
            eta = elapsed / frac - elapsed if frac > 0 else float("nan")
            print(
                f"[train] step {state.global_step}/{state.max_steps} ({100 * frac:.0f}%) "
                f"loss {float(logs['loss']):.4f} lr {float(logs.get('learning_rate', 0)):.3g} "
                f"elapsed {elapsed:.0f}s eta {eta:.0f}s",
                flush=True,
            )

    return Progress()


def divergence_callback(max_loss_factor: float):
    """Stop training when the logged loss is NaN/inf or exceeds max_loss_factor x the first one.

    A learning-rate grid is built to reach the edge of stability; a cell past it must stop
    early, be recorded as diverged, and leave the rest of the grid to complete.
    """
    from transformers import TrainerCallback

    class Divergence(TrainerCallback):
        def __init__(self):
            self.first_loss = None
            self.diverged = None  # {"step": int, "loss": float, "reason": str}

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs or self.diverged:
                return
            loss = float(logs["loss"])
            if self.first_loss is None:  # after a resume, the run's first loss is in the restored history
                earlier = [float(h["loss"]) for h in state.log_history if "loss" in h]
                self.first_loss = next((x for x in earlier if math.isfinite(x)), None)
            if self.first_loss is None and math.isfinite(loss):
                self.first_loss = loss
            if not math.isfinite(loss):
                reason = f"loss is {loss}"
            elif loss > max_loss_factor * self.first_loss:
                reason = f"loss {loss:.4g} > {max_loss_factor:g} x first logged loss {self.first_loss:.4g}"
            else:
                return
            self.diverged = {
                "step": state.global_step,
                "loss": loss if math.isfinite(loss) else str(loss),
                "reason": reason,
            }
            print(f"[train] DIVERGED at step {state.global_step}: {reason}; stopping this cell", flush=True)
            control.should_training_stop = True

    return Divergence()


# Fault injection for the resume test: kill this process right after a checkpoint is saved.
FAULT_KILL_AFTER_CHECKPOINT = "LRBS_FAULT_KILL_AFTER_CHECKPOINT"


def checkpoint_fault_callback():
    from transformers import TrainerCallback

    class KillAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if os.environ.get(FAULT_KILL_AFTER_CHECKPOINT):
                print(f"[train] fault injection: killed after the checkpoint of step {state.global_step}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAfterCheckpoint()
