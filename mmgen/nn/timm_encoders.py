"""timm image models as modality encoders (a spec's ``encoder: {kind: timm}``).

``TimmEncoder`` wraps ``timm.create_model(name, num_classes=0, **options)`` and returns one row
per kept token: the features of ``feature_layer`` (-1: the model's final features,
``forward_features``; another index: that block's output, ``forward_intermediates``, negative
from the end: -2 is the penultimate block, as LLaVA takes; the blocks after it are pruned),
pooled by ``pooling`` (``none``: every patch token, class and register tokens dropped; ``cls``:
the class token; ``avg``: the mean of the patch tokens).

``timm_info`` finds what such an encoder takes and emits without building it for real: the model
is created on the meta device (no memory, no weights) and run on a meta image, which gives the
token grid and width that a spec's ``num_embeddings`` formula reads (``encoder.tokens``,
``encoder.grid_height``, ...), and timm's ``resolve_model_data_config`` gives the input size and
normalization that the generated processor applies (``timm_transform``), so they match the model.

Weights are only ever read from local files: a ``.safetensors`` file, a folder holding
``model.safetensors``, or a timm name (``vit_base_patch16_224.augreg_in21k``) whose weights are
already in the local Hugging Face cache. Nothing is downloaded, and nothing is unpickled.

timm is imported only here, inside these functions: a generated timm modality imports without it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmgen.errors import MmgenError, did_you_mean
from mmgen.nn.encoders import pretrained_path

POOLINGS = ("none", "cls", "avg")
WEIGHTS_FILE = "model.safetensors"


def import_timm():
    try:
        import timm
    except ImportError as exc:
        message = f"encoder kind 'timm' needs the timm package: pip install timm ({exc})"
        raise MmgenError(message) from None
    return timm


def check_model_name(name: str) -> None:
    """An ``MmgenError`` (with the closest names) unless timm knows ``name`` (tag optional)."""
    timm = import_timm()
    architecture, _, tag = name.partition(".")
    if not timm.is_model(architecture):
        hint = did_you_mean(architecture, timm.list_models(), cutoff=0.7)
        raise MmgenError(f"timm has no model {architecture!r}{hint}")
    tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{architecture}.*")]
    if tag and tag not in tags:
        hint = did_you_mean(tag, tags, listing=True)
        raise MmgenError(f"timm model {architecture!r} has no pretrained tag {tag!r}{hint}")


def create_model(name: str, options: dict[str, Any] | None = None) -> nn.Module:
    """``timm.create_model`` without its classifier head and without weights."""
    timm = import_timm()
    kwargs = {**(options or {}), "num_classes": 0}
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise MmgenError(f"timm.create_model({name!r}) with {options or {}}: {exc}") from None


def feature_layers(model: nn.Module) -> int:
    """How many layers ``forward_intermediates`` can take (the blocks of a ViT, the stages of a
    CNN); 0 when the model has no ``forward_intermediates``."""
    if not hasattr(model, "forward_intermediates"):
        return 0
    return len(getattr(model, "feature_info", None) or ())


def check_feature_layer(model: nn.Module, name: str, layer: int) -> None:
    if layer == -1:
        return
    count = feature_layers(model)
    if count == 0:
        raise MmgenError(
            f"timm model {name!r} has no forward_intermediates: only feature_layer -1 (its final"
            " features) can be taken"
        )
    if not -count <= layer < count:
        raise MmgenError(
            f"feature_layer {layer} is out of range: {name} has {count} feature layers"
            f" (0..{count - 1}, or -{count}..-1 from the end)"
        )


def check_pooling(model: nn.Module, name: str, pooling: str) -> None:
    if pooling not in POOLINGS:
        raise MmgenError(f"pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
    if pooling == "cls" and getattr(model, "cls_token", None) is None:
        raise MmgenError(f"pooling 'cls': timm model {name!r} has no class token")


class TimmEncoder(nn.Module):
    """``(B, C, H, W)`` images -> ``(B, tokens, hidden_size)`` rows of a timm model's features."""

    def __init__(
        self,
        model_name: str,
        *,
        options: dict[str, Any] | None = None,
        weights: str | None = None,
        feature_layer: int = -1,
        pooling: str = "none",
    ) -> None:
        super().__init__()
        self.model = create_model(model_name, options)
        check_feature_layer(self.model, model_name, feature_layer)
        check_pooling(self.model, model_name, pooling)
        if weights:
            load_weights(self.model, weights)
        self.model_name, self.feature_layer, self.pooling = model_name, feature_layer, pooling
        if feature_layer != -1:
            # the blocks after the one taken (and the final norm) are dropped: they would cost
            # compute and hold parameters without gradients (which DDP refuses)
            (self.feature_layer,) = self.model.prune_intermediate_layers(
                [feature_layer], prune_norm=True, prune_head=True
            )
        # transformers' post_init (run by the modality) re-initializes modules it has not seen
        # initialized: timm's own init, or the weights just loaded, stay
        for module in self.model.modules():
            module._is_hf_initialized = True
        self.hidden_size = timm_info(model_name, options, feature_layer, pooling).width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return _features(self.model, images, self.feature_layer, self.pooling)[0]


def _features(
    model: nn.Module, images: torch.Tensor, layer: int, pooling: str
) -> tuple[torch.Tensor, tuple[int, int], int]:
    """The pooled rows, the token grid (rows, columns) and the number of prefix tokens."""
    prefix = None
    if layer == -1:
        out = model.forward_features(images)
        if out.ndim == 4:  # a feature map: NCHW, or NHWC where the model says so (Swin)
            if getattr(model, "output_fmt", "NCHW") != "NHWC":
                out = out.permute(0, 2, 3, 1)
            grid = (out.shape[1], out.shape[2])
            tokens = out.flatten(1, 2)
        else:  # tokens: class and register tokens first, then the patches
            count = int(getattr(model, "num_prefix_tokens", 0))
            prefix, tokens = out[:, :count], out[:, count:]
            grid = _patch_grid(model, tokens.shape[1])
    else:
        kwargs = {"return_prefix_tokens": True} if pooling == "cls" else {}
        (out,) = model.forward_intermediates(
            images, indices=[layer], intermediates_only=True, **kwargs
        )
        if pooling == "cls":
            out, prefix = out
        grid = (out.shape[2], out.shape[3])
        tokens = out.flatten(2).transpose(1, 2)  # NCHW -> (B, H*W, C)
    count = 0 if prefix is None else prefix.shape[1]
    if pooling == "cls":
        return prefix[:, :1], grid, count
    if pooling == "avg":
        return tokens.mean(dim=1, keepdim=True), grid, count
    return tokens, grid, count


def _patch_grid(model: nn.Module, tokens: int) -> tuple[int, int]:
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is not None and len(grid) == 2 and grid[0] * grid[1] == tokens:
        return int(grid[0]), int(grid[1])
    return tokens, 1  # a sequence without a known 2-D layout


@dataclass(frozen=True)
class TimmInfo:
    """What a timm encoder takes and emits; a spec's num_embeddings formula reads every field
    but ``data_config`` as ``encoder.<field>`` (``mmgen.spec.schema.TIMM_FORMULA_FIELDS``)."""

    tokens: int  # rows per image after feature_layer and pooling
    grid_height: int  # the feature map's rows and columns (a ViT's patch grid)
    grid_width: int
    prefix_tokens: int  # class and register tokens before a ViT's patch tokens
    width: int  # features per row
    image_height: int  # the input size the processor resizes and crops to
    image_width: int
    layers: int  # feature layers feature_layer can index (0: only -1)
    data_config: dict[str, Any] = field(compare=False)  # timm's resolve_model_data_config

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.data_config["input_size"])


def timm_info(
    model_name: str,
    options: dict[str, Any] | None = None,
    feature_layer: int = -1,
    pooling: str = "none",
) -> TimmInfo:
    """``TimmInfo`` of the encoder ``TimmEncoder`` builds from the same arguments."""
    return _info(model_name, json.dumps(options or {}, sort_keys=True), feature_layer, pooling)


def meta_model(model_name: str, options: dict[str, Any] | None = None) -> nn.Module:
    """The model on the meta device: its structure and shapes, no memory, no weights."""
    with torch.device("meta"):
        return create_model(model_name, options).eval()


@functools.lru_cache(maxsize=32)
def _info(model_name: str, options: str, feature_layer: int, pooling: str) -> TimmInfo:
    from timm.data import resolve_model_data_config

    model = meta_model(model_name, json.loads(options))
    check_feature_layer(model, model_name, feature_layer)
    check_pooling(model, model_name, pooling)
    data_config = dict(resolve_model_data_config(model))
    data_config["input_size"] = _input_size(model, data_config["input_size"])
    image = torch.empty(1, *data_config["input_size"], device="meta")
    with torch.no_grad():
        rows, grid, prefix = _features(model, image, feature_layer, pooling)
    return TimmInfo(
        tokens=rows.shape[1],
        grid_height=grid[0],
        grid_width=grid[1],
        prefix_tokens=prefix or int(getattr(model, "num_prefix_tokens", 0)),
        width=rows.shape[2],
        image_height=data_config["input_size"][1],
        image_width=data_config["input_size"][2],
        layers=feature_layers(model),
        data_config=data_config,
    )


def _input_size(model: nn.Module, default: tuple[int, ...]) -> tuple[int, int, int]:
    """The image size the model was built for: a ViT built with ``img_size`` (a test block's
    tiny model) keeps its pretrained config's size, which it would refuse."""
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if size is not None and not getattr(model, "dynamic_img_size", False):
        return (int(default[0]), int(size[0]), int(size[1]))
    return tuple(int(n) for n in default)


def timm_transform(info: TimmInfo):
    """timm's eval transform for the model: resize, center crop, to tensor, normalize."""
    from timm.data import create_transform

    return create_transform(**info.data_config, is_training=False)


def is_timm_name(source: str) -> bool:
    """Whether ``source`` (a ``pretrained`` value) names timm weights rather than a path."""
    path_like = "/" in source or source.startswith((".", "~", "package:"))
    return not path_like and not source.endswith(".safetensors")


def weights_file(source: str) -> Path:
    """The local ``.safetensors`` file ``source`` names (see the module docstring)."""
    path = Path(pretrained_path(source)).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_FILE
        if not path.is_file():
            raise MmgenError(f"{source}: no {WEIGHTS_FILE} in that folder")
        return path
    if path.is_file():
        if path.suffix != ".safetensors":
            raise MmgenError(f"{source}: timm weights are read from .safetensors files only")
        return path
    if not is_timm_name(source):
        raise MmgenError(f"{source}: no such file or folder")
    return _cached_weights(source)


def _cached_weights(name: str) -> Path:
    """The weights of timm's pretrained ``name`` in the local Hugging Face cache."""
    import_timm()
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    check_model_name(name)
    config = get_pretrained_cfg(name)
    repo = getattr(config, "hf_hub_id", None) if config is not None else None
    if not repo:
        raise MmgenError(f"timm has no Hugging Face weights for {name!r}; give a .safetensors file")
    found = try_to_load_from_cache(repo, WEIGHTS_FILE)
    if not isinstance(found, str):
        raise MmgenError(
            f"the weights of {name!r} are not in the local Hugging Face cache (nothing is"
            f" downloaded): `hf download {repo} {WEIGHTS_FILE}`, or give a local .safetensors file"
        )
    return Path(found)


def load_weights(model: nn.Module, source: str) -> None:
    """Load ``source``'s weights into ``model``: every parameter and buffer must be there, with
    its shape; only a classifier head (dropped by ``num_classes=0``) may be left over."""
    from safetensors.torch import load_file

    path = weights_file(source)
    state = load_file(str(path))
    own = model.state_dict()
    heads = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    state = {
        key: value
        for key, value in state.items()
        if key in own or not any(key.startswith(f"{head}.") for head in heads)
    }
    wrong = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in wrong[:3]]
        raise MmgenError(
            f"{path}: these weights do not fit the model: wrong shapes {shapes},"
            f" missing {missing[:3]}, unexpected {unexpected[:3]}"
            f" ({len(wrong)} / {len(missing)} / {len(unexpected)} in all)"
        )
    model.load_state_dict(state, strict=True)
