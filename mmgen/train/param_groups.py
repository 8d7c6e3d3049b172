"""The optimizer's parameter groups: one per part of the model (``llm``, ``encoders``,
``projectors``, ``lora`` adapters) and kind (decayed or not), each with its own learning rate and
weight decay:

    optimizer:
      lr: {llm: 2.0e-5, encoders: 1.0e-5, projectors: 1.0e-3, lora: 2.0e-4}
      weight_decay: 0.01

A number means every part. A stage's ``lr`` overrides ``optimizer.lr`` for that stage: a number
for every part, a mapping for the parts it names. A part that trains needs an LR (a mistake
otherwise: no silent default); ``0`` keeps it as it is. Weight decay never applies to biases,
the weights of norm layers (LayerNorm, RMSNorm, ... by module type) or any other 1-D parameter
(nanoGPT's and transformers' Trainer's rule). The LR schedule scales every group by the same
factor, so the parts keep their ratios through warmup and decay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from mmgen.model.trainable import PARTS, parameter_parts
from mmgen.train.config import PartValues, StageSection, TrainConfig

# norm layers by type: torch's, and transformers' own (LlamaRMSNorm, T5LayerNorm, ...) by name
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm,
          nn.modules.batchnorm._NormBase)  # fmt: skip


@dataclass
class Group:
    part: str  # one of PARTS
    decay: bool  # False: biases, norms and other 1-D parameters
    lr: float
    weight_decay: float
    names: list[str] = field(default_factory=list)
    params: list[nn.Parameter] = field(default_factory=list)

    def as_param_group(self) -> dict[str, Any]:
        """torch's param group; ``part`` and ``decay`` ride along (and in checkpoints)."""
        return {"params": self.params, "lr": self.lr, "weight_decay": self.weight_decay,
                "part": self.part, "decay": self.decay}  # fmt: skip


def part_values(value: float | PartValues | None) -> dict[str, float | None]:
    """``part -> value`` of a config number (every part) or mapping (the parts it names)."""
    if isinstance(value, PartValues):
        return {part: value.get(part) for part in PARTS}
    return dict.fromkeys(PARTS, value)


def stage_lrs(config: TrainConfig, stage: StageSection) -> dict[str, float | None]:
    """Each part's LR in ``stage``: ``optimizer.lr``, overridden by the stage's ``lr``."""
    lrs = part_values(config.optimizer.lr)
    override = part_values(stage.lr)
    return {part: override[part] if override[part] is not None else lrs[part] for part in PARTS}


def no_decay_parameters(model: nn.Module) -> set[int]:
    """The ids of the parameters weight decay leaves alone: norm layers' and every 1-D one."""
    found = set()
    for module in model.modules():
        norm = isinstance(module, _NORMS) or type(module).__name__.lower().endswith("norm")
        for parameter in module.parameters(recurse=False):
            if norm or parameter.dim() < 2:
                found.add(id(parameter))
    return found


def parameter_groups(
    config: TrainConfig, stage: StageSection, model: nn.Module, only: set[str] | None = None
) -> list[Group]:
    """The groups of the parameters that train in ``stage`` (``requires_grad``, or those named
    in ``only``), in ``PARTS`` order, decayed before undecayed; empty groups are left out."""
    model = getattr(model, "module", model)  # a DDP wrapper's model (FSDP2 shards in place)
    parts = parameter_parts(model)
    undecayed = no_decay_parameters(model)
    lrs, decays = stage_lrs(config, stage), part_values(config.optimizer.weight_decay)
    index = config.stages.index(stage)
    groups: dict[tuple[str, bool], Group] = {}
    for name, parameter in model.named_parameters():
        if not (parameter.requires_grad if only is None else name in only):
            continue
        part, decay = parts[name], id(parameter) not in undecayed
        if lrs[part] is None:
            where = ("stages", index, "lr") if isinstance(stage.lr, PartValues) else None
            raise config.error(
                where or ("optimizer", "lr"),
                f"no lr for the {part} part, which stage {stage.name!r} trains: set"
                f" optimizer.lr.{part} (or the stage's lr.{part})",
            )
        weight_decay = (decays[part] or 0.0) if decay else 0.0
        group = groups.setdefault((part, decay), Group(part, decay, lrs[part], weight_decay))
        group.names.append(name)
        group.params.append(parameter)
    if not groups:
        raise config.error(("stages", index), f"stage {stage.name!r} trains no parameters")
    order = {part: i for i, part in enumerate(PARTS)}
    return sorted(groups.values(), key=lambda g: (order[g.part], not g.decay))


def describe(param_groups: list[dict[str, Any]]) -> list[str]:
    """One line per optimizer group for the start-up summary: part, parameters, LR, decay."""
    lines = []
    for group in param_groups:
        count = sum(p.numel() for p in group["params"])
        kind = "" if group.get("decay", True) else " (biases, norms)"
        lr = group.get("initial_lr", group["lr"])  # the schedule's base: the configured LR
        decay = group["weight_decay"]
        lines.append(
            f"  {group.get('part', 'all')}{kind}: {count:,} parameters, lr {lr:.3g},"
            f" weight decay {decay:.3g}"
        )
    return lines
