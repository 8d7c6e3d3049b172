"""From a validated spec to the values the modality templates read, and the choice of template
for each generated file. Everything that depends on the spec's kinds is decided here, in Python,
so each template stays a small, straight file.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

from mmgen.errors import SpecError, did_you_mean
from mmgen.spec.formula import FormulaError, parse, to_python
from mmgen.spec.formula_value import count_problem, value
from mmgen.spec.schema import TIMM_FORMULA_FIELDS, Spec

BUILTIN_ENCODERS = {
    "conv1d": "mmgen.nn.signal_encoders.Conv1dEncoder",
    "mlp": "mmgen.nn.signal_encoders.MLPEncoder",
    "timm": "mmgen.nn.timm_encoders.TimmEncoder",
}
# names the templates define or import themselves: an imported spec class must not shadow them
_TEMPLATE_NAMES = {
    "Any",
    "AutoModality",
    "AutoModalityLoader",
    "BaseModality",
    "BaseModalityConfig",
    "BaseModalityLoader",
    "BaseModalityProcessor",
    "LinearProjector",
    "MLPProjector",
    "SignalPreprocessor",
    "RawAudioLoader",
    "RawImageLoader",
    "TokenDownsample",
    "Path",
    "np",
    "torch",
    "math",
    "pytest",
    "Image",
    "io",
    "soundfile",
    "MODALITY_VALUE_KEY",
    "NUM_EMBEDDINGS_KEY",
    "DataError",
    "encoder_width",
    "load_encoder",
    "pad_items",
    "pretrained_path",
    "select_hidden_state",
    "temporal_pool",
    "save_tiny_model",
    "synthetic_value",
    "timm_info",
    "timm_transform",
}

# config fields a formula may read: in plain Python a str or bool field would count wrong, not fail
_NUMBERS = {"int", "int | None", "float"}


@dataclass(frozen=True)
class ConfigField:
    """One argument of the generated config's ``__init__``. ``default`` is a Python value; a
    dict default is written as ``None`` in the signature and filled in the body.
    """

    name: str
    annotation: str
    default: Any
    doc: str

    @property
    def mutable(self) -> bool:
        return isinstance(self.default, (dict, list))


@dataclass(frozen=True)
class Imported:
    module: str
    name: str

    @classmethod
    def of(cls, dotted: str) -> Imported:
        module, _, name = dotted.rpartition(".")
        return cls(module, name)


def config_fields(spec: Spec) -> list[ConfigField]:
    enc, proc = spec.encoder, spec.processor
    fields = [
        ConfigField("hidden_size", "int", spec.config.hidden_size, "width of the LLM embeddings"),
        ConfigField("max_batch_size", "int", spec.config.max_batch_size, "items per encoder call"),
    ]
    if enc.kind == "timm":
        fields += [
            ConfigField("timm_model", "str", enc.model, "timm model name (and pretrained tag)"),
            ConfigField(
                "encoder_weights",
                "str | None",
                enc.pretrained,
                "local weights: a .safetensors file or folder, or a cached timm name",
            ),
            ConfigField(
                "encoder_options",
                "dict[str, Any] | None",
                dict(enc.options),
                "timm.create_model keyword arguments, over the spec's",
            ),
            ConfigField(
                "feature_layer",
                "int",
                enc.feature_layer,
                "features taken (-1: the final ones, else a block, negative from the end)",
            ),
            ConfigField("pooling", "str", enc.pooling, "none (patch tokens), cls or avg"),
        ]
    elif enc.kind == "transformers":
        fields.append(ConfigField("encoder_name_or_path", "str", enc.pretrained, "encoder weights"))
        fields.append(
            ConfigField(
                "hidden_state",
                "int | None",
                enc.hidden_state,
                "encoder layer to take (None: the last hidden state)",
            )
        )
    else:
        fields.append(
            ConfigField(
                "encoder_options",
                "dict[str, Any] | None",
                dict(enc.options),
                "encoder keyword arguments, over the spec's",
            )
        )
    if proc.kind == "transformers":
        fields.append(
            ConfigField("processor_name_or_path", "str", proc.pretrained, "processor files")
        )
    elif proc.kind == "numeric":
        fields += [
            ConfigField("sampling_rate", "int | None", proc.sampling_rate, "resample to (Hz)"),
            ConfigField("length", "int | None", proc.length, "crop or pad to (samples)"),
            ConfigField("normalize", "str", proc.normalize, "zscore, minmax or none"),
            ConfigField("channels", "int", proc.channels, "signal channels"),
        ]
    fields += [
        ConfigField("downsample_mode", "str", enc.downsample.mode, "avg or concat"),
        ConfigField("downsample_factor", "int", enc.downsample.factor, "tokens merged into one"),
    ]
    if spec.length is not None:
        fields.append(
            ConfigField(
                "max_windows",
                "int",
                spec.length.max_windows,
                "encoder windows kept per item (a longer input is cut)",
            )
        )
    if enc.frames is not None:
        fields.append(
            ConfigField(
                "temporal_pool", "int", enc.frames.temporal_pool, "frames averaged into one"
            )
        )
    if spec.projector.kind == "mlp":
        fields += [
            ConfigField("projector_layers", "int", spec.projector.layers, "linear layers"),
            ConfigField(
                "projector_activation", "str", spec.projector.activation, "activation between them"
            ),
        ]
    fields += [
        ConfigField("train_encoder", "bool", spec.trainable.encoder, "whether the encoder trains"),
        ConfigField(
            "train_projector", "bool", spec.trainable.projector, "whether the projector trains"
        ),
        ConfigField("loader", "str", spec.loader_name, "loader registry name"),
        ConfigField("placeholder", "str", spec.placeholder_token, "placeholder in the text"),
    ]
    return fields


def num_embeddings_code(spec: Spec, fields: list[ConfigField]) -> dict[str, Any]:
    """How the generated processor counts embeddings: a fixed number, or the spec's checked
    formula written as a Python expression over the processor's own values (``to_python``).
    """
    numeric, timm = spec.processor.kind == "numeric", spec.encoder.kind == "timm"
    if isinstance(spec.num_embeddings, int):
        fixed = {"fixed": spec.num_embeddings, "formula": None, "expression": None}
        return {
            **fixed, "whole": True, "uses_math": False, "reads_encoder_config": False,
            "uses_shape": False, "numeric": numeric, "timm": timm,
        }  # fmt: skip
    formula = parse(spec.num_embeddings)
    hf = spec.encoder.kind == "transformers"
    processor = f"self.{processor_attribute(spec.processor.class_ or '')}"
    # the encoder's fields: its transformers config, a timm encoder's TimmInfo, or the options
    encoder = "self.encoder_config" if hf else "self.config.encoder_options"
    expression = to_python(
        formula,
        shape="value.shape",
        encoder="self.encoder_info" if timm else encoder,
        config="self.config",
        processor=processor,
        length="length",
        keyed=() if hf or timm else ("encoder",),
    )
    window = None
    if spec.length is not None:
        window = spec.length.window
        window = (
            str(window)
            if isinstance(window, int)
            else to_python(window, encoder=encoder, config="self.config", processor=processor)
        )
    top = formula.tree.body
    # ceil, floor, int and one-argument round always give an int: no whole-number check needed
    whole = isinstance(top, ast.Call) and (
        top.func.id in ("ceil", "floor", "int") or (top.func.id == "round" and len(top.args) == 1)
    )
    return {
        "fixed": None,
        "formula": formula.source,
        "expression": expression,
        "whole": whole,
        "uses_math": bool(formula.functions & {"ceil", "floor"}),
        "reads_encoder_config": hf and bool(formula.encoder_fields | _window_encoder_fields(spec)),
        "window": window,  # one encoder window's length (a spec with a `length` block)
        "uses_shape": formula.uses_shape,  # the count follows the processed value's shape
        "numeric": numeric,  # whose output shape the config fixes
        "timm": timm,  # whose input size the model fixes
    }


def _window_encoder_fields(spec: Spec) -> frozenset[str]:
    window = spec.length.window if spec.length is not None else None
    return parse(window).encoder_fields if isinstance(window, str) else frozenset()


def processor_attribute(class_name: str) -> str:
    """What the generated processor calls its transformers processor, as transformers'
    ``ProcessorMixin`` does (mmgen's data pipeline reads e.g. ``feature_extractor.sampling_rate``).
    """
    for suffix, attribute in (
        ("FeatureExtractor", "feature_extractor"),
        ("ImageProcessor", "image_processor"),
        ("ImageProcessorPil", "image_processor"),
        ("Tokenizer", "tokenizer"),
        ("TokenizerFast", "tokenizer"),
    ):
        if class_name.endswith(suffix):
            return attribute
    return "processor"


def modality_templates(spec: Spec) -> dict[str, str]:
    """Generated file name (inside the modality package) -> template."""
    files = {
        "__init__.py": "modality/__init__.py.jinja",
        "config.py": "modality/config.py.jinja",
        "processor.py": f"modality/processor_{spec.processor.kind}.py.jinja",
        "modality.py": f"modality/modality_{_modality_variant(spec)}.py.jinja",
    }
    if spec.loader.decode is not None:
        files["loader.py"] = f"loader/{spec.loader.decode}.py.jinja"
    return files


def _modality_variant(spec: Spec) -> str:
    if spec.encoder.kind == "timm":
        return "timm"
    if spec.encoder.kind != "transformers":
        return "module"
    if spec.encoder.frames is not None:
        return "frames"
    return "sequence" if spec.encoder.variable_length else "pretrained"


def context_errors(spec: Spec) -> list[SpecError]:
    """Every problem that stops the spec's code from being generated: formula fields the
    generated config or the encoder options lack (or that are not numbers), and class names
    that clash with generated ones."""
    errors = []
    fields = {f.name: f for f in config_fields(spec)}
    if isinstance(spec.num_embeddings, str):
        formula = parse(spec.num_embeddings)
        if formula.processor_fields and spec.processor.kind != "transformers":
            message = "processor.<field> reads a transformers processor; this one is not"
            errors.append(spec.error(("num_embeddings",), message))
        for name in sorted(formula.config_fields):
            if name not in fields:
                hint = did_you_mean(name, fields, listing=True)
                message = f"config.{name} is not a field of the generated config{hint}"
                errors.append(spec.error(("num_embeddings",), message))
            elif fields[name].annotation not in _NUMBERS:
                message = f"config.{name} is a {fields[name].annotation} field, not a number"
                errors.append(spec.error(("num_embeddings",), message))
        if spec.encoder.kind == "timm":
            for name in sorted(formula.encoder_fields - set(TIMM_FORMULA_FIELDS)):
                hint = did_you_mean(name, TIMM_FORMULA_FIELDS, listing=True)
                message = f"encoder.{name} is not a field of a timm encoder{hint}"
                errors.append(spec.error(("num_embeddings",), message))
        elif spec.encoder.kind != "transformers":
            options = spec.encoder.options
            for name in sorted(formula.encoder_fields):
                value = options.get(name)
                if name not in options:
                    hint = did_you_mean(name, options)
                    message = f"encoder.{name} is not in encoder.options{hint}"
                elif isinstance(value, bool) or not isinstance(value, (int, float)):
                    message = f"encoder.{name} is {value!r} in encoder.options, not a number"
                else:
                    continue
                errors.append(spec.error(("num_embeddings",), message))
        if not errors:
            # module encoders' fields are their options (the test's over the spec's); the
            # references check the other kinds' with the encoder built from the test block
            plain = spec.encoder.kind not in ("transformers", "timm")
            tiny = {**spec.encoder.options, **(spec.test.encoder or {})} if plain else {}
            errors += count_errors(spec, tiny)
    errors += non_finite_errors(spec)
    names = spec.names
    encoder, processor = _imported_classes(spec)
    generated = {names.loader_class, names.config_class, names.processor_class}
    generated |= {names.modality_class}
    for where, imported in ((("encoder", "class"), encoder), (("processor", "class"), processor)):
        if imported is not None and imported.name in generated | _TEMPLATE_NAMES:
            message = f"class name {imported.name!r} clashes with a generated name"
            errors.append(spec.error(where, message))
    if processor is not None and processor.name == encoder.name:
        message = "encoder and processor classes share a name"
        errors.append(spec.error(("processor", "class"), message))
    return errors


def count_errors(
    spec: Spec, encoder: dict[str, Any], shape: tuple[int, ...] | None = None
) -> list[SpecError]:
    """The formula's count for the generated test's config and ``encoder`` fields: a count that
    is no positive whole number there (``-5``, ``1e400``, nan) is refused now, not at run time.
    A formula reading what is only known per item (``shape``, unless given) or not given is
    not computed."""
    if not isinstance(spec.num_embeddings, str):
        return []
    config = {f.name: f.default for f in config_fields(spec)}
    config.update(hidden_size=spec.test.hidden_size, max_batch_size=4)  # as the test sets them
    try:
        count = value(spec.num_embeddings, encoder=encoder, config=config, shape=shape)
    except FormulaError as exc:
        return [spec.error(("num_embeddings",), f"for the test config {exc}")]
    problem = count_problem(count) if count is not None else None
    return [spec.error(("num_embeddings",), f"for the test config it {problem}")] if problem else []


def non_finite_errors(spec: Spec) -> list[SpecError]:
    """inf and nan in the spec's free-form values: no Python literal writes them."""
    blocks = {
        ("encoder", "options"): spec.encoder.options,
        ("processor", "options"): spec.processor.options,
        ("loader", "options"): spec.loader.options,
        ("test", "encoder"): spec.test.encoder or {},
        ("test", "processor"): spec.test.processor or {},
        ("test", "sample", "options"): spec.test.sample.options,
    }
    errors = []
    for where, block in blocks.items():
        for key, held in block.items():
            items = held if isinstance(held, (list, dict)) else [held]
            for item in items.values() if isinstance(items, dict) else items:
                if isinstance(item, float) and not math.isfinite(item):
                    message = f"{item} is not a finite number"
                    errors.append(spec.error((*where, key), message))
                    break
    return errors


def _imported_classes(spec: Spec) -> tuple[Imported, Imported | None]:
    encoder = Imported.of(BUILTIN_ENCODERS.get(spec.encoder.kind, spec.encoder.class_))
    processor = Imported.of(spec.processor.class_) if spec.processor.class_ else None
    return encoder, processor


def build_context(spec: Spec, *, package: str, spec_label: str) -> dict[str, Any]:
    """Everything the modality templates read. ``package`` is the import path of the generated
    modality package (``demo.modalities.audio``, or ``audio`` for ``--out``).
    """
    errors = context_errors(spec)
    if errors:
        more = f" (and {len(errors) - 1} more; see `mmgen validate`)" if len(errors) > 1 else ""
        raise SpecError(f"{errors[0]}{more}")
    names = spec.names
    fields = config_fields(spec)
    count = num_embeddings_code(spec, fields)
    encoder, processor = _imported_classes(spec)
    return {
        "header": f"# Generated by `mmgen new-modality` from spec {spec_label}; edit freely.",
        "spec": spec,
        "names": names,
        "package": package,
        "description": spec.description,
        "fields": fields,
        "encoder": encoder,
        "processor": processor,
        "count": count,
        "reads_encoder_config": count["reads_encoder_config"],
        "spec_loader_name": spec.loader_name,
        "loader_options": dict(spec.loader.options),
        "processor_attribute": processor_attribute(processor.name) if processor else None,
        "variable_length": spec.encoder.variable_length,
        "frames": spec.encoder.frames is not None,
        "test": spec.test,
        "pretrained": spec.encoder.kind == "transformers",
        "tiny_processor": spec.processor.kind == "transformers" and spec.test.processor is not None,
    }
