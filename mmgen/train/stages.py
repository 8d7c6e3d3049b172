"""Training stages: what trains in each (``set_trainable``), LoRA adapters, and each stage's own
optimizer and LR schedule.

A run chains the config's stages, e.g. alignment (projectors only) then end_to_end (LLM and
projectors). Adapters a stage adds stay for the stages after it. Stages must be applied before
the model is wrapped for DDP/FSDP, which only see parameters that require gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmgen.errors import ConfigError
from mmgen.train import param_groups
from mmgen.train.config import STAGE_PRESETS, StageSection, TrainConfig
from mmgen.train.schedule import lr_multiplier


def stage_at(config: TrainConfig, step: int) -> tuple[int, int]:
    """``(stage index, step within it)`` for a global optimizer step (0-based)."""
    start = 0
    for index, stage in enumerate(config.stages):
        if step < start + stage.steps:
            return index, step - start
        start += stage.steps
    return len(config.stages) - 1, config.stages[-1].steps


def stage_start(config: TrainConfig, index: int) -> int:
    """Global step at which stage ``index`` begins."""
    return sum(stage.steps for stage in config.stages[:index])


def add_lora(config: TrainConfig, model: Any) -> None:
    """Add the LoRA adapters of the run's stages (on the LLM, and on the encoders with
    ``encoder_target_modules``) before training starts. Fresh adapters leave the model's
    output unchanged (LoRA's B matrix starts at zero), so stages before the LoRA stage
    train as if they were absent, and the model's structure never changes mid-run (DDP and FSDP
    wrap it once per stage; a resumed run rebuilds the same structure from its checkpoint)."""
    found = [(i, stage.lora) for i, stage in enumerate(config.stages) if stage.lora is not None]
    if not found:
        return
    first, lora = found[0]
    for index, other in found[1:]:
        if other != lora:
            raise config.error(("stages", index, "lora"), "one LoRA configuration per run")
    options = {"r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout}
    if lora.target_modules:  # []: the encoders' adapters only
        model.add_lora(target_modules=lora.target_modules, **options)
    if lora.encoder_target_modules is not None:
        try:
            model.add_encoder_lora(lora.encoder_target_modules, **options)
        except ConfigError as exc:
            where = ("stages", first, "lora", "encoder_target_modules")
            raise config.error(where, str(exc)) from None


def apply_stage(model: Any, stage: StageSection) -> dict[str, int]:
    """Set what trains for ``stage``; returns the trainable parameters per part."""
    preset = stage.name if stage.name in STAGE_PRESETS else None
    parts = {
        "llm": stage.train.llm,  # the lora preset: the LLM's adapters, when it has some
        "encoders": stage.train.encoders,
        "projectors": stage.train.projectors,
    }
    return model.set_trainable(preset, **{k: v for k, v in parts.items() if v is not None})


def make_optimizer(
    config: TrainConfig, stage: StageSection, model: nn.Module, only: set[str] | None = None
):
    """AdamW over the trainable parameters (or those named in ``only``) in a group per part and
    decay (``param_groups``: each part's LR, no weight decay on biases, norms and 1-D
    parameters), and the stage's LR schedule, which scales every group alike."""
    section = config.optimizer
    groups = param_groups.parameter_groups(config, stage, model, only)
    optimizer = torch.optim.AdamW(
        [group.as_param_group() for group in groups], betas=section.betas, eps=section.eps
    )
    schedule = config.schedule
    warmup = stage.warmup_steps if stage.warmup_steps is not None else schedule.warmup_steps
    warmup = min(warmup, stage.steps)
    factor = lr_multiplier(schedule.kind, stage.steps, warmup, schedule.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, scheduler
