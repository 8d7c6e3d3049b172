"""What a spec names outside itself: transformers classes, the projector's activation, the
encoder-config fields a ``num_embeddings`` formula reads or the test block's tiny encoder sets,
the transformers model types the modality's own name must not take over, and a timm encoder's
model, options, feature layer and pooling.

The schema cannot see these, and a typo in one generates code that fails only when it is
imported or run. ``mmgen validate`` and ``mmgen new-modality`` check them here. Only transformers
and timm are looked at: transformers' lazy module lists its classes without importing them (an
encoder's config class is built with its defaults to read its fields); a timm model is built on
the meta device, without weights or memory. Modules of the user's own (``kind: module``) are
never imported, since a spec must not make mmgen run code.
"""

from __future__ import annotations

import functools
from typing import Any

from mmgen.codegen.context import count_errors
from mmgen.errors import SpecError, did_you_mean
from mmgen.spec.formula import parse
from mmgen.spec.schema import TIMM_FORMULA_FIELDS, Spec

# names of classes and fields: suggest only close matches
_hint = functools.partial(did_you_mean, cutoff=0.7)


def reference_errors(spec: Spec) -> list[SpecError]:
    """Every problem found, in spec order (empty: everything the spec names exists)."""
    from mmgen.modality.registry import is_transformers_model_type

    errors: list[SpecError] = []
    if is_transformers_model_type(spec.names.snake):
        message = (
            f"modality name {spec.names.snake!r} is a transformers model type: registering it"
            " would replace transformers' own config of that name; choose another name"
        )
        errors.append(spec.error(("name",), message))
    classes: dict[str, Any] = {}
    for block in ("processor", "encoder"):
        dotted = getattr(spec, block).class_
        module, _, name = (dotted or "").rpartition(".")
        if dotted and module != "transformers":
            problem = _foreign_class_problem(module, name)
            if problem:
                errors.append(spec.error((block, "class"), problem))
            continue
        if module != "transformers":
            continue
        if name not in _transformers_names():
            message = f"transformers has no class {name!r}{_hint(name, _transformers_names())}"
            errors.append(spec.error((block, "class"), message))
        elif block == "encoder" and not _is_model_class(name):
            message = f"transformers.{name} is not a model class (a PreTrainedModel)"
            errors.append(spec.error((block, "class"), message))
        else:
            classes[block] = name
    if spec.projector.kind == "mlp":
        from transformers.activations import ACT2FN

        activation = spec.projector.activation
        if activation not in ACT2FN:
            message = f"unknown activation {activation!r}{_hint(activation, ACT2FN)}"
            errors.append(spec.error(("projector", "activation"), message))
    if "encoder" in classes:
        errors += _encoder_config_errors(spec, classes["encoder"])
    if "processor" in classes:
        errors += _processor_field_errors(spec, classes["processor"])
    if spec.encoder.kind == "timm":
        errors += _timm_errors(spec)
    return sorted(errors, key=error_line)


def _foreign_class_problem(module: str, name: str) -> str | None:
    """Why ``module.name`` (never imported: the module may be the user's) cannot be a class
    the generated code builds, or None: a standard-library module holds no model, and a class
    is named in CamelCase (``os.system`` is a function)."""
    import sys

    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return f"{module}.{name} is in Python's standard library, not a model or processor class"
    if not name[0].isupper():
        return f"{name!r} is not a class name (a class is CamelCase, e.g. {name.title()!r})"
    return None


def _is_model_class(name: str) -> bool:
    import transformers

    try:
        found = getattr(transformers, name)
    except Exception:  # a class whose backend is missing: its import error is the user's
        return True
    if name.startswith("AutoModel"):  # picks the model class from the checkpoint's config
        return True
    return isinstance(found, type) and issubclass(found, transformers.PreTrainedModel)


def check_references(spec: Spec) -> None:
    """Raise the first of ``reference_errors`` (with a count of the others)."""
    errors = reference_errors(spec)
    if errors:
        more = len(errors) - 1
        raise SpecError(
            str(errors[0]) + (f" (and {more} more; see `mmgen validate`)" if more else "")
        )


def _encoder_config_errors(spec: Spec, encoder_class: str) -> list[SpecError]:
    """Fields of the encoder's config that the formula reads (``encoder.image_size``) and that
    the test block's tiny encoder sets: a misspelt one would be kept silently by transformers
    (the generated test would then build a full-size encoder)."""
    located = [(loc, field) for loc, f in _formulas(spec) for field in sorted(f.encoder_fields)]
    fields = [field for _, field in located]
    tiny = spec.test.encoder or {}
    if not fields and not tiny:
        return []
    import transformers

    config_class = getattr(getattr(transformers, encoder_class), "config_class", None)
    try:
        defaults = config_class()
    except Exception:  # an Auto class, or a config that needs arguments: nothing to compare with
        return []
    known = [k for k in vars(defaults) if not k.startswith("_")]
    known += list(getattr(defaults, "attribute_map", {}))
    name = config_class.__name__
    errors = [
        spec.error(loc, f"encoder.{field} is not a field of {name}{_hint(field, known)}")
        for loc, field in located
        if not hasattr(defaults, field)
    ]
    errors += [
        spec.error(("test", "encoder", key), f"not a field of {name}{_hint(key, known)}")
        for key in tiny
        if not hasattr(defaults, key)
    ]
    if fields and not errors:
        try:  # the test's tiny encoder, whose fields the generated test's count reads
            built = config_class(**tiny)
        except Exception:  # a field the config refuses: the generated test fails on it itself
            return errors
        errors += count_errors(spec, {f: getattr(built, f) for f in fields})
    return errors


def _formulas(spec: Spec) -> list[tuple[tuple, Any]]:
    """The spec's checked formulas with where they are: num_embeddings, the length window."""
    found = []
    if isinstance(spec.num_embeddings, str):
        found.append((("num_embeddings",), parse(spec.num_embeddings)))
    if spec.length is not None and isinstance(spec.length.window, str):
        found.append((("length", "window"), parse(spec.length.window)))
    return found


def _processor_field_errors(spec: Spec, processor_class: str) -> list[SpecError]:
    """``processor.<field>`` in a formula must be a number on the processor the generated test
    builds (the test block's tiny one, else the class's defaults)."""
    wanted = [(loc, field) for loc, f in _formulas(spec) for field in sorted(f.processor_fields)]
    if not wanted:
        return []
    import transformers

    try:
        processor = getattr(transformers, processor_class)(**(spec.test.processor or {}))
    except Exception:  # needs files or arguments: checked when the generated test runs
        return []
    known = [k for k in vars(processor) if not k.startswith("_")]
    errors = []
    for loc, field in wanted:
        value = getattr(processor, field, None)
        if not hasattr(processor, field):
            message = f"processor.{field} is not a field of {processor_class}{_hint(field, known)}"
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            message = f"processor.{field} is {value!r} on {processor_class}, not a number"
        else:
            continue
        errors.append(spec.error(loc, message))
    return errors


def _timm_errors(spec: Spec) -> list[SpecError]:
    """The timm model exists (with its pretrained tag, and ``pretrained`` when it is a timm
    name), takes the options and the test block's tiny options, and has the feature layer and
    the class token the spec asks for: each checked on the model built on the meta device."""
    from mmgen.errors import MmgenError
    from mmgen.nn import timm_encoders

    encoder = spec.encoder
    try:
        timm_encoders.check_model_name(encoder.model)
    except MmgenError as exc:  # not installed, or no such model: nothing else can be checked
        return [spec.error(("encoder", "model"), str(exc))]
    errors = []
    if encoder.pretrained and timm_encoders.is_timm_name(encoder.pretrained):
        try:  # a timm name (a path is only checked where the run is)
            timm_encoders.check_model_name(encoder.pretrained)
        except MmgenError as exc:
            errors.append(spec.error(("encoder", "pretrained"), str(exc)))
    tiny = {**encoder.options, **(spec.test.encoder or {})}
    seen: set[str] = set()
    for where, options in ((("encoder", "options"), encoder.options), (("test", "encoder"), tiny)):
        note = " (the test block's tiny model)" if where[0] == "test" else ""
        try:
            model = timm_encoders.meta_model(encoder.model, options)
        except MmgenError as exc:
            errors.append(spec.error(where, str(exc)))
            continue
        checks = (
            ("feature_layer", timm_encoders.check_feature_layer, encoder.feature_layer),
            ("pooling", timm_encoders.check_pooling, encoder.pooling),
        )
        fits = True
        for loc, check, value in checks:
            try:
                check(model, encoder.model, value)
            except MmgenError as exc:
                fits = False
                if loc not in seen:  # the tiny model repeats the full one's problem
                    seen.add(loc)
                    errors.append(spec.error(("encoder", loc), f"{exc}{note}"))
        if fits:
            try:  # a forward pass on a meta image: sizes that do not fit each other
                info = timm_encoders.timm_info(
                    encoder.model, options, encoder.feature_layer, encoder.pooling
                )
            except (MmgenError, RuntimeError, ValueError, AssertionError) as exc:
                errors.append(spec.error(where, f"the model fails on its input size: {exc}"))
                continue
            if where[0] == "test" and isinstance(spec.num_embeddings, str):
                formula = parse(spec.num_embeddings)
                fields = formula.encoder_fields
                if (fields or formula.uses_shape) and fields <= set(TIMM_FORMULA_FIELDS):
                    found = {f: getattr(info, f) for f in fields}
                    errors += count_errors(spec, found, shape=info.input_size)
    return errors


@functools.cache
def _transformers_names() -> frozenset[str]:
    import transformers

    return frozenset(dir(transformers))  # the lazy module's names: nothing imported yet (0.15 s)


def error_line(error: SpecError) -> int:
    # "file:line: field: message" (a file name may hold ":" itself: count from the right)
    head = str(error).split(": ", 1)[0]
    return int(head.rpartition(":")[2])
