"""The four-class modality recipe: loader, config, processor and modality (encoder + projector).

Names and signatures follow MultiMeditron's "adding a new modality" walkthrough, so code written
for it runs on mmgen with only its imports changed:

- a loader turns a dataset entry ``{"type": ..., "value": ...}`` into a raw modality (a PIL image,
  a waveform, ...). Loaders are model-agnostic: ``raw-audio`` serves every audio model.
- a config (a ``transformers.PretrainedConfig``) configures the processor and the modality.
- a processor turns the raw modality into a tensor and says how many LLM embeddings it becomes.
- a modality (a ``transformers.PreTrainedModel``) runs a pretrained encoder and a projector into
  the LLM's embedding space.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel


class BaseModalityLoader(ABC):
    """Loads one dataset entry's ``value`` into a raw modality. Register subclasses with
    ``@AutoModalityLoader.register("raw-<type>")``; loaders are callable as ``loader(sample)``.
    """

    #: the registry name, set by ``AutoModalityLoader.register``
    name: str | None = None

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abstractmethod
    def load(self, sample: dict[str, Any]) -> Any:
        """Return the raw modality for ``sample`` (a dict holding the ``"value"`` key)."""

    def measure(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        """What can be told of ``sample``'s value without decoding it (e.g. an audio file's
        frames and rate from its header), or None when nothing can, the default. Raises a
        ``DataError`` for a value that cannot be read (a missing file, a broken header)."""
        return None

    def __call__(self, sample: dict[str, Any]) -> Any:
        return self.load(sample)


class BaseModalityConfig(PretrainedConfig):
    """Configures a modality and its processor.

    Args:
        hidden_size: width of the projected embeddings, i.e. the LLM's hidden size.
        max_batch_size: most modality items the encoder sees in one forward call.
        modality_type: the kind of data (``"image"``, ``"audio"``, ...); the loader default.
        boundary_start, boundary_end: tokens placed before and after each item's embeddings
            (``"<audio_start>"``; ``None``: none), added to the tokenizer when it lacks them.
        **kwargs: any JSON-serialisable fields, kept on the config. ``loader`` names the
            registered loader for this modality's dataset entries (default
            ``f"raw-{modality_type}"``).
    """

    model_type = "mmgen_modality"

    def __init__(
        self,
        hidden_size: int = 1024,
        max_batch_size: int = 32,
        modality_type: str | None = None,
        boundary_start: str | None = None,
        boundary_end: str | None = None,
        **kwargs: Any,
    ) -> None:
        # MultiMeditron's walkthrough passes its extra arguments as ``kwargs=kwargs``
        kwargs.update(kwargs.pop("kwargs", None) or {})
        self.hidden_size = hidden_size
        self.max_batch_size = max_batch_size
        self.modality_type = modality_type
        self.boundary_start = boundary_start
        self.boundary_end = boundary_end
        self.loader = kwargs.pop("loader", None)
        super().__init__(**kwargs)

    @property
    def loader_name(self) -> str:
        """The registered loader for this modality's entries."""
        return self.loader or f"raw-{self.modality_type}"


class BaseModalityProcessor(ABC):
    """Turns a loaded modality into the tensor its modality consumes.

    ``process`` receives the dataset entry with the raw modality under ``MODALITY_VALUE_KEY`` and
    returns a copy holding the tensor there and the number of LLM embeddings it becomes under
    ``NUM_EMBEDDINGS_KEY``.
    """

    def __init__(self, config: BaseModalityConfig) -> None:
        self.config = config

    @abstractmethod
    def process(self, modality: dict[str, Any]) -> dict[str, Any]:
        """Return ``modality`` with its value processed and ``num_embeddings`` set."""

    def count(
        self, modality: dict[str, Any], measure: Callable[[], dict[str, Any] | None]
    ) -> int | None:
        """The ``num_embeddings`` ``process`` would give for this dataset entry, without
        loading or processing its value (the data scan measures whole datasets this way); None
        when only processing can tell, the default. ``measure()`` returns what the loader reads
        cheaply (``BaseModalityLoader.measure``: a file header, an array's shape)."""
        return None

    def __call__(self, modality: dict[str, Any]) -> dict[str, Any]:
        return self.process(modality)


class BaseModality(PreTrainedModel):
    """A pretrained encoder plus a projector into the LLM's embedding space.

    Subclasses set ``config_class`` and ``preprocessor_class`` and implement ``forward``, which
    takes a list of processed tensors (at most ``config.max_batch_size``) and returns either a
    ``(B, N, hidden_size)`` tensor or a list of ``(N_i, hidden_size)`` tensors, one per input.

    The freeze helpers assume the projector is ``self.projector`` and treat every other
    parameter as the modality embedder; override them when that does not hold.
    """

    config_class = BaseModalityConfig
    preprocessor_class: type[BaseModalityProcessor] | None = None
    # config fields that only say where the encoder's first weights come from (a weights file,
    # a name in a cache): a saved modality holds its trained weights, so it saves them as None
    weight_source_fields: tuple[str, ...] = ()
    base_model_prefix = "modality"
    main_input_name = "inputs"

    def __init__(self, config: BaseModalityConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)

    def ensure_post_init(self) -> None:
        """Run transformers' ``post_init`` if this modality's ``__init__`` did not.

        transformers 5 cannot save or load a model whose ``post_init`` never ran, and
        MultiMeditron-style modalities do not call it. mmgen calls this where it takes a modality
        over: when a ``MultimodalModel`` adopts it, and when it is saved or loaded. Generated
        modalities call ``post_init`` at the end of their own ``__init__``. The weights stay as
        they are (``post_init`` would re-initialize every module not marked initialized, e.g. a
        projector trained or copied in since ``__init__``).
        """
        if "all_tied_weights_keys" in self.__dict__:  # set by post_init
            return
        for module in self.modules():
            module._is_hf_initialized = True
        self.post_init()

    @abstractmethod
    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Encode and project ``inputs``; see the class docstring for the shapes."""

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        state_dict: dict[str, torch.Tensor] | None = None,
        is_main_process: bool = True,
    ) -> BaseModalityConfig | None:
        """Save config, weights and the non-weight files of every local directory the config
        names (see ``mmgen.modality.saving``), so the checkpoint loads after those are gone;
        returns the config as written (its path fields pointing into the folder). A modality is
        always safetensors files. ``is_main_process=False`` (the other ranks) writes nothing.
        """
        from mmgen.modality.saving import save_modality

        if not is_main_process:
            return None
        return save_modality(self, save_directory, state_dict)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *args: Any,
        config: BaseModalityConfig | None = None,
        dtype: torch.dtype | str | None = None,
        device_map: torch.device | str | None = None,
        **kwargs: Any,
    ) -> BaseModality:
        """Load a modality written by ``save_pretrained``: built eagerly (its ``__init__`` loads
        its encoder from the saved copy of the folder its config names), then every other weight
        loaded strictly. Called on ``BaseModality`` itself, the class comes from the config's
        registered ``model_type`` (transformers' ``AutoModel``, which registration fills).
        """
        from mmgen.modality.saving import check_load_options, load_modality

        check_load_options(f"{cls.__name__}.from_pretrained", args, kwargs)
        if cls is BaseModality:
            from transformers import AutoModel

            return AutoModel.from_pretrained(pretrained_model_name_or_path, dtype=dtype)
        if config is not None and not isinstance(config, cls.config_class):
            raise TypeError(f"config must be a {cls.config_class.__name__}, got {type(config)}")
        return load_modality(
            cls, pretrained_model_name_or_path, config=config, dtype=dtype, device=device_map
        )

    def _projector_parameters(self) -> list[torch.nn.Parameter]:
        projector = getattr(self, "projector", None)
        if projector is None:
            raise AttributeError(
                f"{type(self).__name__} has no `projector`; override the freeze methods"
            )
        return list(projector.parameters())

    def _embedder_parameters(self) -> list[torch.nn.Parameter]:
        projector_ids = {id(p) for p in self._projector_parameters()}
        return [p for p in self.parameters() if id(p) not in projector_ids]

    def freeze_modality_embedder(self) -> None:
        for parameter in self._embedder_parameters():
            parameter.requires_grad = False

    def unfreeze_modality_embedder(self) -> None:
        for parameter in self._embedder_parameters():
            parameter.requires_grad = True

    def freeze_projection(self) -> None:
        for parameter in self._projector_parameters():
            parameter.requires_grad = False

    def unfreeze_projection(self) -> None:
        for parameter in self._projector_parameters():
            parameter.requires_grad = True
