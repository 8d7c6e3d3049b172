"""Activation (gradient) checkpointing for the LLM and for each modality's encoder: activations
are recomputed in the backward pass instead of kept, trading compute for memory.

    enable_llm_checkpointing(model.language_model)   # model.gradient_checkpointing: true
    enable_encoder_checkpointing(model.modalities["image"])
                                   # modalities.image.gradient_checkpointing: true

Both use torch's non-reentrant checkpoint (``use_reentrant=False``): gradients reach every
parameter that trains whether or not the inputs require gradients (frozen embeddings, LoRA), and
the RNG is replayed, so the gradients equal those without checkpointing. transformers models are
checkpointed per layer (their own ``activation_checkpointing_enable``); an encoder that is no
transformers model (an mmgen MLP or conv encoder, a custom module) is checkpointed as a whole:
each chunk of items through the modality's ``forward`` keeps only its inputs and output.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import PreTrainedModel

from mmgen.errors import ConfigError

# a modality whose whole forward is checkpointed per chunk (read by ``merge.encode_modality``)
CHECKPOINT_FORWARD = "_mmgen_checkpoint_forward"
_KWARGS = {"use_reentrant": False}


def _enable(model: Any) -> None:
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=dict(_KWARGS))
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(_KWARGS))


def enable_llm_checkpointing(language_model: nn.Module) -> None:
    """Checkpoint every decoder layer of the LLM (a ``peft`` model's base model included)."""
    if not getattr(language_model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"the LLM ({type(language_model).__name__}) does not support gradient checkpointing"
        )
    _enable(language_model)


def enable_encoder_checkpointing(modality: nn.Module) -> list[str]:
    """Checkpoint ``modality``'s encoder: each outermost transformers model in it (not in its
    projector) that supports it, per layer; when there is none, the modality's whole forward.
    Returns the submodules checkpointed per layer (empty: the whole forward)."""
    projector = {id(p) for p in modality._projector_parameters()}
    done: list[str] = []
    for name, module in modality.named_modules():
        if not name or not isinstance(module, PreTrainedModel):
            continue
        if any(name.startswith(f"{outer}.") for outer in done):
            continue
        if any(id(p) in projector for p in module.parameters()):
            continue
        if getattr(module, "supports_gradient_checkpointing", False):
            # an encoder keeps no KV cache: without this transformers warns it turned one off
            if getattr(module.config, "use_cache", False):
                module.config.use_cache = False
            _enable(module)
            done.append(name)
    if not done:
        setattr(modality, CHECKPOINT_FORWARD, True)
    return done


def is_checkpointed(module: nn.Module) -> bool:
    """Whether ``module`` (an LLM or a modality) has checkpointing on."""
    if getattr(module, CHECKPOINT_FORWARD, False):
        return True
    return any(getattr(m, "gradient_checkpointing", False) for m in module.modules())
