"""Random-init encoders and processors for offline runs, from a modality spec's ``test`` block.

A generated modality loads its encoder and processor by path (``encoder_name_or_path``,
``processor_name_or_path``). With ``random_init`` in the training config, mmgen builds the spec's
tiny test encoder (updated with the config's overrides), saves it under the run's folder and
points the modality config at it, so the demo trains with nothing downloaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mmgen.errors import MmgenError
from mmgen.train.config import RandomInit, TrainConfig
from mmgen.train.fields import check_fields


def random_init_fields(
    config: TrainConfig, name: str, kind: str, section: RandomInit, folder: Path, *, write: bool
) -> dict[str, Any]:
    """Modality config fields that point at a fresh random-init encoder (and processor) saved
    in ``folder``. ``write`` is False on ranks that only read what rank 0 saved."""
    from mmgen.testing import save_tiny_model, save_tiny_processor

    spec = _spec(config, name, section.spec or kind)
    fields: dict[str, Any] = {}
    encoder_options = {**(spec.test.encoder or {}), **section.encoder}
    if spec.encoder.kind == "transformers":
        encoder_class = _import(config, name, spec.encoder.class_)
        loc = ("modalities", name, "random_init", "encoder")
        check_fields(config, loc, section.encoder, encoder_class.config_class)
        path = folder / "encoder"
        if write:
            save_tiny_model(encoder_class, path, seed=section.seed, **encoder_options)
        fields["encoder_name_or_path"] = str(path)
    else:  # built-in, module and timm encoders are built from their options, random-init
        fields["encoder_options"] = encoder_options
        if spec.encoder.kind == "timm":
            fields["encoder_weights"] = None  # not the spec's pretrained weights
    processor_options = {**(spec.test.processor or {}), **section.processor}
    if spec.processor.kind == "transformers" and processor_options:
        processor_class = _import(config, name, spec.processor.class_)
        loc = ("modalities", name, "random_init", "processor")
        check_fields(config, loc, section.processor, processor_class)
        path = folder / "processor"
        if write:
            save_tiny_processor(processor_class, path, **processor_options)
        fields["processor_name_or_path"] = str(path)
    return fields


def _spec(config: TrainConfig, name: str, spec: str):
    from mmgen.spec.catalog import resolve

    try:
        if spec.endswith((".yaml", ".yml")):  # a spec file, relative to the project
            return resolve(name, config.path(spec))[0]
        return resolve(spec, None)[0]  # a built-in spec by name
    except MmgenError as exc:
        raise config.error(("modalities", name, "random_init", "spec"), str(exc)) from None


def _import(config: TrainConfig, name: str, dotted: str | None) -> type:
    module, _, attribute = (dotted or "").rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError):
        loc = ("modalities", name, "random_init")
        raise config.error(loc, f"cannot import {dotted!r} named by the spec") from None
