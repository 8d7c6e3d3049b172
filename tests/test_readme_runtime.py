"""The README's runtime and data-pipeline examples run as written, with tiny local models: the
code blocks are read from README.md and only the model names and sizes are swapped for the tiny
checkpoints (each swap must find its text, so an edited README cannot silently skip a line)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import soundfile
import torch
from helpers.tiny_models import (
    AUDIO_RATE,
    LLM_HIDDEN,
    random_image,
    random_wave,
    tiny_llm,
    tiny_tokenizer,
)

from mmgen import MultimodalModel

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"\n## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)


def _swap(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in code, f"the README example no longer contains {old!r}"
        code = code.replace(old, new)
    return code


def _dataset(folder: Path) -> None:
    """train.jsonl with image and audio files beside it, and the clip the example asks about."""
    (folder / "media").mkdir()
    (folder / "clips").mkdir()
    rows = []
    for k in range(4):
        random_image(k).save(folder / "media" / f"{k}.png")
        soundfile.write(folder / "media" / f"{k}.wav", random_wave(k), AUDIO_RATE)
        rows.append(
            {
                "id": f"row-{k}",
                "conversations": [
                    {"role": "user", "content": "what is in <image> and <audio> ?" * (k % 2)},
                    {"role": "assistant", "content": "a red cat " * (k + 1)},
                ],
                "modalities": [
                    {"type": "image", "value": f"media/{k}.png"},
                    {"type": "audio", "value": {"path": f"media/{k}.wav"}},
                ][: 2 * (k % 2)],
            }
        )
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    soundfile.write(folder / "clips" / "7.wav", random_wave(7), AUDIO_RATE)


def test_readme_examples_run(tmp_path, monkeypatch, model_clip_dir, model_whisper_dir):
    llm_dir = tmp_path / "llm"
    tiny_llm(seed=2).save_pretrained(llm_dir)
    tiny_tokenizer().save_pretrained(llm_dir)
    _dataset(tmp_path)
    monkeypatch.chdir(tmp_path)  # the example's relative paths: train.jsonl, clips/, out/

    runtime, *_ = _python_blocks("The runtime")
    runtime = _swap(
        runtime,
        {
            '"Qwen/Qwen2.5-0.5B"': repr(str(llm_dir)),
            '"openai/clip-vit-large-patch14-336"': repr(str(model_clip_dir)),
            '"openai/whisper-small"': repr(str(model_whisper_dir)),
            '"hidden_size": 896': f'"hidden_size": {LLM_HIDDEN}',
        },
    )
    namespace: dict = {}
    exec(compile(runtime, "README.md (runtime)", "exec"), namespace)

    assert namespace["batch"]["cu_seqlens"].numel() == 5  # all 4 rows in one 4096-token pack
    assert torch.isfinite(namespace["loss"])
    new_tokens = namespace["new_tokens"]
    assert new_tokens.shape[0] == 1 and 1 <= new_tokens.shape[1] <= 32
    reloaded = namespace["model"]
    assert isinstance(reloaded, MultimodalModel) and (tmp_path / "out" / "llm").is_dir()
    with torch.no_grad():  # the reload (sdpa + mask) scores the batch as the original did
        torch.testing.assert_close(
            reloaded(**namespace["batch"]).loss, namespace["loss"].detach(), rtol=1e-5, atol=1e-6
        )

    (data,) = _python_blocks("Data pipeline")
    processors = namespace["processor"].processors
    namespace |= {"image_processor": processors["image"], "audio_processor": processors["audio"]}
    exec(compile(data, "README.md (data pipeline)", "exec"), namespace)
    assert namespace["dataset"].report() == "4 of 4 samples kept"
    assert torch.isfinite(namespace["loss"])
