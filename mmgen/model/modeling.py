"""``MultimodalModel``: a causal LLM plus named modalities, run on packed or padded batches."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from mmgen.constants import IGNORE_INDEX
from mmgen.data.batch import ModalityBatch
from mmgen.errors import ConfigError
from mmgen.modality import adapters
from mmgen.modality.base import BaseModality
from mmgen.model import serialization, trainable
from mmgen.model.config import MultimodalConfig
from mmgen.model.merge import merge_embeddings


def _packed_position_ids(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    starts = cu_seqlens[:-1].long()
    lengths = cu_seqlens[1:].long() - starts
    positions = torch.arange(total, device=cu_seqlens.device)
    return positions - torch.repeat_interleave(starts, lengths, output_size=total)


def _to_left_padding(
    input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded on the right (or anywhere) moved so that each row's tokens end the row, in
    order; left-padded rows are returned as they are."""
    mask = attention_mask.bool()
    counts = mask.sum(-1, keepdim=True)
    width = mask.shape[-1]
    # left-padded: the kept positions are exactly the last `count` of the row
    wanted = torch.arange(width, device=mask.device) >= (width - counts)
    if torch.equal(mask, wanted):
        return input_ids, attention_mask
    # a stable sort puts the padding first and keeps the tokens' order
    order = torch.sort(mask.to(torch.int8), dim=-1, stable=True).indices
    return input_ids.gather(-1, order), attention_mask.gather(-1, order)


class MultimodalModel(PreTrainedModel):
    """A causal LLM whose inputs mix text embeddings with modality embeddings.

    Build it from parts, ``MultimodalModel(language_model=llm, modalities={"image": m})``, or from
    a ``MultimodalConfig`` (the LLM loaded from ``config.llm`` or built from ``config.text_config``;
    each modality built from its config).

    Attributes:
        language_model: the causal LM (a ``peft`` model after ``add_lora``).
        modalities: ``nn.ModuleDict`` name -> ``BaseModality`` (peft's LoRA layers injected in
            its encoder after ``add_encoder_lora``).
        placeholder_ids / placeholder_tokens: name -> the id / text marking that modality's items.
    """

    config_class = MultimodalConfig
    base_model_prefix = "mmgen"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(
        self,
        config: MultimodalConfig | None = None,
        *,
        language_model: nn.Module | None = None,
        modalities: Mapping[str, BaseModality] | None = None,
        placeholder_ids: Mapping[str, int] | None = None,
        placeholder_tokens: Mapping[str, str] | None = None,
    ) -> None:
        if config is None:
            if language_model is None:
                raise ConfigError("MultimodalModel needs a config or a language_model")
            config = MultimodalConfig(
                text_config=language_model.config,
                modalities={name: m.config for name, m in (modalities or {}).items()},
                placeholder_ids=placeholder_ids,
                placeholder_tokens=placeholder_tokens,
            )
        elif placeholder_ids is not None or placeholder_tokens is not None:
            raise ConfigError("give placeholder ids and tokens in the config when passing one")
        if language_model is None:
            language_model = self._build_language_model(config)
        if modalities is None:
            from mmgen.modality.registry import AutoModality

            modalities = {
                name: AutoModality.from_config(c) for name, c in config.modalities.items()
            }
        if list(modalities) != list(config.modalities):
            raise ConfigError(
                f"modalities {list(modalities)} do not match the config's {list(config.modalities)}"
            )
        # the parts' configs are the truth: keep one object per config, shared with the parts
        config.text_config = language_model.config
        config.modalities = {name: m.config for name, m in modalities.items()}
        super().__init__(config)
        self.language_model = language_model
        self.modalities = nn.ModuleDict(dict(modalities))
        for modality in self.modalities.values():
            if isinstance(modality, BaseModality):  # _check_modalities reports the others
                modality.ensure_post_init()  # MultiMeditron-style modalities never call it
        self._check_modalities()
        self.post_init()

    @staticmethod
    def _build_language_model(config: MultimodalConfig) -> nn.Module:
        if config.llm is not None:
            return AutoModelForCausalLM.from_pretrained(config.llm)
        if config.text_config is None:
            raise ConfigError("MultimodalConfig needs `llm` (a name or path) or `text_config`")
        return AutoModelForCausalLM.from_config(config.text_config)

    def _check_modalities(self) -> None:
        hidden = self.get_input_embeddings().weight.shape[-1]
        for name, modality in self.modalities.items():
            if not isinstance(modality, BaseModality):
                raise ConfigError(
                    f"modality {name!r} is a {type(modality).__name__}, not a BaseModality"
                )
            width = getattr(modality.config, "hidden_size", None)
            if width != hidden:
                raise ConfigError(
                    f"modality {name!r} projects to hidden_size={width}, but the LLM's hidden size "
                    f"is {hidden}: set hidden_size={hidden} in its config"
                )

    def initialize_weights(self) -> None:
        # every parameter belongs to a part that initialised or loaded itself; transformers'
        # recursive init would re-initialise modules it did not create (peft's LoRA layers)
        return

    # -- what other code reads ------------------------------------------------------------------

    @property
    def placeholder_ids(self) -> dict[str, int]:
        return dict(self.config.placeholder_ids)

    @property
    def placeholder_tokens(self) -> dict[str, str]:
        return dict(self.config.placeholder_tokens)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language_model.get_output_embeddings()

    @property
    def attn_implementation(self) -> str:
        return self.language_model.config._attn_implementation or "eager"

    def build_processor(self, tokenizer: Any = None, **kwargs: Any):
        """The data side for this model: a ``mmgen.data.processor.MultimodalProcessor`` with each
        modality's processor, placeholder tokens and ids. ``tokenizer`` defaults to the one saved
        with the model, else ``config.tokenizer``, else ``config.llm``; the data options a saved
        model was trained with (``max_length``, ``truncation``, ``chat_template``) are the
        defaults of ``kwargs``.
        """
        from mmgen.data.processor import MultimodalProcessor

        if tokenizer is None:
            tokenizer = serialization.load_tokenizer(self)
        for key, value in getattr(self, "processor_options", {}).items():
            kwargs.setdefault(key, value)  # the data options the model was trained with
        processors = {
            name: type(m).preprocessor_class(m.config) for name, m in self.modalities.items()
        }
        kwargs.setdefault("placeholder_tokens", self.placeholder_tokens)
        kwargs.setdefault("placeholder_ids", self.placeholder_ids)
        return MultimodalProcessor(tokenizer, processors, **kwargs)

    # -- forward ----------------------------------------------------------------------------------

    def embed(
        self,
        input_ids: torch.Tensor,
        modalities: Mapping[str, ModalityBatch] | None = None,
        sample_ids: Sequence[str] | None = None,
        *,
        validate: bool = True,
    ) -> torch.Tensor:
        """The LLM's ``inputs_embeds`` for ``input_ids`` (any shape) with modality rows merged."""
        return merge_embeddings(
            input_ids,
            self.get_input_embeddings(),
            self.modalities,
            self.config.placeholder_ids,
            modalities,
            sample_ids,
            validate=validate,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
        attention_mask: torch.Tensor | None = None,
        modalities: Mapping[str, ModalityBatch] | None = None,
        sample_ids: Sequence[str] | None = None,
        validate_packing: bool = True,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Run a batch in the layout of ``mmgen.data.batch``.

        Packed: ``input_ids`` ``(T,)`` with ``cu_seqlens`` (and ``max_seqlen``, ``position_ids``,
        computed when missing); attention stays inside each sample. Padded: ``(B, S)`` with an
        ``attention_mask``. A 1-D ``input_ids`` without ``cu_seqlens`` is one sequence. Logits
        have ``input_ids.shape + (vocab,)``; ``loss`` is set when ``labels`` are given (the LLM's
        shifted cross-entropy; extra keywords such as ``num_items_in_batch`` reach it).

        ``validate_packing=False``: the packed batch comes from ``PackedCollator``, which built
        ``cu_seqlens``, ``max_seqlen`` and ``position_ids`` on the host and already set the
        first label of every sample to -100. ``cu_seqlens`` is then neither checked against T
        nor used to re-mask the labels, and the sdpa/eager mask is built with T and
        ``validate=False``: with ``max_seqlen`` and ``position_ids`` given, the packing reads no
        device value (no host sync on CUDA for it). ``mmgen train`` passes it (its batches come
        from the collators; a padded batch ignores it).
        """
        inputs_embeds = self.embed(input_ids, modalities, sample_ids)
        if labels is not None:
            # placeholder ids are negative; a label there can only mean "no target"
            labels = labels.masked_fill(labels < 0, IGNORE_INDEX)
        packed = input_ids.dim() == 1
        if cu_seqlens is not None:
            if not packed:
                raise ValueError(
                    f"cu_seqlens is for the packed layout: input_ids must be (T,), got "
                    f"{tuple(input_ids.shape)}"
                )
            if attention_mask is not None:
                raise ValueError("give cu_seqlens (packed) or attention_mask (padded), not both")
            from mmgen.data.batch import mask_first_labels
            from mmgen.model.attention import packed_attention_kwargs

            total = input_ids.shape[0]
            if validate_packing and int(cu_seqlens[-1]) != total:
                raise ValueError(f"cu_seqlens ends at {int(cu_seqlens[-1])}, but T = {total}")
            if max_seqlen is None:
                max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) if total else 0
            if position_ids is None:
                position_ids = _packed_position_ids(cu_seqlens.to(input_ids.device), total)
            kwargs.update(
                packed_attention_kwargs(
                    cu_seqlens,
                    max_seqlen,
                    self.attn_implementation,
                    dtype=inputs_embeds.dtype,
                    total=total,
                    validate=validate_packing,
                )
            )
            if labels is not None and validate_packing:
                # no sample is a target of the one packed before it (the collator does this too)
                labels = mask_first_labels(labels, cu_seqlens)
        elif packed and attention_mask is not None:
            attention_mask = attention_mask.unsqueeze(0)
        if packed:
            inputs_embeds = inputs_embeds.unsqueeze(0)
            position_ids = position_ids.unsqueeze(0) if position_ids is not None else None
            labels = labels.unsqueeze(0) if labels is not None else None
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        # a training/scoring pass: no KV cache to build (generate() goes through the LLM's own)
        kwargs.setdefault("use_cache", False)
        out = self.language_model(
            inputs_embeds=inputs_embeds, position_ids=position_ids, labels=labels, **kwargs
        )
        if packed and out.logits is not None:
            out.logits = out.logits.squeeze(0)
        return out

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        modalities: Mapping[str, ModalityBatch] | None = None,
        sample_ids: Sequence[str] | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Generate text after a prompt holding modality items, through the LLM's ``generate``:
        the merged prompt is prefilled as ``inputs_embeds``, then decoding runs on its KV cache.

        ``input_ids`` is one prompt ``(S,)`` or a padded batch ``(B, S)`` with its
        ``attention_mask`` (right-padded rows are moved to the left: new tokens must follow each
        prompt directly). A packed batch (``cu_seqlens``) is refused: its prompts would run as
        one. Returns the new tokens only, ``(B, new)``; ``mmgen.model.generation.generate``
        wraps this for processed prompts, with stop strings and streaming.
        """
        packed = [key for key in ("cu_seqlens", "max_seqlen", "labels") if key in generate_kwargs]
        if packed:
            raise ValueError(
                f"generate got {packed[0]!r}: a packed or training batch. Give prompts as one"
                " (S,) sequence or a (B, S) batch with its attention_mask, e.g."
                " mmgen.data.collator.left_padded(samples, pad_id)"
            )
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
            attention_mask = attention_mask.unsqueeze(0) if attention_mask is not None else None
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} does not match input_ids"
                f" {tuple(input_ids.shape)}"
            )
        input_ids, attention_mask = _to_left_padding(input_ids, attention_mask)
        inputs_embeds = self.embed(input_ids, modalities, sample_ids)
        return self.language_model.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generate_kwargs
        )

    # -- training stages ---------------------------------------------------------------------------

    def set_trainable(self, stage: str | None = None, **parts: Any) -> dict[str, int]:
        """Choose what trains; see ``mmgen.model.trainable.set_trainable``."""
        return trainable.set_trainable(self, stage, **parts)

    def add_lora(self, config: Any = None, **lora_options: Any) -> None:
        """Wrap the LLM with LoRA adapters; see ``mmgen.model.trainable.add_lora``."""
        self.language_model = trainable.add_lora(self.language_model, config, **lora_options)

    def add_encoder_lora(
        self, target_modules: Any = "all-linear", **lora_options: Any
    ) -> dict[str, list[str]]:
        """LoRA adapters on the modalities' encoders (``target_modules``: for all of them, or a
        mapping modality -> modules); see ``mmgen.model.trainable.add_encoder_lora``."""
        return trainable.add_encoder_lora(self, target_modules, **lora_options)

    def merge_lora(self) -> None:
        """Fold every LoRA adapter into the weights it adapts: the LLM's (dropping ``peft``'s
        wrapper) and each encoder's."""
        encoders = [m for m in self.modalities.values() if adapters.has_lora(m)]
        if not trainable.is_lora(self.language_model) and not encoders:
            raise ConfigError("the model has no LoRA adapters to merge")
        if trainable.is_lora(self.language_model):
            self.language_model = trainable.merge_lora(self.language_model)
            self.config.text_config = self.language_model.config
        for modality in encoders:
            adapters.merge_lora(modality)

    # -- saving ------------------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        tokenizer: Any = None,
        processor: Any = None,
        **kwargs: Any,
    ) -> None:
        """Save the LLM, each modality and (when given) the tokenizer and the processor's data
        options; see ``mmgen.model.serialization``."""
        serialization.save(self, save_directory, tokenizer=tokenizer, processor=processor, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any
    ) -> MultimodalModel:
        """Load a model written by ``save_pretrained``: ``config``, ``dtype``,
        ``attn_implementation``, ``device_map`` and ``is_trainable`` (LoRA adapters) are honoured;
        another keyword is a ``TypeError``."""
        if args:
            raise TypeError(
                f"from_pretrained() takes no positional arguments after the path: {args}"
            )
        return serialization.load(cls, pretrained_model_name_or_path, **kwargs)
