"""The one training loop. Every stage (pretrain, SFT, reward model, DPO, ...) reuses it.

A stage supplies three things:
- a model (`nn.Module`), on CPU or already on the device;
- `batches`: an iterator of batches; if it has `state_dict()` / `load_state_dict()` (like
  `gptlab.data.loader.PackedLoader`) its position is checkpointed, so a resume sees the same data;
- `loss_fn(model, batch) -> (loss, metrics)`: a scalar loss (mean over the micro-batch) and a
  dict of extra metrics. Tensor metrics are averaged over micro-steps and logged; the int
  `metrics["tokens"]` (tokens processed in the micro-batch) is summed for tok/s.

The loop does the rest: device placement, DDP/FSDP wrapping, optional torch.compile, bf16
autocast on GPU (fp32 on CPU), gradient accumulation (gradients all-reduced only on the last
micro-step), clipping, the LR schedule over optimizer param groups, a step and/or time budget,
eval / sample / checkpoint hooks every N steps, resume, one progress line per log step and
`metrics.jsonl` through a tracker.

No hidden syncs: on GPU, `.item()` is called only on log steps (once, on one stacked tensor), so
the CPU runs ahead of the GPU between log steps. Step k means "after k optimizer updates":
the train loss logged at step k is the loss of update k, and eval/checkpoint at step k see the
weights after update k.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gptlab.common import autocast_context, pick_autocast_dtype
from gptlab.train import checkpoint as ckpt
from gptlab.train.distributed import (
    DistInfo,
    all_reduce_mean,
    any_rank,
    barrier,
    grad_sync,
    init_distributed,
    unwrap,
    wrap_model,
)
from gptlab.train.ema import WeightAverage
from gptlab.train.log_window import LogWindow, progress_line
from gptlab.train.optim import CombinedOptimizer, build_optimizer, set_lr
from gptlab.train.schedule import lr_multiplier
from gptlab.train.tracker import NullTracker, Tracker, truncate_metrics
from gptlab.train.train_config import TrainConfig, TrainResult

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, Any]]]
EvalFn = Callable[[nn.Module], dict[str, float]]
SampleFn = Callable[[nn.Module, int], None]
ResumeFn = Callable[[int], None]


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Mean next-token cross-entropy of an (inputs, targets) batch; targets of -1 are ignored.

    The loss of pretraining (packed documents) and SFT (targets -1 off the assistant's tokens).
    """
    x, y = batch
    return model(x, y), {"tokens": y.numel()}


def masked_lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """`lm_loss` computed on the target positions only (`GPT.forward(targets_only=True)`): the
    same mean, without the head and softmax over the vocabulary where nothing is learned (SFT)."""
    x, y = batch
    return model(x, y, targets_only=True), {"tokens": y.numel()}


class Trainer:
    """Holds the wrapped model, optimizer and counters; `fit()` runs the loop.

    >>> trainer = Trainer(model, loader, lm_loss, TrainConfig(max_steps=100), out_dir="runs/x/base")  # doctest: +SKIP
    >>> result = trainer.fit(resume=False)                                                         # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        batches: Iterator[Any],
        loss_fn: LossFn,
        cfg: TrainConfig,
        out_dir: str | Path | None = None,
        evaluate: EvalFn | None = None,
        sample: SampleFn | None = None,
        on_resume: ResumeFn | None = None,
        tracker: Tracker | None = None,
        dist: DistInfo | None = None,
        stage_state: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        verbose: bool = True,
    ):
        if cfg.max_steps is None and cfg.max_time is None:
            raise ValueError("give max_steps or max_time (or both): the loop needs a budget")
        if cfg.grad_accum < 1 or cfg.log_every < 1:
            raise ValueError("grad_accum and log_every must be at least 1")
        self.cfg = cfg
        self.dist = dist or init_distributed(cfg.device)
        self.device = self.dist.device
        self.batches, self.loss_fn = batches, loss_fn
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.evaluate, self.sample, self.on_resume = evaluate, sample, on_resume
        self.tracker = tracker or NullTracker()
        self.stage_state = stage_state or {}
        self.metadata = metadata or {}
        self.verbose = verbose and self.dist.is_main
        self.autocast_dtype = pick_autocast_dtype(self.device, cfg.dtype)

        model = model.to(self.device)
        self.raw_model = model
        wrapped = wrap_model(model, self.dist, cfg.parallel, cfg.activation_checkpointing)
        # Build the optimizer on the (possibly FSDP-sharded) parameters, before compile.
        self.optimizer = build_optimizer(
            unwrap(wrapped),
            cfg.optimizer,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            betas=(cfg.beta1, cfg.beta2),
            embed_lr=cfg.embed_lr,
            muon_lr=cfg.muon_lr,
            muon_momentum=cfg.muon_momentum,
            muon_weight_decay=cfg.muon_weight_decay,
            device_type=torch.device(self.device).type,
            head_lr=cfg.head_lr,
        )
        # The weight average steps after the real optimizers, and its state is checkpointed with theirs.
        self.ema: WeightAverage | None = None
        self.weights_are_average = False  # True once the average has been swapped in at the end
        if cfg.ema:
            self.ema = WeightAverage([p for p in unwrap(wrapped).parameters() if p.requires_grad], cfg.ema)
            self.optimizer = CombinedOptimizer([*getattr(self.optimizer, "optimizers", [self.optimizer]), self.ema])
        self.model = torch.compile(wrapped) if cfg.compile else wrapped
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.step = 0
        self.elapsed = 0.0

    # ------------------------------------------------------------------ helpers

    def _print(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)

    def _progress(self) -> float:
        c = self.cfg
        p = 0.0
        if c.max_steps:
            p = max(p, self.step / c.max_steps)
        if c.max_time:
            p = max(p, self.elapsed / c.max_time)
        return p

    def _done(self, check_time: bool) -> bool:
        c = self.cfg
        if c.max_steps is not None and self.step >= c.max_steps:
            return True
        if c.max_time is not None and check_time:
            return any_rank(self.elapsed >= c.max_time, self.device if self.dist.enabled else "cpu")
        return False

    def _eta(self, sec_per_step: float) -> float | None:
        c = self.cfg
        etas = []
        if c.max_steps:
            etas.append(max(0, c.max_steps - self.step) * sec_per_step)
        if c.max_time:
            etas.append(max(0.0, c.max_time - self.elapsed))
        return min(etas) if etas else None

    def _run_hooks(self, step: int, final: bool = False) -> None:
        c = self.cfg

        def due(every: int | None) -> bool:
            return every is not None and (step % every == 0 or final)

        if self.evaluate is not None and due(c.eval_every):
            self.raw_model.eval()
            with torch.no_grad(), autocast_context(self.device, self.autocast_dtype):
                metrics = self.evaluate(self.raw_model)
            self.raw_model.train()
            if metrics:
                self.tracker.log(step, metrics)
                self._print(
                    f"step {step:05d} | " + " | ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                )
        if self.sample is not None and due(c.sample_every):
            self.raw_model.eval()
            with torch.no_grad(), autocast_context(self.device, self.autocast_dtype):
                self.sample(self.raw_model, step)
            self.raw_model.train()

    def save(self) -> None:
        """Checkpoint the current state into out_dir (collective under FSDP; rank 0 writes)."""
        if self.out_dir is None:
            return
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "loader": self.batches.state_dict() if hasattr(self.batches, "state_dict") else None,
            "train_config": asdict(self.cfg),
            "stage": self.stage_state,
            "metadata": self.metadata,
            "ema_in_weights": self.weights_are_average,
        }
        ckpt.save_checkpoint(
            self.out_dir, self.model, self.optimizer, state, is_main=self.dist.is_main
        )
        barrier()

    def load(self) -> dict[str, Any]:
        """Restore model, optimizer, data position, RNG and counters from out_dir."""
        assert self.out_dir is not None
        if self.dist.is_main:
            ckpt.recover(self.out_dir)
        barrier()
        state = ckpt.load_checkpoint(self.out_dir, self.model, self.optimizer, device=self.device)
        self.step, self.elapsed = int(state["step"]), float(state.get("elapsed", 0.0))
        if state.get("ema_in_weights") and self.ema is not None:
            self.ema.swap()  # the finished run saved the average as its model; train on the raw weights
        if state.get("loader") is not None and hasattr(self.batches, "load_state_dict"):
            self.batches.load_state_dict(state["loader"])
        saved = state.get("train_config", {})
        # Budgets may change on resume (train longer); anything else changes the trajectory.
        changed = [
            f.name
            for f in fields(self.cfg)
            if f.name not in ("max_steps", "max_time", "log_every", "activation_checkpointing")
            and f.name in saved
            and saved[f.name] != getattr(self.cfg, f.name)
        ]
        if changed:
            self._print(
                f"warning: resuming with changed settings ({', '.join(changed)}): not the same trajectory"
            )
        return state

    # ------------------------------------------------------------------ the loop

    def fit(self, resume: bool = False) -> TrainResult:
        c = self.cfg
        resumed_from = self._resume() if resume else None
        if resumed_from is None:
            self._run_hooks(0)  # the "initialisation" row of every curve and of samples.md

        history: list[dict[str, Any]] = []
        window = LogWindow.on(self.device)
        last_hook_step = 0 if resumed_from is None else self.step

        finish = self._done(check_time=True)  # e.g. resumed a finished run
        while not finish:
            lr = self._train_step(window)
            finish = self._done(check_time=not self.dist.enabled)
            if self.step % c.log_every == 0 or finish:
                self._log_window(window, lr, history)
                if self.dist.enabled and c.max_time is not None:
                    # All ranks agree on the time budget, at log steps only.
                    finish = finish or self._done(check_time=True)
            if finish:
                break  # the final hooks and checkpoint run after the loop
            t_hooks = time.perf_counter()
            if self._periodic_hooks():
                last_hook_step = self.step
            window.hook_time += time.perf_counter() - t_hooks

        if self.ema is not None:
            self.ema.swap()  # end on the average: the final hooks, the checkpoint and the model use it
            self.weights_are_average = True
        if self.step != last_hook_step or self.ema is not None:
            self._run_hooks(self.step, final=True)
        self.save()
        self.tracker.close()
        return TrainResult(
            step=self.step, elapsed=self.elapsed, history=history, resumed_from=resumed_from
        )

    def _resume(self) -> int | None:
        """Load the checkpoint in out_dir if there is one; the step resumed from, or None."""
        if self.out_dir is None or not ckpt.has_checkpoint(self.out_dir):
            self._print(f"no checkpoint in {self.out_dir}: starting from scratch")
            return None
        self.load()
        if self.dist.is_main:
            truncate_metrics(self.out_dir / "metrics.jsonl", self.step)
        if self.on_resume is not None:
            self.on_resume(self.step)
        self._print(f"resumed from {self.out_dir} at step {self.step}")
        return self.step

    def _train_step(self, window: LogWindow) -> float:
        """One optimizer update over grad_accum micro-batches; returns the logged LR."""
        c = self.cfg
        t0 = time.perf_counter()
        mult = lr_multiplier(
            self.step,
            self._progress(),
            c.warmup_steps,
            c.schedule,
            c.min_lr_ratio,
            c.decay_frac,
        )
        set_lr(self.optimizer, mult)
        lr = c.lr * mult  # the log shows the AdamW matrix LR; other groups scale alike
        accum = c.grad_accum
        for micro in range(accum):
            batch = next(self.batches)
            with grad_sync(self.model, sync=micro == accum - 1):
                with autocast_context(self.device, self.autocast_dtype):
                    loss, metrics = self.loss_fn(self.model, batch)
                # Mean over micro-batches: accum x B rows give the gradient of one B*accum batch.
                (loss / accum).backward()
            window.add(loss, metrics, accum)
        if c.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
            window.norm += norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP: DTensor
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        window.steps += 1
        # On GPU this is the CPU's time to enqueue the step; it cannot run ahead of the GPU by
        # more than a few steps, so the sum tracks real time closely without a sync.
        self.elapsed += time.perf_counter() - t0
        return lr

    def _log_window(self, window: LogWindow, lr: float, history: list[dict[str, Any]]) -> None:
        """The one sync per log window: stack everything, reduce across ranks, read once; then
        the metrics record, the progress line, and a fresh window."""
        names = list(window.metrics)
        packed = (
            torch.stack([window.loss, window.norm] + [window.metrics[k] for k in names])
            / window.steps
        )
        all_reduce_mean(packed)
        values = packed.tolist()
        # Wall time of the window after the sync (so GPU work is included), minus hooks.
        seconds = max(time.perf_counter() - window.start - window.hook_time, 1e-9)
        tok_s = window.tokens * self.dist.world_size / seconds
        record = {"loss": values[0], "lr": lr, "tok_per_s": tok_s, "elapsed": self.elapsed}
        if self.cfg.grad_clip is not None:
            record["grad_norm"] = values[1]
        record.update({k: v for k, v in zip(names, values[2:])})
        history.append({"step": self.step, **record})
        self.tracker.log(self.step, record)
        eta = self._eta(seconds / window.steps)
        self._print(progress_line(self.step, self.cfg.max_steps, values[0], lr, tok_s, eta))
        if not math.isfinite(values[0]):
            raise RuntimeError(f"loss is {values[0]} at step {self.step}; try a lower --lr")
        window.reset()

    def _periodic_hooks(self) -> bool:
        """Eval/sample and checkpoint hooks due at this step; True when eval/sample ran."""
        c = self.cfg
        ran = False
        if any(e is not None and self.step % e == 0 for e in (c.eval_every, c.sample_every)):
            self._run_hooks(self.step)
            ran = True
        if c.save_every is not None and self.step % c.save_every == 0:
            self.save()
        return ran
