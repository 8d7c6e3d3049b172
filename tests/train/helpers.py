"""Training configs for the tests: a tiny random-init LLM and Whisper encoder over the tiny
synthetic audio dataset of ``conftest.audio_data``.

``make_config`` uses mmgen's built-in audio modality, so no project has to be generated;
``speech_config`` uses a project's own generated modality (``conftest.speech_project``), and
``test_demo.py`` runs the README's generated path end to end.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

TINY_LLM = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
}
# mmgen's built-in audio modality (generated from specs/audio.yaml) with a random-init Whisper
# from the spec's test block, saved under the run's folder: 1-second windows at hop 400, 40 mel
# frames -> 20 encoder positions -> 10 embeddings (2x concat)
TINY_AUDIO = {
    "type": "audio",
    "config": {"max_batch_size": 8},
    "random_init": {
        "encoder": {"num_mel_bins": 16, "max_source_positions": 20},
        "processor": {"feature_size": 16, "hop_length": 400},
    },
}


SPEECH_PACKAGE = "speechproj"
# the generated `speech` modality (built-in audio spec) serving the dataset's "audio" entries,
# with the spec's tiny random-init Whisper saved under the run's folder
SPEECH_AUDIO = {
    "type": "speech",
    "config": {"max_batch_size": 8},
    "random_init": {"spec": "audio"},
}


def make_config(data: Path, out: Path, **sections: Any) -> dict[str, Any]:
    """A training config dict over ``data``; ``sections`` replace top-level sections."""
    config = {
        "output_dir": str(out),
        "seed": 0,
        "threads": 1,
        "model": {"text_config": dict(TINY_LLM), "tokenizer": str(data / "tokenizer")},
        "modalities": {"audio": copy.deepcopy(TINY_AUDIO)},
        "data": {
            "train": str(data / "train.jsonl"),
            "eval": str(data / "eval.jsonl"),
            "test": str(data / "test.jsonl"),
            "cache": True,
        },
        "packing": {"capacity": 256},
        "stages": [{"name": "full", "steps": 4}],
        "optimizer": {"lr": 3e-3},
        "schedule": {"kind": "linear", "warmup_steps": 1},
        "checkpoint": {"every": 2, "keep": 2},
        "logging": {"every": 1, "progress": False, "plot": False},
        "eval": {"accuracy_samples": 4, "max_new_tokens": 4},
    }
    config.update(sections)
    return config


def train_losses(run: Path) -> dict[int, float]:
    """step -> logged training loss of the run in ``run``."""
    from mmgen.train.metrics import read_metrics

    records = read_metrics(run / "metrics.jsonl")
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def speech_config(data: Path, out: Path, **sections: Any) -> dict[str, Any]:
    """``make_config`` with the generated ``speech`` modality of ``conftest.speech_project``."""
    config = make_config(data, out, **sections)
    config["package"] = SPEECH_PACKAGE
    config["modalities"] = {"audio": copy.deepcopy(SPEECH_AUDIO)}
    return config


def environment(*paths: Path) -> dict[str, str]:
    """The environment of a subprocess run: it imports this mmgen (source tree or installed)
    and the packages in ``paths``, on one thread."""
    import mmgen

    root = Path(mmgen.__file__).resolve().parent.parent
    path = os.pathsep.join(str(p) for p in (root, *paths))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
