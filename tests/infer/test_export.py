"""``mmgen export RUN OUT``: the merged folder gives the run's outputs (a LoRA run's merged LLM
the adapter model's logits), loads with ``mmgen.load``, is sharded and carries a model card;
``--format llava`` writes a transformers ``LlavaForConditionalGeneration`` that loads without
mmgen and gives the same logits; bad input is one line and writes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.tiny_models import (
    LLM_HIDDEN,
    image_modality,
    random_image,
    save_tiny_siglip,
    tiny_llm,
    tiny_multimodal,
    tiny_tokenizer,
)
from typer.testing import CliRunner

import mmgen
from mmgen.cli import app
from mmgen.data.collator import left_padded
from mmgen.errors import ConfigError
from mmgen.export.llava import build_llava, llava_plan
from mmgen.model import MultimodalModel
from tests.infer.conftest import STEPS
from tests.infer.test_load import question
from tests.train.helpers import SPEECH_PACKAGE

runner = CliRunner()


def export(*args) -> tuple[int, str]:
    result = runner.invoke(app, ["export", *map(str, args)])
    return result.exit_code, result.output


def rows(data: Path, split: str = "test") -> list[dict]:
    return [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()]


def logits(loaded, rows: list[dict], base: Path) -> torch.Tensor:
    """The logits of whole conversations (answers included), batched with left padding."""
    samples = [loaded.processor.process(row, base_dir=base) for row in rows]
    batch = left_padded(samples, loaded.processor.pad_token_id)
    with torch.no_grad():
        return loaded.model(**batch).logits


def nothing_written(folder: Path, out: Path) -> bool:
    return not out.exists() and not any(p.name.startswith(".tmp-") for p in folder.iterdir())


def test_a_lora_run_exports_merged_with_the_adapter_models_outputs(
    image_lora_run, image_data, tmp_path
) -> None:
    out = tmp_path / "merged"
    code, output = export(image_lora_run, out, "--max-shard-size", "40KB")
    assert code == 0, output
    assert "LoRA merged" in output
    model_dir = image_lora_run / "model"
    assert (model_dir / "llm_adapter").is_dir() and not (out / "llm_adapter").exists()
    assert len(list((out / "llm").glob("model-*-of-*.safetensors"))) > 1  # 80 KB of LLM weights
    assert (out / "llm/model.safetensors.index.json").is_file()
    image_processor = "modalities/image/assets/processor_name_or_path/preprocessor_config.json"
    for same in ("mmgen_processor.json", "chat_template.jinja", "tokenizer.json",
                 "llm/generation_config.json", image_processor):  # fmt: skip
        assert (out / same).read_bytes() == (model_dir / same).read_bytes(), same

    adapter, merged = mmgen.load(image_lora_run), mmgen.load(out)
    assert type(merged.model.language_model).__name__ == "LlamaForCausalLM"  # no peft wrapper
    assert merged.processor.chat_template == "plain"
    test = rows(image_data)
    expected = logits(adapter, test, image_data)
    torch.testing.assert_close(logits(merged, test, image_data), expected, rtol=1e-4, atol=1e-5)
    with adapter.model.language_model.disable_adapter():  # the adapters matter: no vacuous pass
        assert (logits(adapter, test, image_data) - expected).abs().max() > 1e-2
    prompts = [{**row, "modalities": [{"type": "image", "value": {"path": str(image_data /
               row["modalities"][0]["value"]["path"])}}]} for row in test]  # fmt: skip
    greedy = {"max_new_tokens": 6, "ignore_eos": True}
    assert [c.token_ids for c in merged.generate(prompts, **greedy)] == [
        c.token_ids for c in adapter.generate(prompts, **greedy)
    ]


def test_a_run_exports_with_a_card_that_says_what_the_model_is(
    trained_run, audio_data, tmp_path
) -> None:
    out = tmp_path / "speech-model"
    code, output = export(trained_run, out)
    assert code == 0, output
    assert "LoRA" not in output
    ask = [question(audio_data)]
    run, exported = mmgen.load(trained_run), mmgen.load(out)  # mmgen.load verifies the manifest
    greedy = {"max_new_tokens": 6, "ignore_eos": True}
    assert exported.generate(ask, **greedy)[0].token_ids == run.generate(ask, **greedy)[0].token_ids

    card = (out / "README.md").read_text()
    assert "| LLM | LlamaForCausalLM (hidden size 32, 2 layers" in card
    assert "random init from `text_config`" in card
    assert '| modality `audio` | type `speech`, generated from spec "speech" (audio.yaml)' in card
    assert "encoder WhisperEncoder (random init)" in card
    assert "concat downsampling by 2" in card
    assert "embeddings follow the input's length (25 per full window of 16000" in card
    assert "placeholder `<audio>`" in card
    assert f"code: `{SPEECH_PACKAGE}.modalities.speech.modality`" in card
    for split, count in (("train", 48), ("eval", 16), ("test", 16)):
        size = (audio_data / f"{split}.jsonl").stat().st_size
        shown = f"{size / 1024:.1f} KB" if size >= 1024 else f"{size} B"
        assert f"| {split} | `{audio_data / f'{split}.jsonl'}` | {shown} | {count} |" in card
    assert f"| full | {STEPS} | 0.003 |  |" in card
    records = [
        json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()
    ]
    loss = next(r for r in reversed(records) if r["kind"] == "eval")["loss"]
    assert f"| eval | {STEPS} | loss | {loss:.4g} |" in card
    assert 'loaded = mmgen.load("speech-model")' in card and "mmgen serve speech-model" in card
    assert "llava" not in card.lower()

    code, output = export(out, tmp_path / "again")  # an export of an export keeps its facts
    assert code == 0, output
    again = (tmp_path / "again/README.md").read_text()
    assert again.split("## Training")[1] == card.split("## Training")[1].replace(
        "speech-model", "again"
    )

    previous = STEPS - 2  # the checkpoint before the last
    code, output = export(trained_run, tmp_path / "at-prev", "--checkpoint", previous)
    assert code == 0, output
    card = (tmp_path / "at-prev/README.md").read_text()  # the metrics the run had then
    loss = next(r for r in records if r["kind"] == "train" and r["step"] == previous)["loss"]
    assert f"Final metrics (step {previous}):" in card
    assert f"| train | {previous} | loss | {loss:.4g} |" in card
    assert "| eval |" not in card.split("Final metrics")[1]


LLAVA_SCRIPT = """
import json, sys
sys.modules["mmgen"] = None  # any import of mmgen fails: transformers alone
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoProcessor, LlavaForConditionalGeneration

folder, image, messages, out = sys.argv[1:]
model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
processor = AutoProcessor.from_pretrained(folder)
prompt = processor.apply_chat_template(json.loads(messages), tokenize=False)
inputs = processor(text=prompt, images=[Image.open(image)], return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits[0]
save_file({"logits": logits, "input_ids": inputs["input_ids"][0]}, out)
print(json.dumps(prompt))
"""


def test_llava_export_loads_with_transformers_alone_and_gives_the_same_logits(
    image_lora_run, image_data, tmp_path
) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "shapes"
    code, output = export(image_lora_run, out, "--format", "llava")
    assert code == 0, output
    assert f"{out / 'llava'}: LlavaForConditionalGeneration" in output
    assert "vllm serve shapes/llava" in (out / "README.md").read_text()
    assert (
        'LlavaForConditionalGeneration.from_pretrained(".")'
        in (out / "llava/README.md").read_text()
    )
    row = rows(image_data)[0]
    image = image_data / row["modalities"][0]["value"]["path"]
    messages = [{"role": t["role"], "content": t["content"]} for t in row["conversations"]]
    result = subprocess.run(
        [sys.executable, "-c", LLAVA_SCRIPT, str(out / "llava"), str(image), json.dumps(messages),
         str(tmp_path / "llava.safetensors")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
             "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = load_file(tmp_path / "llava.safetensors")

    run = mmgen.load(image_lora_run)  # the adapter model itself, not the merged export
    assert json.loads(result.stdout.strip().splitlines()[-1]) == run.processor.render(row)
    sample = run.processor.process(row, base_dir=image_data)
    config = json.loads((out / "llava/config.json").read_text())
    ours = sample.input_ids.masked_fill(
        sample.input_ids == run.model.placeholder_ids["image"], config["image_token_index"]
    )
    assert torch.equal(theirs["input_ids"], ours)  # <image> expanded to the same 16 positions
    assert int((ours == config["image_token_index"]).sum()) == 16
    vocab = run.model.language_model.get_input_embeddings().num_embeddings
    assert config["text_config"]["vocab_size"] == vocab + 1  # <image> was added
    expected = logits(run, [row], image_data)[0]
    torch.testing.assert_close(theirs["logits"][:, :vocab], expected, rtol=1e-4, atol=1e-5)
    mmgen.load(out)  # the manifest covers llava/ too


def test_a_model_without_a_llava_form_is_refused_with_the_reasons(trained_run, tmp_path) -> None:
    out = tmp_path / "out"
    code, output = export(trained_run, out, "--format", "llava")
    assert code == 1
    assert output.strip() == (
        "error: --format llava: the model has no LLaVA form: modality 'audio' (speech) encodes"
        " with WhisperEncoder, not a CLIP or SigLIP vision tower; modality 'audio' downsamples"
        " its tokens by 2; LLaVA cannot"
    )
    assert nothing_written(tmp_path, out)


def test_llava_plan_names_what_llava_cannot_hold(model_clip_dir, model_whisper_dir) -> None:
    def reasons(model) -> str:
        with pytest.raises(ConfigError) as error:
            llava_plan(model)
        return str(error.value)

    assert "LLaVA holds one image modality; this model has 2 (image, audio)" in reasons(
        tiny_multimodal(model_clip_dir, model_whisper_dir)
    )
    downsampled = image_modality(model_clip_dir, downsample_factor=2)
    assert "modality 'image' downsamples its tokens by 2" in reasons(
        MultimodalModel(language_model=tiny_llm(), modalities={"image": downsampled})
    )
    deep = image_modality(model_clip_dir, projector_layers=3)
    assert "projector is Linear-GELUActivation-Linear-GELUActivation-Linear;" in reasons(
        MultimodalModel(language_model=tiny_llm(), modalities={"image": deep})
    )
    from transformers import Gemma2Config, Gemma2ForCausalLM

    gemma = Gemma2ForCausalLM(Gemma2Config(
        vocab_size=96, hidden_size=LLM_HIDDEN, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, final_logit_softcapping=30.0,
    ))  # fmt: skip
    image = image_modality(model_clip_dir)
    assert "the LLM's head scales its logits (final_logit_softcapping=30.0)" in reasons(
        MultimodalModel(language_model=gemma, modalities={"image": image})
    )


SIGLIP_SPEC = """\
name: glimpse
description: Images through a SigLIP vision tower, every patch token of one layer
placeholder: "<image>"
loader: {name: raw-image}
processor:
  class: transformers.SiglipImageProcessor
  pretrained: google/siglip-base-patch16-224
  output: pixel_values
encoder:
  class: transformers.SiglipVisionModel
  pretrained: google/siglip-base-patch16-224
  input: pixel_values
  hidden_state: -1
num_embeddings: (encoder.image_size // encoder.patch_size) ** 2
projector: {kind: linear}
test:
  encoder: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2,
            image_size: 32, patch_size: 8}
  processor: {size: {height: 32, width: 32}}
  sample: {kind: image}
"""


def llava_round_trip(model, processor, folder: Path):
    """Build the LLaVA form of ``model``, save it, load it back with transformers, and check
    that a prompt with an image gets the same ids and logits; returns the loaded config."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    llava, llava_processor = build_llava(model, processor, llava_plan(model))
    llava.save_pretrained(folder)
    llava_processor.save_pretrained(folder)
    loaded = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    image = random_image(3)
    row = {"text": "what is in <image> ?", "modalities": [{"type": "image", "value": image}]}
    sample = processor.process(row, generation=True)  # a text row starts with the BOS token
    inputs = AutoProcessor.from_pretrained(folder)(
        text="<s>what is in <image> ?", images=[image], return_tensors="pt"
    )
    ours = sample.input_ids.masked_fill(sample.input_ids < 0, loaded.config.image_token_index)
    assert torch.equal(inputs["input_ids"][0], ours)  # <image> expanded to the same count
    with torch.no_grad():
        theirs = loaded(**inputs).logits[0]
        expected = model(**left_padded([sample], processor.pad_token_id)).logits[0]
    vocab = expected.shape[-1]
    torch.testing.assert_close(theirs[:, :vocab], expected, rtol=1e-4, atol=1e-5)
    return loaded


def test_a_generated_siglip_modality_with_a_linear_projector_becomes_llava(tmp_path) -> None:
    spec = tmp_path / "glimpse.yaml"
    spec.write_text(SIGLIP_SPEC)
    result = runner.invoke(app, ["new-modality", "glimpse", "--spec", spec, "--out", tmp_path])
    assert result.exit_code == 0, result.output
    sys.path.insert(0, str(tmp_path))
    try:
        from glimpse import GlimpseConfig, GlimpseModality
    finally:
        sys.path.remove(str(tmp_path))
    siglip = str(save_tiny_siglip(tmp_path / "siglip"))
    fields = {"encoder_name_or_path": siglip, "processor_name_or_path": siglip,
              "hidden_size": LLM_HIDDEN}  # fmt: skip
    torch.manual_seed(0)
    glimpse = GlimpseModality(GlimpseConfig(**fields))
    model = MultimodalModel(language_model=tiny_llm(), modalities={"image": glimpse}).eval()
    processor = model.build_processor(tiny_tokenizer())  # it has <image>: no row is added
    config = llava_round_trip(model, processor, tmp_path / "llava").config
    assert (config.vision_feature_select_strategy, config.vision_feature_layer) == ("full", -1)
    assert config.projector_hidden_act == "linear"  # linear_2 is the identity
    assert config.image_token_index == processor.tokenizer.convert_tokens_to_ids("<image>")
    assert config.text_config.vocab_size == tiny_llm().config.vocab_size

    glimpse.config.hidden_state = None  # SigLIP's last_hidden_state: after its post-layernorm
    with pytest.raises(ConfigError, match="reads SigLIP's last_hidden_state"):
        llava_plan(model)


def test_a_tied_llm_gets_an_image_token_and_an_edited_modality_is_refused(
    model_clip_dir, tmp_path
) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "what", "is", "in", "?"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    special = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **special)
    llm = tiny_llm(vocab_size=len(words), tie_word_embeddings=True)
    image = image_modality(model_clip_dir, hidden_state=None)  # CLIP's last hidden state
    model = MultimodalModel(language_model=llm, modalities={"image": image}).eval()
    processor = model.build_processor(tokenizer)
    loaded = llava_round_trip(model, processor, tmp_path / "llava")
    assert loaded.config.vision_feature_layer == -1
    assert loaded.config.image_token_index == len(words)  # added, one embedding row more
    assert loaded.lm_head.weight is loaded.model.language_model.embed_tokens.weight
    assert llm.get_input_embeddings().num_embeddings == len(words)  # the mmgen model unchanged

    forward = image.forward
    image.forward = lambda inputs: forward(inputs) * 2  # code that does more than the spec says
    with pytest.raises(ConfigError, match="the LLaVA model's image features differ by"):
        build_llava(model, processor, llava_plan(model))


def test_bad_input_is_one_line_and_writes_nothing(trained_run, tmp_path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    other = tmp_path / "hf-checkpoint"  # another project's checkpoint: a plain transformers one
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=16,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
        )
    ).save_pretrained(other)
    gone = tmp_path / "code-gone"
    shutil.copytree(trained_run / "model", gone)
    (gone / "manifest.json").unlink()
    config = json.loads((gone / "config.json").read_text())
    config["modality_code"]["audio"] = {"module": "gonepkg.modalities.speech.modality",
                                        "root": str(tmp_path / "moved-away")}  # fmt: skip
    (gone / "config.json").write_text(json.dumps(config))
    damaged = tmp_path / "damaged-checkpoint"
    shutil.copytree(trained_run / f"checkpoints/step-{STEPS:08d}", damaged)
    weights = damaged / "model/llm/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    out = tmp_path / "out"
    cases = [
        ([tmp_path / "absent", out], "no such run, checkpoint or model folder"),
        ([other, out], "not a run folder (no model/ or checkpoints/), a checkpoint or a saved"),
        ([gone, out], "modality 'audio' is defined in gonepkg.modalities.speech.modality, which"
                      " cannot be imported: install the project"),
        ([damaged, out], "model.safetensors: not a valid checkpoint: "),
        ([trained_run, out, "--max-shard-size", "lots"], "--max-shard-size lots: give a size"),
        ([trained_run, trained_run.parent, "--overwrite"], "which is being exported"),
        ([trained_run, trained_run / "model/inside"], "inside"),
    ]  # fmt: skip
    for args, message in cases:
        code, output = export(*args)
        assert code == 1, (args, output)
        assert len(output.strip().splitlines()) == 1 and output.startswith("error: "), output
        assert message in output, output
        assert nothing_written(tmp_path, out)
    assert not (trained_run / "model/inside").exists()
    mmgen.load(trained_run)  # untouched


def test_an_existing_out_is_replaced_only_with_overwrite(trained_run, tmp_path) -> None:
    from safetensors import safe_open

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, output = export(trained_run, out)
    assert code == 1
    assert output.strip() == f"error: {out} exists and is not empty: give --overwrite to replace it"
    assert (out / "notes.txt").read_text() == "mine"
    code, output = export(trained_run, out, "--overwrite", "--dtype", "bf16")
    assert code == 0, output
    assert not (out / "notes.txt").exists() and (out / "README.md").is_file()
    with safe_open(out / "llm/model.safetensors", "pt") as weights:
        names = weights.keys()  # safe_open is not iterable itself
        assert {weights.get_slice(name).get_dtype() for name in names} == {"BF16"}
    mmgen.load(out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folder left beside
