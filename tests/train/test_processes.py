"""Training in real processes: SIGTERM saves a checkpoint before exiting, and 2-process DDP and
FSDP2 on CPU (gloo, launched by torchrun) take the same step as one process on both ranks'
packs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmgen.train.checkpoint import read_state
from mmgen.train.config import load_config
from tests.train.helpers import environment, make_config, train_losses, write_config

pytestmark = pytest.mark.slow


def test_sigterm_saves_a_checkpoint_then_exits(audio_data: Path, tmp_path: Path) -> None:
    config = make_config(audio_data, tmp_path / "run", stages=[{"name": "full", "steps": 500}])
    config["checkpoint"] = {"every": 1000, "keep": 1}
    path = write_config(tmp_path / "train.yaml", config)
    command = [sys.executable, "-m", "mmgen", "train", str(path)]
    process = subprocess.Popen(
        command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no training step within 2 minutes"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "stopped by signal 15" in output and "resume with: mmgen train" in output
    saved = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert len(saved) == 1
    state = read_state(saved[0])
    assert 1 <= state["step"] < 500 and saved[0].name == f"step-{state['step']:08d}"
    assert max(train_losses(tmp_path / "run")) == state["step"]

    from mmgen.model import MultimodalModel

    MultimodalModel.from_pretrained(saved[0] / "model")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_cpu_processes(audio_data: Path, tmp_path: Path, strategy: str) -> None:
    config = make_config(audio_data, tmp_path / "run", stages=[{"name": "full", "steps": 2}])
    config["checkpoint"] = {"every": 1, "keep": 2}
    config["distributed"] = {"strategy": strategy}
    path = write_config(tmp_path / "train.yaml", config)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", "-m", "mmgen", "train", str(path)]  # fmt: skip
    done = subprocess.run(
        command, env=environment(), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mmgen train: 2 x cpu" in done.stdout
    assert done.stdout.count("held-out exact match") == 1  # rank 0 prints
    losses = train_losses(tmp_path / "run")
    assert sorted(losses) == [1, 2]
    expected_loss, expected_weights = one_process_step(load_config(path))
    assert losses[1] == pytest.approx(expected_loss, rel=1e-5)

    from mmgen.model import MultimodalModel

    trained = MultimodalModel.from_pretrained(tmp_path / "run/checkpoints/step-00000001/model")
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(value, expected_weights[name], atol=2e-6, rtol=1e-5, msg=name)


def one_process_step(config) -> tuple[float, dict[str, torch.Tensor]]:
    """Step 1 done in one process on the packs both DDP ranks drew: the token-weighted loss over
    the two packs and the weights after one optimizer step on it."""
    from mmgen.train import build, stages
    from mmgen.train.data import TrainData, target_tokens
    from mmgen.train.distributed import World

    build.register_project(config)
    tokenizer = build.load_tokenizer(config)
    cpu = torch.device("cpu")
    model = build.build_model(config, tokenizer, World(0, 1, 0, cpu))
    processor = build.build_processor(config, model, tokenizer)
    batches = [TrainData(config, processor, World(r, 2, r, cpu)).next_batch() for r in range(2)]
    stages.apply_stage(model, config.stages[0])
    optimizer, _ = stages.make_optimizer(config, config.stages[0], model)
    total = sum(target_tokens(b) for b in batches)
    loss = sum(model(**b, num_items_in_batch=total).loss for b in batches)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(model.parameters()), config.optimizer.grad_clip)
    optimizer.step()
    return loss.item(), {k: v.detach().clone() for k, v in model.state_dict().items()}
