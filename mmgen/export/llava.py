"""``mmgen export RUN OUT --format llava``: the model as a plain transformers
``LlavaForConditionalGeneration`` folder, which loads with transformers alone and serves on the
engines that support LLaVA.

A model has that form when it has one modality whose encoder is a CLIP or SigLIP vision tower
read at one layer, without token downsampling, through a linear or linear-activation-linear
projector, on an LLM that is a plain transformers causal LM (its base model and ``lm_head``).
``llava_plan`` gives every reason a model is not, in one line, before anything is written.

The mapping (``mmgen.convert.llava`` goes the other way):

    modality.encoder             -> model.vision_tower (the same class and weight names)
    config.hidden_state          -> vision_feature_layer (None: -1, CLIP's last hidden state)
    drop_cls                     -> vision_feature_select_strategy "default" ("full" without)
    projector Linear-act-Linear  -> multi_modal_projector linear_1, act, linear_2
    projector Linear             -> linear_1, act "linear", linear_2 the identity (exact)
    the LLM's base model, head   -> model.language_model, lm_head
    the placeholder              -> "<image>" in the tokenizer (added when missing, with one
                                    more embedding row: the mean of the others)

The LLaVA model shares the mmgen model's modules (no copy of the weights); only the embedding
and head are new when a row is added. Before it is saved it is checked on a probe image: the
processor's pixels and ``<image>`` count, the image features and text logits must be the mmgen
model's (``check_llava``); the test suite compares whole-model logits after a reload.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmgen.constants import MODALITY_VALUE_KEY, NUM_EMBEDDINGS_KEY
from mmgen.errors import ConfigError
from mmgen.model.trainable import is_lora

LLAVA_DIR = "llava"  # OUT/llava: the transformers folder
IMAGE_TOKEN = "<image>"
VISION_TOWERS = {"clip_vision_model": "CLIPVisionModel", "siglip_vision_model": "SiglipVisionModel"}
# config fields of LLMs whose head does more than lm_head(hidden): LLaVA's head would drop it
LOGIT_SCALING = ("final_logit_softcapping", "logit_scale", "logits_scaling")
PARTS = ("encoder", "downsample", "projector")  # what a generated image modality holds
# mmgen's plain chat format (mmgen.data.chat.plain_segments) as a Jinja template; a message's
# content may be a string holding <image>, or a list of text and image parts
PLAIN_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% else %}<image>{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


@dataclass
class Plan:
    """Where each part of the mmgen model goes in the LLaVA model."""

    name: str  # the modality
    modality: nn.Module
    encoder: nn.Module
    layer: int  # vision_feature_layer
    linears: list[nn.Linear]  # one or two
    activation: str  # projector_hidden_act
    bias: bool  # multimodal_projector_bias


def llava_plan(model: Any) -> Plan:
    """The mapping of ``model`` (LoRA merged) onto LLaVA, or a ``ConfigError`` naming every
    reason it has no LLaVA form."""
    names = list(model.modalities)
    if len(names) != 1:
        listed = ", ".join(names) or "none"
        raise _cannot(f"LLaVA holds one image modality; this model has {len(names)} ({listed})")
    name = names[0]
    modality = model.modalities[name]
    reasons: list[str] = []
    kind = getattr(modality.config, "model_type", type(modality).__name__)
    encoder = getattr(modality, "encoder", None)
    vision = getattr(getattr(encoder, "config", None), "model_type", None)
    layer = getattr(modality.config, "hidden_state", None)
    if vision not in VISION_TOWERS or type(encoder).__name__ != VISION_TOWERS[vision]:
        what = type(encoder).__name__ if encoder is not None else "no `encoder`"
        reasons.append(
            f"modality {name!r} ({kind}) encodes with {what}, not a CLIP or SigLIP vision tower"
        )
    elif not hasattr(modality.config, "hidden_state"):
        reasons.append(f"modality {name!r} does not say which encoder layer it reads")
    elif layer is None and vision == "siglip_vision_model":
        reasons.append(
            f"modality {name!r} reads SigLIP's last_hidden_state, which passes its post-layernorm"
            " (LLaVA reads a layer's hidden states without it): set hidden_state: -1"
        )
    factor = getattr(getattr(modality, "downsample", None), "factor", 1)
    if factor != 1:
        reasons.append(f"modality {name!r} downsamples its tokens by {factor}; LLaVA cannot")
    extra = [part for part, _ in modality.named_children() if part not in PARTS]
    if extra:
        reasons.append(f"modality {name!r} has parts LLaVA has no place for ({', '.join(extra)})")
    linears, activation, bias = _projector(modality, reasons, name)
    _check_llm(model.language_model, reasons)
    if reasons:
        raise _cannot("; ".join(reasons))
    return Plan(name, modality, encoder, -1 if layer is None else int(layer), linears,
                activation, bias)  # fmt: skip


def _cannot(why: str) -> ConfigError:
    return ConfigError(f"--format llava: the model has no LLaVA form: {why}")


def _projector(
    modality: nn.Module, reasons: list[str], name: str
) -> tuple[list[nn.Linear], str, bool]:
    projector = getattr(modality, "projector", None)
    layers = list(projector) if isinstance(projector, nn.Sequential) else [projector]
    linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
    if len(layers) == 1 and len(linears) == 1:
        activation = "linear"
    elif len(layers) == 3 and isinstance(layers[0], nn.Linear) and isinstance(layers[2], nn.Linear):
        activation = _activation_name(
            layers[1], getattr(modality.config, "projector_activation", None)
        )
        if activation is None:
            reasons.append(f"modality {name!r}'s projector activation is none of transformers'")
    else:
        shape = (
            "-".join(type(layer).__name__ for layer in layers) if projector is not None else "none"
        )
        reasons.append(
            f"modality {name!r}'s projector is {shape}; LLaVA's is Linear or Linear-act-Linear"
        )
        return [], "", True
    with_bias = {layer.bias is not None for layer in linears}
    if len(with_bias) > 1:
        reasons.append(f"modality {name!r}'s projector has a bias in one layer only")
    return linears, activation or "", with_bias == {True}


def _activation_name(module: nn.Module, named: str | None) -> str | None:
    from transformers.activations import ACT2FN

    candidates = ([named] if named in ACT2FN else []) + list(ACT2FN)
    for candidate in candidates:
        made = ACT2FN[candidate]
        if type(made) is type(module) and repr(made) == repr(module):
            return candidate
    return None


def _check_llm(llm: nn.Module, reasons: list[str]) -> None:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )

    if is_lora(llm):
        llm = llm.get_base_model()
    kind = getattr(llm.config, "model_type", None)
    prefix = getattr(llm, "base_model_prefix", "")
    base = getattr(llm, prefix, None) if prefix else None
    bases = MODEL_MAPPING_NAMES.get(kind, ())
    bases = (bases,) if isinstance(bases, str) else bases
    if MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(kind) != type(llm).__name__ or (
        type(base).__name__ not in bases
    ):
        reasons.append(
            f"the LLM ({type(llm).__name__}) is no transformers causal LM LLaVA can hold"
        )
        return
    extra = [part for part, _ in llm.named_children() if part not in (prefix, "lm_head")]
    if extra:
        reasons.append(f"the LLM has parts besides {prefix} and lm_head ({', '.join(extra)})")
    scaling = [
        f"{field}={getattr(llm.config, field)}"
        for field in LOGIT_SCALING
        if getattr(llm.config, field, None) not in (None, 1, 1.0)
    ]
    if scaling:
        reasons.append(f"the LLM's head scales its logits ({', '.join(scaling)}); LLaVA's does not")


# -- building ---------------------------------------------------------------------------------


def build_llava(model: Any, processor: Any, plan: Plan) -> tuple[Any, Any]:
    """``(LlavaForConditionalGeneration, LlavaProcessor)`` holding ``model``'s weights (shared,
    not copied), checked against ``model`` on a probe image (``check_llava``)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    llm = model.language_model
    tokenizer, image_id = _tokenizer_with_image_token(processor.tokenizer)
    image = probe_image()
    item = processor.processors[plan.name].process({MODALITY_VALUE_KEY: image})
    pixels, count = item[MODALITY_VALUE_KEY], int(item[NUM_EMBEDDINGS_KEY])
    vision = plan.encoder.config
    with torch.no_grad():
        states = plan.encoder(
            pixel_values=pixels[None].to(plan.encoder.dtype), output_hidden_states=True
        ).hidden_states
    tokens = states[plan.layer].shape[1]
    strategy = {tokens - 1: "default", tokens: "full"}.get(count)
    if strategy is None:
        raise _cannot(
            f"modality {plan.name!r} emits {count} rows from the encoder's {tokens} tokens: LLaVA"
            f" keeps all of them or drops the first"
        )
    config = LlavaConfig(
        vision_config=_portable(vision),
        text_config=_portable(llm.config),
        image_token_index=image_id,
        image_seq_length=count,
        projector_hidden_act=plan.activation,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=plan.layer,
        multimodal_projector_bias=plan.bias,
        tie_word_embeddings=bool(getattr(llm.config, "tie_word_embeddings", False)),
    )
    text, head = _text_parts(llm, image_id + 1)
    config.text_config.vocab_size = text.get_input_embeddings().num_embeddings
    with torch.device("meta"):  # every part is replaced: no memory, no random init
        llava = LlavaForConditionalGeneration(config)
    llava.model.vision_tower = plan.encoder
    llava.model.multi_modal_projector = _llava_projector(config, plan)
    llava.model.language_model = text
    llava.lm_head = head
    llava.generation_config = copy.deepcopy(llm.generation_config)
    left = [n for n, t in [*llava.named_parameters(), *llava.named_buffers()] if t.is_meta]
    if left:  # a part of LlavaForConditionalGeneration this mapping does not know
        raise RuntimeError(f"LLaVA weights left unset: {left[:5]}")
    llava.eval()
    patches = (vision.image_size // vision.patch_size) ** 2
    llava_processor = LlavaProcessor(
        image_processor=_image_processor(processor.processors[plan.name]),
        tokenizer=tokenizer,
        patch_size=vision.patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=tokens - patches,
        image_token=IMAGE_TOKEN,
        chat_template=processor.template or PLAIN_TEMPLATE,
    )
    check_llava(llava, llava_processor, model, plan, image, pixels, count)
    return llava, llava_processor


def _portable(config: Any) -> dict[str, Any]:
    """A sub-config as a dict, without the local folder it was loaded from."""
    return {**config.to_dict(), "_name_or_path": ""}


def probe_image():
    """A fixed noise image, not square, that every check of the mapping runs on."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))


def _tokenizer_with_image_token(tokenizer: Any) -> tuple[Any, int]:
    """A copy of ``tokenizer`` in which ``<image>`` is one token (added as a special token when
    it is not), and its id."""
    from transformers import AddedToken

    tokenizer = copy.deepcopy(tokenizer)
    ids = tokenizer.encode(IMAGE_TOKEN, add_special_tokens=False)
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        token = AddedToken(IMAGE_TOKEN, special=True, normalized=False)
        tokenizer.add_tokens([token], special_tokens=True)
        ids = tokenizer.encode(IMAGE_TOKEN, add_special_tokens=False)
    return tokenizer, ids[0]


def _text_parts(llm: nn.Module, rows: int) -> tuple[nn.Module, nn.Module]:
    """The LLM's base model and head for LLaVA: the LLM's own, or, when the embedding needs
    ``rows`` rows and has fewer, a shallow copy of the base model (every other module shared)
    with a larger embedding and head, the new rows the mean of the old."""
    base = getattr(llm, llm.base_model_prefix)
    embedding, head = llm.get_input_embeddings(), llm.get_output_embeddings()
    if embedding.num_embeddings >= rows:
        return base, head
    text = copy.copy(base)  # the module's own dicts copied below: base itself stays as it is
    text._modules, text._parameters, text._buffers = (
        dict(base._modules), dict(base._parameters), dict(base._buffers),
    )  # fmt: skip
    grown = _grow(embedding.weight, rows)
    text.set_input_embeddings(nn.Embedding(rows, grown.shape[1], _weight=grown,
                                           padding_idx=embedding.padding_idx))  # fmt: skip
    new_head = nn.Linear(head.in_features, rows, bias=head.bias is not None, device="meta")
    if head.weight is embedding.weight:  # tied: the head reads the (grown) embedding
        new_head.weight = text.get_input_embeddings().weight
    else:
        new_head.weight = nn.Parameter(_grow(head.weight.detach(), rows))
    if head.bias is not None:
        new_head.bias = nn.Parameter(_grow(head.bias.detach()[:, None], rows)[:, 0])
    return text, new_head


def _grow(weight: torch.Tensor, rows: int) -> torch.Tensor:
    weight = weight.detach()
    extra = weight.mean(0, keepdim=True).expand(rows - weight.shape[0], -1)
    return torch.cat([weight, extra]).clone()


def _llava_projector(config: Any, plan: Plan) -> nn.Module:
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    first = plan.linears[0]
    projector = LlavaMultiModalProjector(config).to(first.weight.dtype)
    with torch.no_grad():
        projector.linear_1.load_state_dict(first.state_dict())
        if len(plan.linears) == 2:
            projector.linear_2.load_state_dict(plan.linears[1].state_dict())
        else:  # a linear projector: linear_2 passes its input through unchanged
            projector.linear_2.weight.copy_(torch.eye(projector.linear_2.in_features))
            if projector.linear_2.bias is not None:
                projector.linear_2.bias.zero_()
    return projector


def _image_processor(modality_processor: Any) -> Any:
    from transformers.image_processing_base import ImageProcessingMixin

    for value in vars(modality_processor).values():
        if isinstance(value, ImageProcessingMixin):
            return value
    raise _cannot(f"{type(modality_processor).__name__} holds no transformers image processor")


# -- checking ---------------------------------------------------------------------------------


def check_llava(
    llava: Any, llava_processor: Any, model: Any, plan: Plan, image: Any,
    pixels: torch.Tensor, count: int,
) -> None:  # fmt: skip
    """The LLaVA model and processor do what the mmgen model does on ``image``: the same
    pixels, ``<image>`` expanded to the modality's ``count`` rows, the same image features and
    the same logits on text. A ``ConfigError`` says which differs (e.g. a modality whose code
    was edited to do more than the spec says)."""
    inputs = llava_processor(text=IMAGE_TOKEN, images=[image], return_tensors="pt")
    expanded = int((inputs["input_ids"] == llava.config.image_token_id).sum())
    if expanded != count:
        raise _cannot(f"LlavaProcessor makes {expanded} image tokens; the modality, {count}")
    theirs = inputs["pixel_values"][0]
    if theirs.shape != pixels.shape or not torch.allclose(theirs, pixels, atol=1e-4):
        raise _cannot(f"the image processor alone gives other pixels than {plan.name!r}'s does")
    with torch.no_grad():
        dtype = plan.encoder.dtype
        features = llava.model.get_image_features(
            pixel_values=theirs[None].to(dtype),
            vision_feature_layer=llava.config.vision_feature_layer,
            vision_feature_select_strategy=llava.config.vision_feature_select_strategy,
        ).pooler_output[0]
        ours = plan.modality([pixels])[0]
        _same(features, ours, "image features")
        vocab = model.language_model.get_input_embeddings().num_embeddings
        ids = torch.arange(min(8, vocab))[None]
        _same(llava(input_ids=ids).logits[..., :vocab], model.language_model(input_ids=ids).logits,
              "text logits")  # fmt: skip


def _same(theirs: torch.Tensor, ours: torch.Tensor, what: str) -> None:
    tolerance = 1e-4 if ours.dtype == torch.float32 else 2e-2
    scale = float(ours.abs().max()) + 1e-6
    difference = (
        float((theirs.float() - ours.float()).abs().max()) if theirs.shape == ours.shape else None
    )
    if difference is None or difference > tolerance * scale:
        shown = "shapes differ" if difference is None else f"differ by {difference:.3g}"
        raise _cannot(f"the LLaVA model's {what} {shown} from the model's")
