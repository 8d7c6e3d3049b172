"""``mmgen.load(PATH)``: a trained model and its ready processor, in eval mode.

    model, processor = mmgen.load("runs/demo")                 # the run's final model/
    model, processor = mmgen.load("runs/demo", checkpoint="latest", device="cuda")
    loaded = mmgen.load("runs/demo/checkpoints/step-00000100")  # a checkpoint folder
    loaded.generate([{"conversations": [...], "modalities": [...]}])

``PATH`` is a run folder (its ``model/``; or, with ``checkpoint``, ``"latest"``, a step number
or a checkpoint's name), a checkpoint folder, or a saved / exported model folder. A folder with
a manifest is verified first. The modalities' code is imported from where the saved config
records it (``mmgen.model.serialization.import_modality_code``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgen.errors import CheckpointError, ConfigError

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}  # fmt: skip


@dataclass
class Loaded:
    """What ``load`` returns; unpacks as ``model, processor``."""

    model: Any  # MultimodalModel, eval mode
    processor: Any  # MultimodalProcessor
    path: Path  # the model folder read

    def __iter__(self) -> Iterator[Any]:
        yield self.model
        yield self.processor

    def generate(self, rows: Sequence[Mapping[str, Any]], options: Any = None, **kwargs: Any):
        """Completions of dataset-format ``rows`` (their last assistant turn, if any, is left
        out): ``mmgen.model.generation.generate`` on their processed prompts."""
        from mmgen.model.generation import GenerationOptions, generate

        if options is None:
            options = GenerationOptions(**kwargs)
        samples = [self.processor.process(row, generation=True) for row in rows]
        return generate(self.model, self.processor, samples, options)


def load(
    path: str | os.PathLike,
    *,
    checkpoint: str | int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    attn_implementation: str = "sdpa",
) -> Loaded:
    """The model at ``path`` on ``device`` (default: cuda when available, else cpu) in
    ``dtype`` (``fp32``, ``bf16``, ``fp16``; default bf16 on cuda, fp32 on cpu), with its
    processor (tokenizer, chat template and data options it was trained with)."""
    import torch

    from mmgen.model import MultimodalModel
    from mmgen.train import checkpoint as checkpoints
    from mmgen.train import manifest

    folder, verify = model_folder(Path(path), checkpoint)
    if verify is not None:
        manifest.verify_manifest(verify)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = dtype or ("bf16" if str(device).startswith("cuda") else "fp32")
    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r}: choose one of fp32, bf16, fp16")
    with checkpoints.invalid(folder):
        model = MultimodalModel.from_pretrained(
            folder, dtype=getattr(torch, DTYPES[name]), attn_implementation=attn_implementation,
            is_trainable=False,
        )  # fmt: skip
    model = model.to(device).eval()
    processor = model.build_processor()
    return Loaded(model, processor, folder)


def model_folder(path: Path, checkpoint: str | int | None = None) -> tuple[Path, Path | None]:
    """``(the model folder PATH means, the folder whose manifest covers it or None)``."""
    from mmgen.train import checkpoint as checkpoints
    from mmgen.train import manifest

    if not path.exists():
        raise ConfigError(f"{path}: no such run, checkpoint or model folder")
    if not path.is_dir():
        raise ConfigError(f"{path}: a file; give a run, checkpoint or model folder")
    if _is_model(path):
        if checkpoint is not None:
            raise ConfigError(f"{path} is a model folder: it has no checkpoints to choose from")
        return path, path if (path / manifest.MANIFEST_FILE).is_file() else None
    if _is_model(path / checkpoints.MODEL_DIR) and (path / checkpoints.CONFIG_FILE).is_file():
        if checkpoint is not None:
            raise ConfigError(f"{path} is a checkpoint: give its run folder to choose another")
        return path / checkpoints.MODEL_DIR, path  # a checkpoint: its manifest covers model/
    runs = checkpoints.CheckpointManager(path / "checkpoints", keep=1)
    found = runs.checkpoints()
    final = path / "model"
    if not found and not _is_model(final):
        raise ConfigError(
            f"{path}: not a run folder (no model/ or checkpoints/), a checkpoint or a saved model"
        )
    if checkpoint is None and _is_model(final):
        return final, final if (final / manifest.MANIFEST_FILE).is_file() else None
    if checkpoint is None or checkpoint == "latest":
        if not found:
            raise CheckpointError(f"{path}: the run has no checkpoints")
        chosen = found[-1]
    else:
        wanted = f"step-{int(checkpoint):08d}" if str(checkpoint).isdigit() else str(checkpoint)
        chosen = next((f for f in found if f.name == wanted), None)
        if chosen is None:
            names = ", ".join(f.name for f in found) or "none"
            raise ConfigError(f"{path}: no checkpoint {wanted!r}; the run has {names}")
    return chosen / checkpoints.MODEL_DIR, chosen


def _is_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "llm").is_dir()
