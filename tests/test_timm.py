"""``encoder: {kind: timm}``: the spec's rules and checks (``mmgen validate``), the encoder's
features at the declared layer and pooling against timm's own, what its info tells formulas and
processors, local weights (loaded exactly, kept through transformers' init, never a path in a
saved modality), and a modality generated from ``specs/examples/timm_image.yaml``.

The tests that build timm models skip where timm does not import (it needs a torchvision that
matches torch)."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from mmgen.codegen.context import context_errors
from mmgen.codegen.references import reference_errors
from mmgen.errors import MmgenError, SpecError
from mmgen.resources import specs_dir
from mmgen.spec.loading import load_spec
from mmgen.spec.schema import TIMM_FORMULA_FIELDS

EXAMPLE = specs_dir() / "examples" / "timm_image.yaml"
TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}

SPEC = textwrap.dedent(
    """\
    name: timm_vit
    description: Images through a timm ViT
    loader: {name: raw-image}
    processor: {kind: timm}
    encoder:
      kind: timm
      model: vit_tiny_patch16_224
      feature_layer: -2
      pooling: none
    num_embeddings: encoder.grid_height * encoder.grid_width
    test:
      encoder: {img_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2}
      sample: {kind: image}
    """
)


def timm_importable() -> bool:
    try:
        import timm  # noqa: F401
    except Exception:  # not installed, or its torchvision does not fit this torch
        return False
    return True


needs_timm = pytest.mark.skipif(not timm_importable(), reason="timm does not import here")


def problems(text: str) -> list[str]:
    spec = load_spec("vit.yaml", text)
    return [str(e) for e in reference_errors(spec) + context_errors(spec)]


def schema_error(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec("vit.yaml", text)
    return str(caught.value)


# -- the schema (no timm needed) --------------------------------------------------------------


def test_kind_timm_takes_its_own_keys_and_a_timm_processor() -> None:
    spec = load_spec("vit.yaml", SPEC)
    assert (spec.encoder.model, spec.encoder.feature_layer, spec.encoder.pooling) == (
        "vit_tiny_patch16_224", -2, "none",
    )  # fmt: skip
    text = SPEC.replace("  model: vit_tiny_patch16_224\n", "")
    assert schema_error(text) == "vit.yaml:5: encoder.model: required for kind 'timm'"
    text = SPEC.replace("  pooling: none", "  pooling: none\n  drop_cls: true")
    assert schema_error(text) == "vit.yaml:10: encoder.drop_cls: not used with kind 'timm'"
    text = SPEC.replace("  pooling: none", "  pooling: max")
    assert schema_error(text).startswith("vit.yaml:9: encoder.pooling: ")
    text = SPEC.replace("processor: {kind: timm}", "processor: {kind: numeric}")
    assert "vit.yaml:4: processor: an encoder of kind 'timm' takes a processor" in schema_error(
        text
    )
    mlp = "  kind: mlp\n  options: {hidden_size: 8}\n  pooling: avg\n"
    text = SPEC.replace(
        "  kind: timm\n  model: vit_tiny_patch16_224\n  feature_layer: -2\n  pooling: none\n", mlp
    )
    assert "encoder.pooling: not used with kind 'mlp'" in schema_error(text)
    assert schema_error(SPEC.replace("vit_tiny", "ViT Tiny")).startswith(
        "vit.yaml:7: encoder.model:"
    )


def test_formulas_read_the_fields_a_timm_encoder_reports() -> None:
    spec = load_spec("vit.yaml", SPEC.replace("grid_width", "grid_widht"))
    (error,) = context_errors(spec)
    assert str(error) == (
        "vit.yaml:10: num_embeddings: encoder.grid_widht is not a field of a timm encoder;"
        " did you mean 'grid_width'?"
    )
    from dataclasses import fields

    from mmgen.nn.timm_encoders import TimmInfo

    reported = {f.name for f in fields(TimmInfo)} - {"data_config"}
    assert reported == set(TIMM_FORMULA_FIELDS)


def test_without_timm_validate_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    (error,) = problems(SPEC)
    assert error.startswith("vit.yaml:7: encoder.model: encoder kind 'timm' needs the timm")
    assert "pip install timm" in error


# -- what mmgen validate checks with timm -----------------------------------------------------


@needs_timm
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("vit_tiny_patch16_224", "vit_tiny_patch16_22"),
         "vit.yaml:7: encoder.model: timm has no model 'vit_tiny_patch16_22';"
         " did you mean 'vit_tiny_patch16_224'?"),
        (("vit_tiny_patch16_224", "vit_tiny_patch16_224.augreg_in22k"),
         "vit.yaml:7: encoder.model: timm model 'vit_tiny_patch16_224' has no pretrained tag"
         " 'augreg_in22k'; did you mean 'augreg_in21k'?"),
        (("feature_layer: -2", "feature_layer: 12"),
         "vit.yaml:8: encoder.feature_layer: feature_layer 12 is out of range:"
         " vit_tiny_patch16_224 has 12 feature layers (0..11, or -12..-1 from the end)"),
        (("feature_layer: -2", "feature_layer: 5"),  # fits 12 blocks, not the tiny model's 2
         "vit.yaml:8: encoder.feature_layer: feature_layer 5 is out of range:"
         " vit_tiny_patch16_224 has 2 feature layers (0..1, or -2..-1 from the end)"
         " (the test block's tiny model)"),
        (("model: vit_tiny_patch16_224", "model: vit_tiny_patch16_224\n  pretrained: vit_tiny"),
         "vit.yaml:8: encoder.pretrained: timm has no model 'vit_tiny'"),
        (("test:\n  encoder: {", "test:\n  encoder: {depht: 2, "),
         "vit.yaml:12: test.encoder: timm.create_model('vit_tiny_patch16_224') with"),
    ],
)  # fmt: skip
def test_validate_names_each_timm_problem_at_its_line(change, expected) -> None:
    found = problems(SPEC.replace(*change))
    assert len(found) == 1 and found[0].startswith(expected), found


@needs_timm
def test_validate_knows_models_without_a_class_token_or_intermediates() -> None:
    text = SPEC.replace("vit_tiny_patch16_224", "resnet18").replace("pooling: none", "pooling: cls")
    text = text.replace(
        "{img_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2}", "{}"
    )
    (error,) = problems(text.replace("feature_layer: -2", "feature_layer: -1"))
    assert (
        error
        == "vit.yaml:9: encoder.pooling: pooling 'cls': timm model 'resnet18' has no class token"
    )
    assert problems(text.replace("pooling: cls", "pooling: avg")) == []
    assert problems(SPEC) == [] and problems(EXAMPLE.read_text()) == []


# -- the encoder --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vit():
    if not timm_importable():
        pytest.skip("timm does not import here")
    from mmgen.nn.timm_encoders import create_model

    torch.manual_seed(0)
    return create_model("vit_tiny_patch16_224", TINY).eval()


def encoder_like(model, folder, **kwargs):
    """A TimmEncoder holding ``model``'s weights."""
    from safetensors.torch import save_file

    from mmgen.nn.timm_encoders import TimmEncoder

    weights = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return TimmEncoder("vit_tiny_patch16_224", options=TINY, weights=str(weights), **kwargs).eval()


@needs_timm
def test_feature_layer_and_pooling_take_what_they_say(tiny_vit, tmp_path) -> None:
    images = torch.randn(3, 3, 32, 32)
    seen = {}
    tiny_vit.blocks[0].register_forward_hook(lambda m, i, out: seen.update(first=out))
    with torch.no_grad():
        final = tiny_vit.forward_features(images)  # (3, 1 + 16, 32): class token, 4x4 patches
        cases = {
            (-1, "none"): final[:, 1:],
            (-1, "cls"): final[:, :1],
            (-1, "avg"): final[:, 1:].mean(dim=1, keepdim=True),
            (-2, "none"): seen["first"][:, 1:],  # the penultimate of 2 blocks, before the norm
            (0, "cls"): seen["first"][:, :1],
        }
        for (layer, pooling), expected in cases.items():
            encoder = encoder_like(tiny_vit, tmp_path, feature_layer=layer, pooling=pooling)
            torch.testing.assert_close(encoder(images), expected, msg=f"{layer} {pooling}")
    # an earlier block is taken from a model without the blocks after it (nor the final norm)
    pruned = encoder_like(tiny_vit, tmp_path, feature_layer=-2).model
    assert len(pruned.blocks) == 1 and isinstance(pruned.norm, torch.nn.Identity)


@needs_timm
def test_info_matches_what_the_encoder_emits() -> None:
    from mmgen.nn.timm_encoders import TimmEncoder, timm_info

    for name, options, layer, pooling, size in [
        ("vit_tiny_patch16_224", TINY, -1, "none", (3, 32, 32)),
        ("vit_tiny_patch16_224", TINY, -2, "avg", (3, 32, 32)),
        ("resnet18", {"layers": [1, 1, 1, 1]}, -1, "none", (3, 224, 224)),
        ("resnet18", {"layers": [1, 1, 1, 1]}, 2, "none", (3, 224, 224)),
    ]:
        info = timm_info(name, options, layer, pooling)
        assert info.input_size == size  # the tiny ViT's own 32x32, not its pretrained 224
        encoder = TimmEncoder(name, options=options, feature_layer=layer, pooling=pooling)
        with torch.no_grad():
            rows = encoder(torch.randn(1, *info.input_size))
        assert rows.shape == (1, info.tokens, info.width) and encoder.hidden_size == info.width
        if pooling == "none":
            assert info.tokens == info.grid_height * info.grid_width
    info = timm_info("vit_tiny_patch16_224", TINY)
    assert (info.grid_height, info.prefix_tokens, info.layers) == (4, 1, 2)
    # the pretrained tag's preprocessing: CLIP's mean and std, its 336 input
    clip = timm_info("vit_large_patch14_clip_336.openai", {}, -2)
    assert clip.input_size == (3, 336, 336) and clip.tokens == 576
    assert clip.data_config["mean"] == pytest.approx((0.4815, 0.4578, 0.4082), abs=1e-4)


# -- weights ------------------------------------------------------------------------------------


@needs_timm
def test_weights_load_exactly_or_say_why_not(tiny_vit, tmp_path) -> None:
    from safetensors.torch import save_file

    from mmgen.nn.timm_encoders import TimmEncoder

    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_vit.state_dict().items()}, str(weights))
    for source in (weights, tmp_path):  # a file, or a folder holding model.safetensors
        if source == tmp_path:
            weights.rename(tmp_path / "model.safetensors")
        encoder = TimmEncoder("vit_tiny_patch16_224", options=TINY, weights=str(source))
        for name, value in tiny_vit.state_dict().items():
            assert torch.equal(encoder.model.state_dict()[name], value), name
    deeper = {**TINY, "depth": 3}
    with pytest.raises(MmgenError, match=r"do not fit the model: .* missing \['blocks.2"):
        TimmEncoder("vit_tiny_patch16_224", options=deeper, weights=str(tmp_path))
    with pytest.raises(MmgenError, match="no such file or folder"):
        TimmEncoder("vit_tiny_patch16_224", options=TINY, weights=str(tmp_path / "x.safetensors"))


@needs_timm
def test_a_timm_name_loads_from_the_local_cache_only(tiny_vit, tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants
    from safetensors.torch import save_file

    from mmgen.nn.timm_encoders import TimmEncoder

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    name = "vit_tiny_patch16_224.augreg_in21k"
    with pytest.raises(MmgenError, match=r"not in the local Hugging Face cache \(nothing is"):
        TimmEncoder("vit_tiny_patch16_224", options=TINY, weights=name)
    # the cache's layout: models--ORG--NAME/refs/main -> snapshots/<revision>/<file>
    repo = tmp_path / "models--timm--vit_tiny_patch16_224.augreg_in21k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    state = {k: v.contiguous() for k, v in tiny_vit.state_dict().items()}
    state |= {"head.weight": torch.zeros(10, 32), "head.bias": torch.zeros(10)}  # a classifier
    save_file(state, str(repo / "snapshots" / "abc123" / "model.safetensors"))
    encoder = TimmEncoder("vit_tiny_patch16_224", options=TINY, weights=name)
    assert torch.equal(encoder.model.blocks[1].mlp.fc1.weight, tiny_vit.blocks[1].mlp.fc1.weight)


# -- a generated modality -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The example spec generated as ``photo`` into a plain folder, imported."""
    if not timm_importable():
        pytest.skip("timm does not import here")
    import importlib

    from typer.testing import CliRunner

    from mmgen.cli import app

    out = tmp_path_factory.mktemp("timm_generated")
    args = ["new-modality", "photo", "--spec", str(EXAMPLE), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("photo"), out
    finally:
        sys.path.remove(str(out))


@needs_timm
def test_the_generated_modality_keeps_loaded_weights_and_saves_none_outside(
    generated, tmp_path
) -> None:
    from PIL import Image
    from safetensors.torch import save_file

    from mmgen.nn.timm_encoders import create_model

    photo, _ = generated
    torch.manual_seed(1)
    tiny_vit = create_model(photo.PhotoConfig().timm_model, TINY)  # the example's CLIP ViT
    weights = tmp_path / "weights" / "model.safetensors"
    weights.parent.mkdir()
    save_file({k: v.contiguous() for k, v in tiny_vit.state_dict().items()}, str(weights))
    config = photo.PhotoConfig(
        hidden_size=16, encoder_options=TINY, encoder_weights=str(weights.parent)
    )
    model = photo.PhotoModality(config).eval()
    # transformers' post_init ran after the weights were loaded, and kept them
    reference = tiny_vit.state_dict()
    for name, value in model.encoder.model.state_dict().items():  # blocks up to feature_layer
        assert torch.equal(value, reference[name]), name
    processor = photo.PhotoProcessor(config)
    item = processor.process({"type": "photo", "value": Image.new("RGB", (48, 40), (200, 30, 60))})
    assert item["value"].shape == (3, 32, 32) and item["num_embeddings"] == 16  # 4 x 4 patches
    assert processor.count(item, lambda: None) == 16  # the length index needs no image
    with torch.no_grad():
        before = model([item["value"]])
    assert before.shape == (1, 16, 16)

    model.save_pretrained(tmp_path / "saved")
    saved = (tmp_path / "saved" / "config.json").read_text()
    assert '"encoder_weights": null' in saved and str(tmp_path) not in saved
    weights.unlink()  # the saved modality needs nothing outside its folder
    reloaded = photo.PhotoModality.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded([item["value"]]), before)


@needs_timm
def test_a_count_from_the_input_shape_needs_no_image(generated) -> None:
    """A formula over the processed shape: every image has the model's input size, so the data
    scan counts without decoding one."""
    import importlib

    from typer.testing import CliRunner

    from mmgen.cli import app

    _, out = generated
    spec = out / "by_shape.yaml"
    spec.write_text(
        SPEC.replace(
            "encoder.grid_height * encoder.grid_width", "(shape[-2] // 8) * (shape[-1] // 8)"
        )
    )
    args = ["new-modality", "by_shape", "--spec", str(spec), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    by_shape = importlib.import_module("by_shape")
    config = by_shape.ByShapeConfig(encoder_options=TINY)
    assert by_shape.ByShapeProcessor(config).count({}, lambda: None) == 16  # (32 // 8) ** 2 patches


@needs_timm
@pytest.mark.slow
def test_the_generated_test_passes(generated) -> None:
    import subprocess

    from tests.train.helpers import environment

    _, out = generated
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_photo.py"],
        cwd=out, env=environment(out), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
