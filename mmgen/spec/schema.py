"""The YAML modality spec's schema (pydantic). A spec is data: no field is ever executed
(formulas go through :mod:`mmgen.spec.formula`); files are read, with ``file:line: field: message``
errors, by :mod:`mmgen.spec.loading`.

A minimal spec (every block is documented on its model below; the built-ins in ``specs/`` are
complete examples)::

    name: audio
    description: Speech through a Whisper encoder
    loader: {name: raw-audio}
    processor: {class: transformers.WhisperFeatureExtractor, pretrained: openai/whisper-tiny,
                output: input_features, options: {sampling_rate: 16000}}
    encoder: {class: transformers.WhisperModel, pretrained: openai/whisper-tiny,
              submodule: encoder, input: input_features}
    num_embeddings: encoder.max_source_positions
    test: {encoder: {d_model: 32, ...}, processor: {...}, sample: {kind: tone}}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic import StringConstraints as S

from mmgen.errors import MmgenError, SpecError, did_you_mean
from mmgen.spec.formula import FormulaError, parse
from mmgen.spec.names import Names, check_name
from mmgen.yamlfile import field_error, where

Identifier = Annotated[str, S(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=60)]
DottedPath = Annotated[str, S(pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")]
AttributePath = Annotated[str, S(pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")]
RegistryName = Annotated[str, S(pattern=r"^[a-z][a-z0-9]*([_.-][a-z0-9]+)*$", max_length=60)]
OneLine = Annotated[str, S(pattern=r"^[^\n\r]*$", min_length=1, max_length=200)]
Scalar = bool | int | float | str
JSONValue = Scalar | list[Scalar] | dict[str, Scalar] | None
ValueKind = Literal["bytes", "path", "array"]
Count = Annotated[int, Field(strict=True, gt=0, le=2**31 - 1)]  # not `true`; fits a sequence
# what a kind: timm encoder tells a num_embeddings formula (encoder.<field>): rows per image,
# the token grid, class/register tokens, row width, input size, feature layers
# (mmgen.nn.timm_encoders.TimmInfo computes them from the model)
TIMM_FORMULA_FIELDS = (
    "tokens",
    "grid_height",
    "grid_width",
    "prefix_tokens",
    "width",
    "image_height",
    "image_width",
    "layers",
)
# a timm model name, optionally with its pretrained tag (vit_base_patch16_224.augreg_in21k)
TimmName = Annotated[str, S(pattern=r"^[a-z0-9][a-z0-9_]*(\.[a-z0-9_]+)?$", max_length=120)]


class Strict(BaseModel):
    """Unknown keys are errors (the loader adds a "did you mean" hint)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class LoaderSpec(Strict):
    """Which loader turns a dataset entry's ``value`` into a raw modality.

    Omit ``decode`` to reuse a registered loader (mmgen's ``raw-audio``, ``raw-image``); set it
    to generate one, registered under ``name``, that accepts the ``value`` kinds listed, with
    ``options`` as the defaults of its keyword arguments (see LOADER_OPTIONS).
    """

    name: RegistryName | None = None  # default "raw-<spec name>"
    decode: Literal["audio", "image", "video", "text", "array"] | None = None
    value: list[ValueKind] = Field(default_factory=lambda: ["bytes", "path", "array"], min_length=1)
    options: dict[Identifier, Scalar] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _options(self) -> LoaderSpec:
        if self.decode is None:
            _forbid(self, {"options", "value"}, "without `decode` (a registered loader is reused)")
        allowed = LOADER_OPTIONS.get(self.decode or "", {})
        for key, value in self.options.items():
            if key not in allowed:
                hint = did_you_mean(key, allowed, listing=True)
                raise field_error(
                    "options", f"unknown option {key!r} for decode {self.decode!r}{hint}"
                )
            if not isinstance(value, allowed[key]) or isinstance(value, bool):
                kind = "an integer" if allowed[key] is int else "a string"
                raise field_error("options", f"{key} must be {kind}")
        return self


# the keyword arguments each generated loader takes (their spec values become its defaults)
LOADER_OPTIONS: dict[str, dict[str, type]] = {
    "audio": {"sampling_rate": int},
    "image": {"mode": str},
    "video": {"num_frames": int},
    "text": {"encoding": str},
    "array": {"dtype": str},
}


class ProcessorSpec(Strict):
    """``kind: transformers``: a processor class with ``from_pretrained`` (feature extractor, image
    processor, tokenizer) called on the raw modality with ``options``; ``output`` is the key of
    the tensor to keep. ``kind: numeric``: built-in signal preprocessing (resample to
    ``sampling_rate``, ``normalize``, crop/pad to ``length``, ``channels``). ``kind: timm``: the
    timm encoder's own eval transform (input size, resize and crop, mean and std from timm's
    ``resolve_model_data_config``); it takes no other keys.
    """

    kind: Literal["transformers", "numeric", "timm"] = "transformers"
    class_: DottedPath | None = Field(None, alias="class")
    pretrained: str | None = Field(None, min_length=1, max_length=300)
    output: Identifier = "pixel_values"
    options: dict[Identifier, Scalar] = Field(default_factory=dict)
    sampling_rate: int | None = Field(None, gt=0)
    length: int | None = Field(None, gt=0)
    normalize: Literal["zscore", "minmax", "none"] = "zscore"
    channels: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _kind_fields(self) -> ProcessorSpec:
        numeric = {"sampling_rate", "length", "normalize", "channels"}
        if self.kind == "transformers":
            _require(self, "class_", "pretrained")
            _forbid(self, numeric)
        else:
            _forbid(self, {"class_", "pretrained", "output", "options"})
        if self.kind == "timm":
            _forbid(self, numeric)
        return self


class DownsampleSpec(Strict):
    """Token downsampling after the encoder: ``avg`` pooling or strided ``concat`` by ``factor``."""

    mode: Literal["avg", "concat"] = "avg"
    factor: int = Field(1, ge=1, le=64)


class FramesSpec(Strict):
    """Each item is a stack of frames encoded one by one, then averaged over ``temporal_pool``
    consecutive frames.
    """

    temporal_pool: int = Field(1, ge=1, le=64)


class EncoderSpec(Strict):
    """``kind: transformers``: ``class`` (dotted path) + ``pretrained`` name/path, optionally a
    ``submodule`` of it, called with the processed batch as keyword ``input``; ``hidden_state``
    picks a layer (default: last), ``drop_cls`` removes the first token. ``variable_length``: items
    differ in length (padded, with an attention mask); ``frames``: video-like stacks.
    ``kind: module``: any ``torch.nn.Module`` by dotted path, built with ``options``.
    ``kind: conv1d`` / ``mlp``: mmgen's built-in signal encoders, built with ``options``.
    ``kind: timm``: the timm image ``model`` (a name, optionally with its pretrained tag), built
    with ``options`` (``timm.create_model`` keywords); ``pretrained`` names local weights (a
    ``.safetensors`` file or a folder holding ``model.safetensors``, or a timm name whose weights
    are in the local Hugging Face cache; omitted: random init); ``feature_layer`` picks the
    features (-1: the final ones, else a block by index, negative from the end) and ``pooling``
    the rows kept (``none``: the patch tokens, ``cls``: the class token, ``avg``: their mean).
    """

    kind: Literal["transformers", "module", "conv1d", "mlp", "timm"] = "transformers"
    class_: DottedPath | None = Field(None, alias="class")
    pretrained: str | None = Field(None, min_length=1, max_length=300)
    submodule: AttributePath | None = None
    input: Identifier = "pixel_values"
    options: dict[Identifier, JSONValue] = Field(default_factory=dict)
    hidden_state: int | None = None
    drop_cls: bool = False
    variable_length: bool = False
    frames: FramesSpec | None = None
    downsample: DownsampleSpec = Field(default_factory=DownsampleSpec)
    model: TimmName | None = None
    feature_layer: int = -1
    pooling: Literal["none", "cls", "avg"] = "none"

    @model_validator(mode="after")
    def _kind_fields(self) -> EncoderSpec:
        hf_only = {"pretrained", "submodule", "input", "hidden_state", "drop_cls"}
        hf_only |= {"variable_length", "frames"}
        timm_only = {"model", "feature_layer", "pooling"}
        if self.kind == "transformers":
            _require(self, "class_", "pretrained")
            _forbid(self, {"options"} | timm_only)
        elif self.kind == "module":
            _require(self, "class_")
            _forbid(self, hf_only | timm_only)
        elif self.kind == "timm":
            _require(self, "model")
            _forbid(self, (hf_only - {"pretrained"}) | {"class_"})
        else:
            _forbid(self, hf_only | timm_only | {"class_"})
        if self.frames is not None and self.variable_length:
            raise field_error("frames", "choose one of `frames` and `variable_length`")
        return self


class LengthSpec(Strict):
    """The item's number of embeddings follows its real length (Qwen2-Audio, Ultravox): the
    input is split into consecutive encoder windows of ``window`` (a number or a formula over
    ``processor.``/``encoder.``/``config.`` fields, in ``unit``), at most ``max_windows`` of
    them (the rest is cut; the generated config's ``max_windows``); the encoder sees each window
    padded as it requires, and the modality keeps only the positions that cover real input.
    ``num_embeddings`` is then a formula over ``length``, the real length inside one window; an
    item's count is its sum over the windows, known from the loader's ``measure`` (a file
    header) before anything is decoded. ``unit: samples``: an audio waveform's samples at the
    processor's rate, for a transformers feature extractor with an attention mask (Whisper's).
    """

    unit: Literal["samples"] = "samples"
    window: Annotated[int, Field(gt=0)] | Annotated[str, S(min_length=1, max_length=200)]
    max_windows: int = Field(4, ge=1, le=1000)

    @model_validator(mode="after")
    def _window(self) -> LengthSpec:
        if isinstance(self.window, str):
            try:
                formula = parse(self.window)
            except FormulaError as exc:
                raise field_error("window", str(exc)) from None
            if formula.uses_length or formula.uses_shape:
                raise field_error("window", "a window cannot depend on the item (length, shape)")
        return self


class BoundarySpec(Strict):
    """Tokens around every item's span (``<audio_start>`` … ``<audio_end>``, as Qwen2-VL and
    LLaVA-style models use): added to the tokenizer, with embeddings that train with the
    projector. Either may be omitted.
    """

    start: OneLine | None = None
    end: OneLine | None = None


class ProjectorSpec(Strict):
    """Projector into the LLM's hidden size: ``linear`` or ``mlp`` (``layers``, ``activation``)."""

    kind: Literal["linear", "mlp"] = "mlp"
    layers: int = Field(2, ge=1, le=8)
    activation: Identifier = "gelu"


class ConfigDefaults(Strict):
    """Defaults of the generated config."""

    hidden_size: int = Field(4096, gt=0)
    max_batch_size: int = Field(32, gt=0)


class TrainableSpec(Strict):
    """Which parts train by default (a training stage may override this)."""

    encoder: bool = False
    projector: bool = True


class SampleSpec(Strict):
    """A synthetic sample generator from :mod:`mmgen.testing.samples` and its options."""

    kind: Literal["tone", "image", "video", "text", "signal"]
    options: dict[Identifier, Scalar] = Field(default_factory=dict)


class TestSpec(Strict):
    """What the generated test needs to run offline: a tiny ``encoder`` config (the encoder
    class's config keyword arguments, or ``options`` for module encoders; omit to load
    ``pretrained`` itself, which must then be local), a tiny ``processor`` (keyword arguments of
    the processor class; omit to load ``pretrained``), a ``sample`` generator, and the
    ``hidden_size`` of the test's projector.
    """

    __test__ = False  # not a pytest class

    encoder: dict[Identifier, JSONValue] | None = None
    processor: dict[Identifier, JSONValue] | None = None
    sample: SampleSpec
    hidden_size: int = Field(32, gt=0, le=4096)


class Spec(Strict):
    """A modality spec. ``num_embeddings`` is a whole number or a formula (``spec/formula.py``)."""

    name: str
    description: OneLine
    placeholder: OneLine | None = None
    loader: LoaderSpec = Field(default_factory=LoaderSpec)
    processor: ProcessorSpec
    encoder: EncoderSpec
    num_embeddings: Count | Annotated[str, S(min_length=1, max_length=200)]
    length: LengthSpec | None = None
    boundary: BoundarySpec | None = None
    projector: ProjectorSpec = Field(default_factory=ProjectorSpec)
    config: ConfigDefaults = Field(default_factory=ConfigDefaults)
    trainable: TrainableSpec = Field(default_factory=TrainableSpec)
    test: TestSpec

    _source: str = PrivateAttr("<spec>")
    _lines: dict[tuple, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _checks(self) -> Spec:
        try:
            check_name(self.name)
        except MmgenError as exc:
            raise field_error("name", str(exc)) from None
        formula = None
        if isinstance(self.num_embeddings, str):
            try:
                formula = parse(self.num_embeddings)
            except FormulaError as exc:
                raise field_error("num_embeddings", str(exc)) from None
        if self.length is not None:
            self._check_length(formula)
        elif formula is not None and formula.uses_length:
            raise field_error(
                "num_embeddings", "`length` needs a `length` block (its unit and window)"
            )
        if self.boundary is not None:
            tokens = [t for t in (self.boundary.start, self.boundary.end) if t is not None]
            if self.placeholder_token in tokens or len(set(tokens)) < len(tokens):
                message = "boundary tokens must differ from each other and from the placeholder"
                raise field_error("boundary", message)
        if self.encoder.kind != "transformers" and self.test.encoder is None:
            raise ValueError("test: `encoder` (the options of a tiny encoder) is required here")
        if (self.encoder.kind == "timm") != (self.processor.kind == "timm"):
            raise field_error(
                "processor",
                "an encoder of kind 'timm' takes a processor of kind 'timm' (its input size and"
                " normalization come from the model), and only it does",
            )
        return self

    def _check_length(self, formula) -> None:
        if formula is None or not formula.uses_length:
            raise field_error(
                "num_embeddings",
                "with a `length` block, a formula over `length` (one window's"
                " real input), e.g. ceil(length / processor.hop_length / 2)",
            )
        if formula.uses_shape:
            raise field_error("num_embeddings", "use `length`, not shape[i], with a `length` block")
        supported = (
            self.processor.kind == "transformers"
            and self.encoder.kind == "transformers"
            and self.encoder.frames is None
            and not self.encoder.variable_length
        )
        if not supported:
            raise field_error(
                "length",
                "needs a transformers processor and a fixed-window transformers encoder"
                " (no `frames`, no `variable_length`)",
            )

    @property
    def names(self) -> Names:
        return Names.of(self.name)

    @property
    def source(self) -> str:
        return self._source

    @property
    def loader_name(self) -> str:
        return self.loader.name or f"raw-{self.names.kebab}"

    @property
    def placeholder_token(self) -> str:
        return self.placeholder or f"<{self.names.snake}>"

    def error(self, loc: tuple, message: str) -> SpecError:
        """A SpecError pointing at ``loc`` (e.g. ``("num_embeddings",)``) in the spec file."""
        return SpecError(f"{where(self._source, self._lines, loc)}: {message}")


def _require(model: BaseModel, *fields: str) -> None:
    for field in fields:
        if getattr(model, field) is None:
            kind = getattr(model, "kind", "")
            raise field_error(_alias(model, field), f"required for kind {kind!r}")


def _forbid(model: BaseModel, fields: set[str], when: str = "") -> None:
    for field in sorted(fields & model.model_fields_set):
        kind = getattr(model, "kind", "")
        raise field_error(_alias(model, field), f"not used {when or f'with kind {kind!r}'}")


def _alias(model: BaseModel, field: str) -> str:
    return type(model).model_fields[field].alias or field
