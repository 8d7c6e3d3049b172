"""The training loop: stages of optimizer steps over packed batches, with evaluation,
checkpoints, metrics and clean stops. It reads top to bottom; the pieces live beside it.

    mmgen train configs/train.yaml                          # one process (CPU, or one GPU)
    mmgen train configs/train.yaml --resume                 # continue from the last checkpoint
    torchrun --nproc-per-node 2 -m mmgen train configs/train.yaml     # DDP over 2 processes
    mmgen train configs/train.yaml --set stages.0.steps=20  # a CPU-sized run of the same config

A run holds its output folder (``train.lock``); checkpoints are verified before a resume and
nothing in them is unpickled (``checkpoint.py``); a non-finite loss stops the run before the
update (or skips the step, ``train.on_nonfinite``).

One optimizer step takes ``grad_accum`` micro-batches on every rank. The loss is the mean over
every target token of the step on all ranks (not a mean of per-pack means), so a pack weighs its
number of targets, however the samples were packed.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from mmgen.errors import ConfigError, MmgenError, TrainingError
from mmgen.train import (
    build,
    checkpoint,
    distributed,
    evaluate,
    manifest,
    param_groups,
    precision,
    stages,
)
from mmgen.train.checkpoint import CheckpointManager
from mmgen.train.config import TrainConfig
from mmgen.train.data import TrainData, target_tokens
from mmgen.train.lock import hold_run_folders
from mmgen.train.metrics import Metrics, Progress, Window, logged_before
from mmgen.train.signals import StopRequest
from mmgen.train.trainer_state import load_trainer_state, save_trainer_state

FINAL_MODEL_DIR = "model"  # <output_dir>/model: the trained model, for inference


@dataclass
class Result:
    steps: int  # optimizer steps completed, over all stages
    stopped_by: int | None  # the signal that stopped the run early
    checkpoint: Path | None  # the last checkpoint written
    accuracy: evaluate.Accuracy | None  # held-out exact match at the end
    output_dir: Path


def train(config: TrainConfig, *, resume: str | None = None, overwrite: bool = False) -> Result:
    """Run ``config``. ``resume="auto"`` continues the run's latest checkpoint (or starts fresh
    when there is none); a folder continues that checkpoint."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    world = distributed.setup(config.device, config.distributed.backend)
    try:
        with hold_run_folders(config, world) as took_over:
            return Trainer(config, world, resume=resume, overwrite=overwrite, notes=took_over).run()
    finally:
        distributed.teardown()


class Trainer:
    def __init__(self, config: TrainConfig, world: distributed.World, *, resume, overwrite,
                 notes=()):  # fmt: skip
        self.config, self.world = config, world
        self.out = config.path(config.output_dir)
        folder = config.path(config.checkpoint.dir) if config.checkpoint.dir else None
        self.checkpoints = CheckpointManager(
            folder or self.out / "checkpoints", config.checkpoint.keep
        )
        self.resume, self.notes = resume, list(notes)
        self.resume_from: Path | None = None
        if resume is None and self.checkpoints.latest() is not None and not overwrite:
            raise ConfigError(
                f"{self.checkpoints.directory} holds checkpoints of an earlier run: pass --resume"
                " to continue it, or --overwrite to start again"
            )
        mode = precision.resolve(config.precision, world.device)
        self.autocast = precision.autocast_factory(mode, world.device)
        self.scaler = precision.grad_scaler(mode, world.device)
        self.step = 0  # optimizer steps completed
        self.skipped_steps = 0  # steps with a non-finite loss, skipped (train.on_nonfinite)
        self.saved_step = -1
        self.last_checkpoint: Path | None = None
        self.accuracy: evaluate.Accuracy | None = None

    # -- data and model --------------------------------------------------------------------

    def _prepare(self) -> dict[str, Any] | None:
        """Build (or restore) the model and the data; returns the checkpoint's trainer state."""
        config, world = self.config, self.world
        for line in self.notes:
            self._print(line)
        if world.main:  # under the run's lock: these are a killed run's, not another live run's
            self.out.mkdir(parents=True, exist_ok=True)
            self.checkpoints.remove_partial()
            manifest.remove_partial(self.out)
        state = self._choose_checkpoint()
        fresh = state is None
        build.register_project(config)
        self.tokenizer = build.load_tokenizer(config)
        if fresh:
            self.model = build.build_model(config, self.tokenizer, world)
            stages.add_lora(config, self.model)
        else:
            self.model = build.load_model(self.resume_from / checkpoint.MODEL_DIR, config)
            self.step = self.saved_step = state["step"]
            self.skipped_steps = int(state.get("skipped_steps", 0))
            self.last_checkpoint = self.resume_from
            checkpoint.rescale_position(state, world.size, self._print)
        build.check_modalities(config, self.model)
        checkpointing = build.enable_checkpointing(config, self.model)
        self.model.to(world.device)
        self.wrapped = self.model
        # a resumed model's processors read the checkpoint's asset files
        with checkpoint.invalid(self.resume_from) if not fresh else contextlib.nullcontext():
            self.processor = build.build_processor(config, self.model, self.tokenizer)
        self.data = TrainData(config, self.processor, world)
        if state is not None:
            self.data.stream.load_state_dict(state["data"])
        # only now that the model and data are ready: a run that fails to start leaves an
        # earlier run's checkpoints and metrics as they were
        if world.main and fresh:  # --overwrite (or nothing to resume): no earlier step remains
            self.checkpoints.clear()
        distributed.barrier()
        self.metrics = Metrics(
            self.out, enabled=world.main, fresh=fresh,
            keep=None if fresh else self._kept_on_resume, logging=config.logging,
            resumed_at=None if fresh else self.step,
            wandb_run_id=None if fresh else state.get("wandb_run_id"),
            run_config=config.model_dump(mode="json") if world.main else None,
        )  # fmt: skip
        if config.logging.tensorboard is not None:
            self._print(
                f"{config.where('logging', 'tensorboard')}: deprecated; list tensorboard in"
                " logging.report_to: [jsonl, tensorboard]"
            )
        where = f"{world.size} x {world.device.type}" if world.distributed else world.device.type
        size = sum(p.numel() for p in self.model.parameters()) / 1e6
        self._print(f"mmgen train: {where}, {size:.2f}M parameters, writing to {self.out}")
        self._print(self.data.describe())
        if checkpointing:
            self._print(f"activation checkpointing: {', '.join(checkpointing)}")
        if state is not None:
            self._print(f"resuming {self.resume_from} at step {self.step}")
        return state

    def _choose_checkpoint(self) -> dict[str, Any] | None:
        """The trainer state to resume from (None: a fresh start). Rank 0 verifies the
        checkpoints (and moves broken ones aside); the other ranks read the one it chose."""
        found, error = None, None
        if self.world.main:
            try:
                found = self.checkpoints.choose(self.resume, self._print)
            except MmgenError as exc:
                error = exc
        chosen = distributed.broadcast_object(error or (found[0] if found else None))
        if isinstance(chosen, MmgenError):
            raise chosen
        if chosen is None:
            return None
        self.resume_from = Path(chosen)
        return found[1] if found is not None else load_trainer_state(self.resume_from)

    def _kept_on_resume(self, record: dict[str, Any]) -> bool:
        return logged_before(record, self.step, self.config.total_steps)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> Result:
        config = self.config
        with StopRequest() as stop:
            state = self._prepare()
            self.progress = Progress(
                config.total_steps, self.step, enabled=self.world.main and config.logging.progress,
                every=config.logging.every,
            )  # fmt: skip
            try:
                if self.step < config.total_steps:
                    first = stages.stage_at(config, self.step)[0]
                    for index in range(first, len(config.stages)):
                        if not self._run_stage(index, state if index == first else None, stop):
                            return self._stopped(stop.signal)
                return self._finish()
            finally:
                self.progress.close()
                self.metrics.close()

    def _run_stage(self, index: int, state: dict[str, Any] | None, stop: StopRequest) -> bool:
        """Train stage ``index`` to its end; False when a signal stopped it (checkpoint saved)."""
        config, world = self.config, self.world
        stage = config.stages[index]
        counts = stages.apply_stage(self.model, stage)
        only = None
        if config.distributed.strategy == "fsdp" and world.distributed:
            # FSDP2 fixes which parameters get gradients when it shards, so every parameter
            # keeps requires_grad and a stage chooses what trains through the optimizer alone
            only = {n for n, p in self.model.named_parameters() if p.requires_grad}
            self.model.requires_grad_(True)
        # DDP registers the parameters that train when it wraps: wrap again for every stage
        self.wrapped = self.model  # drop the previous stage's wrapper first
        self.wrapped = distributed.wrap(self.model, config.distributed.strategy, world)
        self.stage_index = index
        self.optimizer, self.scheduler = stages.make_optimizer(config, stage, self.wrapped, only)
        if state is not None:
            with checkpoint.invalid(self.resume_from):  # a state that does not fit this run
                if state["optimizer"] is not None:
                    optimizer_state = state["optimizer"]
                    distributed.load_optimizer_state(self.wrapped, self.optimizer, optimizer_state)
                    self.scheduler.load_state_dict(state["scheduler"])
                    if self.scaler is not None and state.get("scaler"):
                        self.scaler.load_state_dict(state["scaler"])
                # the RNG exactly where the interrupted run left it
                checkpoint.set_rng_state(state["rng"][world.rank])
        trainable = ", ".join(f"{part} {n / 1e6:.3f}M" for part, n in counts.items())
        self._print(f"stage {index + 1}/{len(config.stages)} {stage.name}: training {trainable}")
        for line in param_groups.describe(self.optimizer.param_groups):
            self._print(line)
        end = stages.stage_start(config, index) + stage.steps
        window = Window()
        while self.step < end:
            self._train_step(window)
            shown = window.latest
            if self.step % config.logging.every == 0 or self.step == end:
                shown = window.flush(self.scheduler)  # the console shows what metrics.jsonl gets
                if self.skipped_steps:
                    shown["skipped_steps"] = self.skipped_steps
                self.metrics.log("train", self.step, **shown)
            self.progress.update(self.step, shown)
            last_step = self.step == config.total_steps  # _finish evaluates that one
            if config.eval.every and self.step % config.eval.every == 0 and not last_step:
                self._evaluate("eval")
            stop_now = distributed.any_rank(stop.requested, world.device)
            every = config.checkpoint.every
            if stop_now or (every and self.step % every == 0) or self.step == end:
                self._save()
            if stop_now:
                return False
        return True

    # -- one optimizer step ----------------------------------------------------------------

    def _train_step(self, window: Window) -> None:
        config, world, model = self.config, self.world, self.wrapped
        before = (self.data.stream.state_dict(), checkpoint.rng_state())
        start = time.perf_counter()
        try:
            batches = [self.data.next_batch() for _ in range(config.optimizer.grad_accum)]
            waiting = time.perf_counter() - start
            # the targets of the whole step on all ranks: every token weighs the same
            local = torch.tensor(sum(target_tokens(b) for b in batches), dtype=torch.float64)
            total = max(distributed.all_reduce_sum(local.to(world.device)).item(), 1.0)
            scale = total / world.size  # DDP averages the ranks' gradients
            loss_sum = torch.zeros((), dtype=torch.float64, device=world.device)
            for i, batch in enumerate(batches):
                last = i == len(batches) - 1
                with _no_sync(model, unless=last), self.autocast():
                    # the collator built and checked the packing: no host sync re-checking it
                    loss = model(**batch, num_items_in_batch=scale, validate_packing=False).loss
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
                loss_sum += loss.detach().double() * scale
        except Exception:
            self._save_after_error(*before)
            raise
        tokens, slots, sources = self.data.sizes(batches)  # sources: a mixture's, per source
        figures = torch.tensor([loss_sum.item(), tokens, slots, *sources], dtype=torch.float64)
        summed = distributed.all_reduce_sum(figures.to(world.device)).tolist()
        loss_total, tokens, slots, *sources = summed
        updated = self._update(loss_total / total)
        self.step += 1
        loss = loss_total / total if updated else None
        per_source = dict(zip(self.data.source_names, sources, strict=True))
        window.add(loss, tokens, slots, time.perf_counter() - start, waiting, per_source)

    def _update(self, loss: float) -> bool:
        """Clip the global gradient norm, step the optimizer and the LR schedule; False when the
        step was skipped for a non-finite loss or gradient norm (``train.on_nonfinite``)."""
        optimizer, clip = self.optimizer, self.config.optimizer.grad_clip
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # the norm is needed either way: a NaN in it means NaN weights after the update
        norm = _as_float(torch.nn.utils.clip_grad_norm_(params, clip or math.inf))
        # fp16's scaler skips steps with inf gradients itself: that is how it finds its scale
        finite = math.isfinite(loss) and (self.scaler is not None or math.isfinite(norm))
        if not finite:
            self._nonfinite(loss, norm)
            if self.scaler is not None:
                self.scaler.update()
        elif self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        self.wrapped.zero_grad(set_to_none=True)  # frozen parameters' too (FSDP computes them)
        self.scheduler.step()
        return finite

    def _nonfinite(self, loss: float, norm: float) -> None:
        """A step whose loss or gradient norm is inf or NaN: stop the run before the update
        spreads it into the weights (no checkpoint of such a state), or skip the step."""
        what = f"step {self.step + 1}: the loss is {loss:.4g} (gradient norm {norm:.4g})"
        if self.config.train.on_nonfinite == "stop":
            last = self.last_checkpoint
            kept = f"; the last checkpoint is {last}" if last is not None else ""
            raise TrainingError(
                f"{what}: stopped without saving this state{kept}; set train.on_nonfinite: skip"
                " to skip such steps"
            )
        self.skipped_steps += 1
        self._print(f"{what}: skipped ({self.skipped_steps} skipped so far)")

    # -- evaluation ------------------------------------------------------------------------

    def _evaluate(self, kind: str) -> None:
        """Eval loss and exact match on the first eval samples (``kind="eval"``), or exact match
        on the held-out split at the end (``kind="test"``)."""
        config, model = self.config, self.wrapped
        results: dict[str, float] = {}
        model.eval()
        try:
            if kind == "eval" and self.data.eval is not None:
                batches = self.data.eval_batches()
                results["loss"] = evaluate.eval_loss(
                    distributed.unwrap(model), batches, self.data.eval, self.data.collate,
                    self.world, self.autocast,
                )  # fmt: skip
            rows = self.data.accuracy_rows(kind)
            if rows:
                self.accuracy = evaluate.exact_match(
                    distributed.unwrap(model), self.processor, rows, self.world,
                    max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size,
                    autocast=self.autocast, metrics=config.eval.metrics,
                )  # fmt: skip
                results["accuracy"] = self.accuracy.value
                results.update(self.accuracy.scores)
        finally:
            model.train()
        if results:
            self.metrics.log(kind, self.step, **results)
            shown = [f"accuracy {results['accuracy']:.1%}"] if "accuracy" in results else []
            shown = ([f"loss {results['loss']:.4f}"] if "loss" in results else []) + shown
            if self.accuracy is not None:
                shown += [f"{name} {value:.4g}" for name, value in self.accuracy.scores.items()]
            self._print(f"step {self.step}: {kind} {', '.join(shown)}")

    # -- checkpoints -----------------------------------------------------------------------

    def _save(self, data_state=None, rng=None) -> None:
        """A checkpoint of the completed steps (every rank calls this: the states are gathered)."""
        config, world = self.config, self.world
        next_stage = stages.stage_at(config, self.step)[0]
        same_stage = next_stage == self.stage_index and self.step < config.total_steps
        state = {
            "step": self.step,
            "stage": next_stage,
            # a new stage starts with a fresh optimizer: keep this one only mid-stage
            "optimizer": distributed.optimizer_state(self.wrapped, self.optimizer)
            if same_stage
            else None,
            "scheduler": self.scheduler.state_dict() if same_stage else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "data": data_state or self.data.stream.state_dict(),
            "rng": distributed.gather_objects(rng or checkpoint.rng_state()),
            "world_size": world.size,
            "skipped_steps": self.skipped_steps,
            "wandb_run_id": self.metrics.wandb_run_id,  # a resumed run continues that W&B run
        }
        weights = distributed.full_model_state(self.wrapped)
        if world.main:
            self.last_checkpoint = self.checkpoints.save(
                self.step, lambda folder: self._write(folder, state, weights)
            )
        self.saved_step = self.step
        distributed.barrier()

    def _write(self, folder: Path, state: dict[str, Any], weights) -> None:
        self._save_model(folder / checkpoint.MODEL_DIR, weights)
        # the config as it ran: the file with its --set overrides applied
        effective = yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
        (folder / checkpoint.CONFIG_FILE).write_text(effective, encoding="utf-8")
        save_trainer_state(state, folder)  # JSON + safetensors: nothing to unpickle

    def _save_model(self, folder: Path, weights: dict[str, torch.Tensor] | None) -> None:
        """The model and tokenizer as ``MultimodalModel.from_pretrained`` reads them; ``weights``
        are the gathered full weights of an FSDP model (None: the model's own)."""
        extra = {"state_dict": weights} if weights is not None else {}
        self.model.save_pretrained(
            folder, tokenizer=self.tokenizer, processor=self.processor, **extra
        )

    def _save_after_error(self, data_state: dict[str, int], rng: dict[str, Any]) -> None:
        """An error inside a step (before the update): keep what the completed steps learnt.
        Single process only: the other ranks of a distributed run cannot join a save."""
        if self.world.distributed or self.step == 0 or self.step <= self.saved_step:
            return
        self._print(f"error at step {self.step + 1}: saving the {self.step} completed steps")
        self._save(data_state, rng)

    # -- the end ---------------------------------------------------------------------------

    def _stopped(self, signum: int | None) -> Result:
        self._print(f"stopped by signal {signum} after step {self.step}: {self.last_checkpoint}")
        return Result(self.step, signum, self.last_checkpoint, None, self.out)

    def _finish(self) -> Result:
        """Final evaluations, the model for inference, the plot, the accuracy line."""
        if self.data.eval is not None:
            self._evaluate("eval")
        self._evaluate("test")
        weights = distributed.full_model_state(self.wrapped)
        if self.world.main:  # complete or absent, like a checkpoint, with its own manifest
            manifest.publish(self.out / FINAL_MODEL_DIR, lambda f: self._save_model(f, weights))
            if self.config.logging.plot and self.metrics.path.is_file():
                from mmgen.train.plot import plot_metrics

                self._print(f"curves: {plot_metrics(self.metrics.path)}")
        if self.accuracy is not None:
            for sample_id, predicted, answer in self.accuracy.examples:
                self._print(f"  {sample_id}: generated {predicted!r}, answer {answer!r}")
            skipped = f", {self.accuracy.skipped} skipped" if self.accuracy.skipped else ""
            self._print(
                f"held-out exact match: {self.accuracy.value:.1%} "
                f"({self.accuracy.correct}/{self.accuracy.total}{skipped})"
            )
        # leave together: a rank tearing the process group down while rank 0 still writes
        # aborted the other rank's gloo threads ("terminate called without an active exception")
        distributed.barrier()
        return Result(self.step, None, self.last_checkpoint, self.accuracy, self.out)

    def _print(self, line: str) -> None:
        if not self.world.main:
            return
        progress = getattr(self, "progress", None)
        if progress is not None:
            progress.write(line)
        else:
            print(line, flush=True)


def _as_float(norm: torch.Tensor) -> float:
    # FSDP2's norm is a DTensor: the full value is the same on every rank
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def _no_sync(model: torch.nn.Module, *, unless: bool):
    """DDP's no_sync for all but the last micro-batch: one gradient all-reduce per step."""
    if unless or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()
