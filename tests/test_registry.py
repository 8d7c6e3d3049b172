"""The registries' guard rails: what may register under which name."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, LlamaConfig

import mmgen.loaders  # noqa: F401  (registers raw-audio, raw-image)
from mmgen import (
    AutoModality,
    AutoModalityLoader,
    BaseModality,
    BaseModalityConfig,
    BaseModalityProcessor,
)


class _Config(BaseModalityConfig):
    pass


class _Processor(BaseModalityProcessor):
    def process(self, modality):
        return modality


def _modality_class() -> type[BaseModality]:
    class Modality(BaseModality):
        config_class = type("Config", (_Config,), {})
        preprocessor_class = _Processor

        def forward(self, inputs):
            return torch.stack(inputs)

    return Modality


def test_a_transformers_model_type_is_not_a_modality_name(registry) -> None:
    # registering "llama" would make AutoConfig build this modality's config for every Llama
    with pytest.raises(ValueError, match="'llama' is a transformers model type"):
        AutoModality.register("llama")(_modality_class())
    assert AutoConfig.for_model("llama").__class__ is LlamaConfig
    with pytest.raises(KeyError):
        AutoModality.get("llama")


@pytest.fixture
def registry():
    saved = dict(AutoModality._registry)
    yield
    AutoModality._registry.clear()
    AutoModality._registry.update(saved)


def test_a_name_is_registered_once_and_unknown_names_get_a_hint(registry) -> None:
    first, second = _modality_class(), _modality_class()
    second.__qualname__ = "Other"
    AutoModality.register("test_registry_once")(first)
    AutoModality.register("test_registry_once")(first)  # the same class again: fine
    with pytest.raises(ValueError, match="already registered"):
        AutoModality.register("test_registry_once")(second)
    with pytest.raises(KeyError, match="did you mean 'test_registry_once'"):
        AutoModality.get("test_registry_onse")
    with pytest.raises(KeyError, match="did you mean 'raw-audio'"):
        AutoModalityLoader.from_name("raw-adio")


def test_a_projects_modality_takes_over_a_builtin_name(registry) -> None:
    """A project that generates its own ``audio`` (say, from an edited spec) gets the name, in
    either import order; a built-in never takes it back."""
    from transformers import AutoModel

    import mmgen.modalities  # noqa: F401  (registers the built-ins)

    builtin = AutoModality.get("audio")
    mine = _modality_class()
    try:
        AutoModality.register("audio")(mine)
        assert AutoModality.get("audio") is mine
        assert AutoConfig.for_model("audio").__class__ is mine.config_class
        AutoModality.register("audio")(builtin)  # the built-in module imported again
        assert AutoModality.get("audio") is mine
        other = _modality_class()
        other.__qualname__ = "OtherProjectAudio"
        with pytest.raises(ValueError, match="already registered"):
            AutoModality.register("audio")(other)  # two user classes cannot share a name
    finally:
        AutoModality._registry["audio"] = builtin
        AutoConfig.register("audio", builtin.config_class, exist_ok=True)
        AutoModel.register(builtin.config_class, builtin, exist_ok=True)
