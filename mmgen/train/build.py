"""From a training config to the objects a run needs: the project's modalities registered, the
tokenizer, the MultimodalModel (LLM + modalities), the MultimodalProcessor and the datasets.

Every user mistake found here is a ``ConfigError`` naming the config line (``file:line: key``).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch

from mmgen import project
from mmgen.errors import MmgenError
from mmgen.train.config import TrainConfig
from mmgen.train.distributed import World, barrier
from mmgen.train.fields import check_fields
from mmgen.train.random_init import random_init_fields

logger = logging.getLogger("mmgen.train")


def register_project(config: TrainConfig) -> str | None:
    """Import ``<package>.modalities`` of the project so its generated modalities register."""
    package = config.package
    if package is None and project.find_root(config.root) == config.root:
        try:
            package = project.package_of(config.root)
        except MmgenError as exc:
            raise config.error(("package",), str(exc)) from None
    if package is None:
        return None
    if str(config.root) not in sys.path:
        sys.path.insert(0, str(config.root))
    try:
        importlib.import_module(f"{package}.modalities")
    except ModuleNotFoundError as exc:
        if exc.name not in (package, f"{package}.modalities"):
            raise
        message = f"cannot import {package}.modalities from {config.root}"
        raise config.error(("package",), message) from None
    return package


def load_tokenizer(config: TrainConfig):
    from transformers import AutoTokenizer

    source = config.model.tokenizer or config.model.llm or config.model.init_from
    key = "tokenizer" if config.model.tokenizer else ("llm" if config.model.llm else "init_from")
    if source is None:
        raise config.error(("model",), "set model.tokenizer (a random-init LLM has none)")
    where = config.name_or_path(source, "model", key)
    try:
        return AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = f"cannot load a tokenizer from {source!r}: {first}"
        raise config.error(("model", key), message) from None


def build_model(config: TrainConfig, tokenizer: Any, world: World):
    """The MultimodalModel the config describes, in float32 on the CPU (moved later)."""
    from mmgen.model import MultimodalModel

    section = config.model
    if section.init_from is not None:
        path = config.path(section.init_from)
        if not path.is_dir():
            raise config.error(("model", "init_from"), f"folder not found: {path}")
        return load_model(path, config)
    torch.manual_seed(config.seed)  # the same random init on every rank and every run
    llm = _language_model(config, tokenizer, section.attn_implementation)
    hidden = llm.get_input_embeddings().weight.shape[-1]
    modalities, tokens = {}, {}
    for name in config.modalities:
        modalities[name] = _modality(config, name, hidden, world)
        placeholder = getattr(modalities[name].config, "placeholder", None)
        if isinstance(placeholder, str) and placeholder:
            tokens[name] = placeholder
    _boundary_tokens(tokenizer, {n: m.config for n, m in modalities.items()}, llm)
    model = MultimodalModel(language_model=llm, modalities=modalities, placeholder_tokens=tokens)
    model.config.tokenizer = None  # saved beside the model instead
    return model.train()


def _boundary_tokens(tokenizer: Any, configs: dict[str, Any], llm: Any = None) -> None:
    """Add the modalities' new boundary tokens to the tokenizer (saved with the model) and
    grow the LLM's embeddings to match: new rows start from the vocabulary's mean and train
    with the LLM's embeddings; tokens the LLM already knows keep their pretrained rows."""
    from mmgen.data.processor import add_boundary_tokens

    added = add_boundary_tokens(tokenizer, configs)
    if llm is not None and len(tokenizer) > llm.get_input_embeddings().weight.shape[0]:
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    if added and llm is not None:
        logger.info("added boundary tokens %s to the tokenizer (new embedding rows)", added)


def load_model(path: Path, config: TrainConfig):
    """A saved MultimodalModel (a checkpoint's ``model/``, or a finished run's), ready to train.
    A folder with its own manifest (a final model) is verified first; a damaged file or
    non-finite weights are a ``CheckpointError``."""
    from mmgen.model import MultimodalModel
    from mmgen.train import checkpoint, manifest

    if (path / manifest.MANIFEST_FILE).is_file():
        manifest.verify_manifest(path)
    with checkpoint.invalid(path):
        model = MultimodalModel.from_pretrained(
            path, attn_implementation=config.model.attn_implementation
        )
    checkpoint.check_finite(model, path)
    return model.train()


def _language_model(config: TrainConfig, tokenizer: Any, attn: str):
    from transformers import AutoModelForCausalLM

    section = config.model
    if section.llm is not None:
        where = config.name_or_path(section.llm, "model", "llm")
        try:
            return AutoModelForCausalLM.from_pretrained(
                where, attn_implementation=attn, dtype=torch.float32
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise config.error(("model", "llm"), f"cannot load {section.llm!r}: {first}") from None
    llm_config = _text_config(config, tokenizer)
    return AutoModelForCausalLM.from_config(llm_config, attn_implementation=attn)


def _text_config(config: TrainConfig, tokenizer: Any):
    """The random-init LLM's config from ``model.text_config``."""
    from transformers import AutoConfig

    options = dict(config.model.text_config or {})
    model_type = options.pop("model_type")
    # the vocabulary and special ids come from the tokenizer unless the config sets them
    options.setdefault("vocab_size", len(tokenizer))
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(tokenizer, key, None) is not None:
            options.setdefault(key, getattr(tokenizer, key))
    try:
        return AutoConfig.for_model(model_type, **options)
    except (ValueError, TypeError) as exc:
        raise config.error(("model", "text_config"), str(exc).splitlines()[0]) from None


def _modality(config: TrainConfig, name: str, hidden: int, world: World):
    modality_class, modality_config = modality_parts(config, name, hidden, write=world.main)
    if config.modalities[name].random_init is not None:
        barrier()  # other ranks read what rank 0 wrote
    try:
        return modality_class(modality_config)
    except (TypeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0]
        kind = config.modalities[name].type or name
        raise config.error(("modalities", name, "config"), f"{kind}: {first}") from None


def modality_parts(config: TrainConfig, name: str, hidden: int, *, write: bool):
    """``(modality class, its config)`` of modality ``name`` for an LLM of width ``hidden``.
    With ``random_init`` its tiny encoder and processor are saved under the run's folder first
    (``write``: by this process; other ranks only read them)."""
    import mmgen.modalities  # noqa: F401  (registers the built-in modalities)
    from mmgen.modality.registry import AutoModality

    section = config.modalities[name]
    kind = section.type or name
    try:
        modality_class = AutoModality.get(kind)
    except KeyError as exc:
        hint = f"; generate it with `mmgen new-modality {kind}` in the project"
        loc = ("modalities", name, "type") if section.type else ("modalities", name)
        raise config.error(loc, f"{exc.args[0]}{hint}") from None
    fields = dict(section.config)
    check_fields(config, ("modalities", name, "config"), fields, modality_class.config_class)
    given = fields.get("hidden_size")
    if given is not None and given != hidden:
        raise config.error(
            ("modalities", name, "config", "hidden_size"),
            f"{given}, but the LLM's hidden size is {hidden} (leave hidden_size out: mmgen sets"
            " it from the LLM)",
        )
    fields["hidden_size"] = hidden
    if section.random_init is not None:
        folder = config.path(config.output_dir) / "random_init" / name
        fields.update(random_init_fields(config, name, kind, section.random_init, folder,
                                         write=write))  # fmt: skip
    try:
        return modality_class, modality_class.config_class(**fields)
    except (TypeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise config.error(("modalities", name, "config"), f"{kind}: {first}") from None


def build_processor(config: TrainConfig, model: Any, tokenizer: Any):
    """The model's ``MultimodalProcessor`` with the config's data options."""
    processors = {
        name: type(m).preprocessor_class(m.config) for name, m in model.modalities.items()
    }
    return _processor(
        config, tokenizer, processors, model.placeholder_tokens, model.placeholder_ids
    )


def data_processor(config: TrainConfig, tokenizer: Any):
    """The ``MultimodalProcessor`` ``build_processor`` makes for this config's model, without
    building the model: the LLM's width is read from its config (no weights are loaded), each
    modality's processor from its config. Its indexes are the ones training reads."""
    from mmgen.model.config import MultimodalConfig

    if config.model.init_from is not None:  # the saved model's own modalities and placeholders
        return build_processor(config, build_model(config, tokenizer, _single()), tokenizer)
    hidden = _hidden_size(config, tokenizer)
    configs, processors, tokens = {}, {}, {}
    for name in config.modalities:
        modality_class, configs[name] = modality_parts(config, name, hidden, write=True)
        try:
            processors[name] = modality_class.preprocessor_class(configs[name])
        except (TypeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise config.error(("modalities", name, "config"), f"processor: {first}") from None
        placeholder = getattr(configs[name], "placeholder", None)
        if isinstance(placeholder, str) and placeholder:
            tokens[name] = placeholder
    _boundary_tokens(tokenizer, configs)
    # the model's config settles placeholder ids and tokens: the same defaults as build_model's
    settled = MultimodalConfig(modalities=configs, placeholder_tokens=tokens)
    return _processor(
        config, tokenizer, processors, settled.placeholder_tokens, settled.placeholder_ids
    )


def _processor(config: TrainConfig, tokenizer: Any, processors: dict, tokens: dict, ids: dict):
    from mmgen.data.processor import MultimodalProcessor
    from mmgen.modality.registry import AutoModalityLoader

    loaders = {}
    for name, processor in processors.items():
        options = getattr(processor.config, "loader_options", None)
        if options:  # generated modalities keep their loader's options in the config
            loaders[name] = AutoModalityLoader.from_name(processor.config.loader, **options)
    data = config.data
    return MultimodalProcessor(
        tokenizer,
        processors,
        loaders=loaders,
        placeholder_tokens=tokens,
        placeholder_ids=ids,
        max_length=data.max_length,
        truncation=data.truncation,
        on_error=data.on_error,
        chat_template=data.chat_template,
    )


def _hidden_size(config: TrainConfig, tokenizer: Any) -> int:
    from transformers import AutoConfig

    section = config.model
    if section.llm is not None:
        where = config.name_or_path(section.llm, "model", "llm")
        try:
            llm_config = AutoConfig.from_pretrained(where)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise config.error(("model", "llm"), f"cannot load {section.llm!r}: {first}") from None
    else:
        llm_config = _text_config(config, tokenizer)
    return int(llm_config.get_text_config().hidden_size)


def _single() -> World:
    return World(rank=0, size=1, local_rank=0, device=torch.device("cpu"))


def load_split(config: TrainConfig, processor: Any, split: str, *, on_error: str | None = None):
    """A ``MultimodalDataset`` of ``data.<split>`` (scanned once: lengths for packing), or for
    a list of sources a ``Mixture`` of one such dataset per source. ``on_error`` overrides
    ``data.on_error`` (``mmgen data check`` skips bad rows to report every one)."""

    value = getattr(config.data, split)
    if not isinstance(value, str):
        return _mixture(config, processor, split, on_error)
    return _dataset(config, processor, data_path(config, split), on_error)


def _dataset(config: TrainConfig, processor: Any, path: Path, on_error: str | None = None):
    from mmgen.data.dataset import MultimodalDataset

    data = config.data
    workers = data.scan_workers or len(os.sched_getaffinity(0))
    with one_thread():
        return MultimodalDataset(
            path, processor, cache=data.cache, media_root=media_root(config), index=data.index,
            scan_workers=workers, scan_headers=data.scan_headers, progress=True,
            on_error=on_error or data.on_error,
        )  # fmt: skip


def _mixture(config: TrainConfig, processor: Any, split: str, on_error: str | None = None):
    from mmgen.data.mixture import Mixture, MixtureSource

    sections = getattr(config.data, split)
    # every path first: a mistyped third source stops the run before two long scans
    paths = [
        existing_path(config, s.path, "data", split, i, "path") for i, s in enumerate(sections)
    ]
    sources = []
    for section, path in zip(sections, paths, strict=True):
        dataset = _dataset(config, processor, path, on_error)
        sources.append(MixtureSource(section.label, dataset, section.weight, section.epochs,
                                     section.max_samples))  # fmt: skip
    mixture = Mixture(sources)
    for i, (section, count) in enumerate(zip(sections, mixture.counts, strict=True)):
        if count == 0:  # only a small weight or epochs (below one sample) gives none
            key = "weight" if section.weight is not None else "epochs"
            message = f"gives {section.label!r} none of the {mixture.epoch_size} samples per epoch"
            raise config.error(("data", split, i, key), f"{message}; raise it")
    return mixture


def data_path(config: TrainConfig, split: str) -> Path:
    return existing_path(config, getattr(config.data, split), "data", split)


def existing_path(config: TrainConfig, value: str, *loc: str | int) -> Path:
    path = config.path(value)
    if not path.exists():
        raise config.error(loc, f"file not found: {path}")
    return path


def media_root(config: TrainConfig) -> Path | None:
    """``data.media_root`` as a path; None leaves each dataset file's folder as the root."""
    if config.data.media_root is None:
        return None
    path = config.path(config.data.media_root)
    if not path.is_dir():
        raise config.error(("data", "media_root"), f"folder not found: {path}")
    return path


class one_thread:
    """Feature extraction is many tiny torch ops: with several threads (and other processes on
    the cores) thread hand-offs cost far more than the work. Scan on one thread."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.threads)


def enable_checkpointing(config: TrainConfig, model: Any) -> list[str]:
    """Activation checkpointing where the config asks for it (``model.gradient_checkpointing``,
    ``modalities.NAME.gradient_checkpointing``); returns what it checkpoints, for the summary."""
    from mmgen.model.checkpointing import enable_encoder_checkpointing, enable_llm_checkpointing

    done = []
    if config.model.gradient_checkpointing:
        try:
            enable_llm_checkpointing(model.language_model)
        except MmgenError as exc:
            raise config.error(("model", "gradient_checkpointing"), str(exc)) from None
        done.append("llm")
    for name, section in config.modalities.items():
        if section.gradient_checkpointing:
            layers = enable_encoder_checkpointing(model.modalities[name])
            done.append(f"{name} encoder ({'per layer' if layers else 'whole forward'})")
    return done


def check_modalities(config: TrainConfig, model: Any) -> None:
    """Modalities the config names must be the model's (matters with ``init_from``)."""
    missing = sorted(set(config.modalities) - set(model.modalities))
    if missing:
        raise config.error(
            ("modalities", missing[0]),
            f"the model has no modality {missing[0]!r}; it has {sorted(model.modalities)}",
        )


def open_test(config: TrainConfig, processor: Any, skips: Any) -> list[Any] | None:
    """The held-out rows, each checked once now (processed as a prompt, its reference answer
    read), so a bad one stops the run before training rather than after it. Under
    ``on_error: skip`` bad rows and malformed lines are left out and counted in ``skips``."""
    from mmgen.data.readers import open_source
    from mmgen.train.evaluate import reference_answer

    if config.data.test is None:
        return None
    source = open_source(
        data_path(config, "test"),
        on_error=config.data.on_error,
        skips=skips,
        media_root=media_root(config),
    )
    rows = []

    def check(index: int):
        row = source[index]
        processor.process(row.row, origin=row.origin, base_dir=row.base_dir, generation=True)
        reference_answer(processor, row)
        return row

    with one_thread():
        for index in range(len(source)):
            row = skips.attempt(config.data.on_error, check, index)
            if row is not None:
                rows.append(row)
    return rows
