"""``mmgen export RUN OUT``: a trained model as one self-contained folder to share or serve.

    export("runs/demo", "exports/demo")                      # the run's final model
    export("runs/demo", "exports/demo", format="llava")      # + exports/demo/llava (transformers)

OUT is a saved ``MultimodalModel`` (``mmgen.model.serialization``) with the LoRA adapters merged
into the LLM (no ``llm_adapter/``; the same outputs), the LLM's weights in safetensors shards of
at most ``max_shard_size``, its generation config, the tokenizer with its chat template, the
data options (``mmgen_processor.json``), each modality with its encoder and processor files,
and a model card (``README.md``, ``mmgen.export.card``). ``mmgen.load(OUT)`` reads it.

OUT is written in a temp folder beside it and renamed into place with a manifest
(``mmgen.train.manifest.publish``): it is complete or absent. Every refusal (a bad path, a model
without a LLaVA form, an OUT in the way) comes before anything is written.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmgen.errors import ConfigError
from mmgen.export.source import Source, resolve

FORMATS = ("merged", "llava")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
CARD_FILE = "README.md"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$")


@dataclass
class Exported:
    out: Path
    source: Source
    merged_lora: bool
    llava: Path | None  # OUT/llava, with format="llava"


def export(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint: str | int | None = None,
    format: Literal["merged", "llava"] = "merged",
    max_shard_size: str | int = "2GB",
    dtype: str | None = None,
    overwrite: bool = False,
) -> Exported:
    """Write the model ``path`` means (a run, a checkpoint or a model folder; ``checkpoint``
    picks one of a run's) to ``out``; see the module docstring. ``dtype`` (fp32, bf16, fp16):
    the weights' type in ``out`` (default: the one the LLM was saved in)."""
    import torch

    from mmgen.export.card import model_card
    from mmgen.export.llava import LLAVA_DIR, build_llava, llava_plan
    from mmgen.infer.load import load
    from mmgen.train import manifest

    if format not in FORMATS:
        raise ConfigError(f"--format {format}: choose one of {', '.join(FORMATS)}")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    shard_size = _shard_size(max_shard_size)
    out = Path(out)
    source = resolve(Path(path), checkpoint)
    _check_out(out, source, overwrite)
    target = getattr(torch, DTYPES[dtype] if dtype else _saved_dtype(source.folder))
    # merged in fp32 whatever the weights' type, so the merge adds no rounding of its own
    model, processor = load(path, checkpoint=checkpoint, device="cpu", dtype="fp32")  # verified
    lora = _lora_options(model)
    if lora is not None:  # the LLM's adapters and the encoders'
        model.merge_lora()
    llava = None
    if format == "llava":
        plan = llava_plan(model)  # a model without a LLaVA form is refused here
        llava = build_llava(model, processor, plan)
    card = model_card(model, processor, source, name=out.name, lora=lora,
                      llava=llava[0] if llava else None)  # fmt: skip

    def write(folder: Path) -> None:
        model.to(target)
        model.save_pretrained(
            folder, tokenizer=processor.tokenizer, processor=processor, max_shard_size=shard_size
        )
        (folder / CARD_FILE).write_text(card, encoding="utf-8")
        if llava is not None:
            llava_model, llava_processor = llava
            llava_model.to(target)
            llava_model.save_pretrained(folder / LLAVA_DIR, max_shard_size=shard_size)
            llava_processor.save_pretrained(folder / LLAVA_DIR)
            (folder / LLAVA_DIR / CARD_FILE).write_text(
                model_card(model, processor, source, name=out.name, lora=lora,
                           llava=llava_model, variant="llava"),
                encoding="utf-8",
            )  # fmt: skip

    manifest.publish(out, write, **({"step": source.step} if source.step is not None else {}))
    return Exported(out, source, lora is not None, out / LLAVA_DIR if llava else None)


def _shard_size(value: str | int) -> int:
    """Bytes in ``2GB``, ``500MB``, ``1.5GiB`` or ``5000000`` (units as transformers reads them)."""
    match = _SIZE.match(str(value).strip())
    size = int(float(match.group(1)) * _UNITS.get(match.group(2).upper(), 0)) if match else 0
    if size <= 0:
        raise ConfigError(f"--max-shard-size {value}: give a size such as 2GB, 500MB or 5000000")
    return size


def _check_out(out: Path, source: Source, overwrite: bool) -> None:
    """Refuse an OUT that is a file, holds files (without ``overwrite``), or would write over
    or inside the model being exported."""
    if out.is_file():
        raise ConfigError(f"{out}: a file; give a folder to export to")
    resolved = out.resolve()
    for folder in source.protected():
        folder = folder.resolve()
        if resolved == folder or folder.is_relative_to(resolved):
            raise ConfigError(f"{out}: would replace {folder}, which is being exported")
        if resolved.is_relative_to(folder) and folder != (source.run or Path()).resolve():
            raise ConfigError(f"{out}: inside {folder}, which is being exported")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty: give --overwrite to replace it")


def _saved_dtype(folder: Path) -> str:
    from mmgen.model.serialization import LLM_DIR

    try:
        saved = json.loads((folder / LLM_DIR / "config.json").read_text())
    except (OSError, ValueError):
        saved = {}
    name = saved.get("dtype") or saved.get("torch_dtype") or "float32"
    return name if name in DTYPES.values() else "float32"


def _lora_options(model: Any) -> dict[str, Any] | None:
    """The LoRA settings of a model with adapters (for the card), else None: rank and alpha,
    and the kinds of layers adapted in the LLM (``target_modules``, None when it has none) and
    in each encoder that has adapters (``encoders``)."""
    from mmgen.modality.adapters import has_lora
    from mmgen.model.trainable import is_lora

    llm = model.language_model
    encoders = {name: m for name, m in model.modalities.items() if has_lora(m)}
    if is_lora(llm):
        config = next(iter(llm.peft_config.values()))
    elif encoders:
        config = next(iter(encoders.values())).peft_config["default"]
    else:
        return None
    targets = None
    if is_lora(llm):
        targets = config.target_modules
        if isinstance(targets, (set, list, tuple)):  # full module paths: the layer kinds suffice
            targets = ", ".join(sorted({str(t).rsplit(".", 1)[-1] for t in targets}))
    adapted = {name: _adapted_kinds(m) for name, m in encoders.items()}
    return {"r": config.r, "alpha": config.lora_alpha, "target_modules": targets,
            "encoders": adapted}  # fmt: skip


def _adapted_kinds(module: Any) -> str:
    """The kinds of layers (``q_proj, v_proj``) peft put LoRA layers in."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [name for name, m in module.named_modules() if isinstance(m, BaseTunerLayer)]
    return ", ".join(sorted({name.rsplit(".", 1)[-1] for name in layers}))
