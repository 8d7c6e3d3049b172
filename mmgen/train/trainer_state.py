"""The trainer state of a checkpoint in two files that cannot run code when read.

``trainer_state.json`` holds the structure (step, stage, data position, optimizer and scheduler
settings, RNG states) and ``trainer_state.safetensors`` every tensor it refers to. Unlike a
pickle (``torch.save``), neither format can name a Python callable, so resuming from a
checkpoint someone else wrote runs none of their code.

JSON has no tuples, non-string keys, NaN or arrays, so those are written as tagged objects
``{"__mmgen__": "<kind>", ...}``; everything else is plain JSON and readable as it is::

    {"step": 100, "data": {"epoch": 0, "position": 400},
     "optimizer": {"state": {"__mmgen__": "dict", "items": [[0, {"exp_avg": {"__mmgen__":
     "tensor", "key": "t0"}, ...}], ...]}, ...}}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmgen.errors import CheckpointError

STRUCTURE_FILE = "trainer_state.json"
TENSORS_FILE = "trainer_state.safetensors"
FORMAT = "mmgen-trainer-state"
VERSION = 1
_TAG = "__mmgen__"


def save_trainer_state(state: dict[str, Any], folder: Path) -> None:
    """Write ``state`` (nested dicts, lists, tuples, scalars, tensors, numpy arrays)."""
    tensors: dict[str, torch.Tensor] = {}
    storages: set[tuple[int, int]] = set()

    def encode(value: Any, where: str) -> Any:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
        if isinstance(value, torch.Tensor):
            return {_TAG: "tensor", "key": store(value)}
        if isinstance(value, np.ndarray):
            return {_TAG: "ndarray", "key": store(torch.from_numpy(np.array(value)))}
        if isinstance(value, np.generic):
            return encode(value.item(), where)
        if isinstance(value, tuple):
            return {
                _TAG: "tuple",
                "items": [encode(v, f"{where}[{i}]") for i, v in enumerate(value)],
            }
        if isinstance(value, list):
            return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value) and _TAG not in value:
                return {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}
            items = [[encode(k, where), encode(v, f"{where}[{k!r}]")] for k, v in value.items()]
            return {_TAG: "dict", "items": items}
        raise TypeError(f"trainer state: cannot store a {type(value).__name__} (at {where})")

    def store(tensor: torch.Tensor) -> str:
        tensor = tensor.detach().cpu()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in storages or not tensor.is_contiguous():  # safetensors refuses shared memory
            tensor = tensor.contiguous().clone()
        storages.add(key)
        name = f"t{len(tensors)}"
        tensors[name] = tensor
        return name

    document = {"format": FORMAT, "version": VERSION, "state": encode(state, "state")}
    text = json.dumps(document, indent=1, allow_nan=False)
    save_file(tensors, str(folder / TENSORS_FILE), metadata={"format": FORMAT})
    (folder / STRUCTURE_FILE).write_text(text + "\n", encoding="utf-8")


def load_trainer_state(folder: Path) -> dict[str, Any]:
    """Read what ``save_trainer_state`` wrote; anything else is a ``CheckpointError`` naming
    the file."""
    structure, tensors_path = folder / STRUCTURE_FILE, folder / TENSORS_FILE
    try:
        document = json.loads(structure.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise _invalid(structure, "missing") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise _invalid(structure, f"not JSON ({_first_line(exc)})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _invalid(structure, f'not an mmgen trainer state (no "format": "{FORMAT}")')
    if document.get("version") != VERSION:
        found = document.get("version")
        raise _invalid(structure, f"version {found!r}; this mmgen reads {VERSION}")
    try:
        tensors = load_file(str(tensors_path))
    except FileNotFoundError:
        raise _invalid(tensors_path, "missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _invalid(tensors_path, f"not a safetensors file ({_first_line(exc)})") from None

    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        kind = value.get(_TAG)
        if kind is None:
            return {k: decode(v) for k, v in value.items()}
        if kind == "tuple":
            return tuple(decode(v) for v in value["items"])
        if kind == "dict":
            return {decode(k): decode(v) for k, v in value["items"]}
        if kind == "float":
            return float(value["value"])
        if kind == "tensor":
            return tensors[value["key"]]
        if kind == "ndarray":
            return tensors[value["key"]].numpy()
        raise ValueError(f"unknown tagged value {kind!r}")

    try:
        state = decode(document["state"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _invalid(structure, f"malformed ({type(exc).__name__}: {exc})") from None
    _check(state, structure)
    return state


# the keys the loop reads, with their types: a state that lacks one is not a checkpoint
_REQUIRED = {
    "step": int,
    "stage": int,
    "data": dict,
    "rng": list,
    "world_size": int,
}


def _check(state: Any, path: Path) -> None:
    if not isinstance(state, dict):
        raise _invalid(path, "malformed (the state is not an object)")
    for key, kind in _REQUIRED.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise _invalid(path, f"malformed ({key!r} missing or not {kind.__name__})")
    if state["step"] < 0 or not state["rng"]:
        raise _invalid(path, "malformed (negative step or no RNG state)")
    data = state["data"]
    if not all(isinstance(data.get(k), int) and data[k] >= 0 for k in ("epoch", "position")):
        raise _invalid(path, "malformed (data position)")


def _invalid(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a valid checkpoint: {why}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
