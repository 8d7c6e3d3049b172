"""``mmgen train``: the training loop and everything it reads and writes.

config.py         the training config (YAML -> pydantic, every key checked)
loop.py           the loop: stages of optimizer steps, evaluation, checkpoints, clean stops
build.py          config -> model, tokenizer, processor, datasets
data.py           the scanned splits and this rank's batch stream
stream.py         an endless, resumable stream of batches over epochs
stages.py         what trains in each stage, its optimizer; LoRA
schedule.py       the learning-rate schedule
precision.py      autocast and the fp16 gradient scaler
distributed.py    torch.distributed: process group, DDP/FSDP2, reductions
evaluate.py       eval loss and held-out exact match
checkpoint.py     checkpoints: save, verify, choose what to resume
manifest.py       folders published whole, with a manifest of sizes and checksums
trainer_state.py  the trainer state as JSON + safetensors (nothing to unpickle)
lock.py           one run per output folder
metrics.py        metrics.jsonl, the progress bar; plot.py draws it
signals.py        SIGINT/SIGTERM -> save and stop
random_init.py    random-init encoders for offline runs
fields.py         checking a modality config's fields
"""
