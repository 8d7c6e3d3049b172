"""``MultimodalConfig``: the LLM (name or path, and its config) plus named modality configs."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from mmgen.constants import default_placeholder_id, default_placeholder_token
from mmgen.errors import ConfigError, did_you_mean
from mmgen.modality.base import BaseModalityConfig


def _modality_config(name: str, config: Any) -> BaseModalityConfig:
    if isinstance(config, BaseModalityConfig):
        return config
    if isinstance(config, Mapping):
        import mmgen.modalities  # noqa: F401  (registers the built-in modalities)
        from mmgen.modality.registry import AutoModality

        try:
            return AutoModality.config_from_dict(dict(config))
        except KeyError as exc:
            raise ConfigError(f"modality {name!r}: {exc.args[0]}") from None
    raise ConfigError(
        f"modality {name!r}: expected a BaseModalityConfig or a dict with its model_type, "
        f"got {type(config).__name__}"
    )


@functools.cache
def _transformers_keys() -> frozenset[str]:
    """What every transformers config accepts, writes into config.json or is given on loading."""
    accepted = set(inspect.signature(PreTrainedConfig.__init__).parameters)
    return frozenset(accepted | set(PreTrainedConfig().to_dict()) | {"name_or_path", "torch_dtype"})


def _check_name(name: Any) -> str:
    # names become nn.ModuleDict keys and dataset "type" values
    if not isinstance(name, str) or not name or "." in name or not name.isprintable():
        raise ConfigError(f"modality name {name!r} must be a non-empty string without '.'")
    return name


class MultimodalConfig(PreTrainedConfig):
    """Configures a ``MultimodalModel``.

    Args:
        llm: name or path of a pretrained causal LM, loaded when the model is built from this
            config. ``None``: the LLM is built (randomly initialised) from ``text_config``.
        text_config: the LLM's config (a ``PreTrainedConfig`` or a dict with ``model_type``);
            read from ``llm`` when omitted.
        modalities: modality name -> its ``BaseModalityConfig`` (or the dict form, with the
            registered ``model_type``). The name is what a dataset entry's ``"type"`` says, so
            two entries of one modality type (e.g. ``"image"`` and ``"xray"``) are told apart.
            Order matters: it sets the default placeholder ids.
        placeholder_ids: overrides of name -> id (default ``-1000 - k`` for the k-th modality).
        placeholder_tokens: overrides of name -> the text marking an item (default ``"<name>"``).
        tokenizer: name or path of the tokenizer (default: ``llm``).
        modality_code: name -> ``{"module": ..., "root": ...}``: the module defining each
            modality's class (a project's generated package, or mmgen's built-ins) and the
            folder it was imported from. Saving records it; loading imports it first, so a
            saved model loads without importing the project by hand.
    """

    model_type = "mmgen"

    def __init__(
        self,
        llm: str | None = None,
        text_config: PreTrainedConfig | dict[str, Any] | None = None,
        modalities: Mapping[str, BaseModalityConfig | dict[str, Any]] | None = None,
        placeholder_ids: Mapping[str, int] | None = None,
        placeholder_tokens: Mapping[str, str] | None = None,
        tokenizer: str | None = None,
        modality_code: Mapping[str, Mapping[str, str | None]] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(text_config, Mapping):
            text_config = dict(text_config)
            if "model_type" not in text_config:
                raise ConfigError("text_config needs the LLM's 'model_type'")
            text_config = AutoConfig.for_model(text_config.pop("model_type"), **text_config)
        if text_config is None and llm is not None:
            text_config = AutoConfig.from_pretrained(llm)
        self.llm = llm
        self.text_config = text_config
        self.tokenizer = tokenizer
        self.modality_code = {name: dict(entry) for name, entry in (modality_code or {}).items()}
        self.modalities = {
            _check_name(name): _modality_config(name, config)
            for name, config in (modalities or {}).items()
        }
        self.placeholder_ids = self._placeholders(placeholder_ids, default_placeholder_id, "id")
        self.placeholder_tokens = self._placeholders(
            placeholder_tokens,
            lambda k: default_placeholder_token(list(self.modalities)[k]),
            "token",
        )
        unknown = sorted(k for k in set(kwargs) - _transformers_keys() if not k.startswith("_"))
        if unknown:
            known = ["llm", "text_config", "modalities", "placeholder_ids", "placeholder_tokens",
                     "tokenizer", "modality_code"]  # fmt: skip
            raise ConfigError(
                f"MultimodalConfig got an unknown argument {unknown[0]!r}"
                f"{did_you_mean(unknown[0], known, listing=True)}"
            )
        super().__init__(**kwargs)

    def _placeholders(self, overrides, default, what: str) -> dict[str, Any]:
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.modalities))
        if unknown:
            raise ConfigError(
                f"placeholder_{what}s name unknown modalities {unknown}; "
                f"the modalities are {list(self.modalities)}"
            )
        values = {name: overrides.get(name, default(k)) for k, name in enumerate(self.modalities)}
        seen: dict[Any, str] = {}
        for name, value in values.items():
            if what == "id" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"placeholder id of modality {name!r} must be an int: {value!r}")
            if what == "token" and (not isinstance(value, str) or not value):
                raise ConfigError(f"placeholder token of {name!r} must be a non-empty string")
            if value in seen:
                raise ConfigError(
                    f"modalities {seen[value]!r} and {name!r} share the placeholder {what} "
                    f"{value!r}"
                )
            seen[value] = name
        return values

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["modalities"] = {}
        for name, config in self.modalities.items():
            entry = config.to_dict()
            entry.pop("transformers_version", None)
            out["modalities"][name] = entry
        return out
