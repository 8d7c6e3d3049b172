"""Reading an offline W&B run back: ``<dir>/wandb/offline-run-*/run-<id>.wandb``.

wandb 0.31 ships no Python reader of its run files (the Go ``wandb-core`` writes them and
``wandb sync`` uploads them). The file is a LevelDB-style log (a 7-byte header ``:W&B``, magic,
version; then 32 KiB blocks of chunks, each ``crc32 (uint32), length (uint16), type (uint8)``
and its bytes: full, or first/middle/last parts of one record) of ``wandb_internal_pb2.Record``
protobufs, the schema wandb ships in ``wandb.proto``. This reads it, checking every chunk's
CRC, as wandb's own Python reader did before 0.19.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 32 * 1024
_HEADER = struct.Struct("<4sHB")  # ":W&B", 0xBEE1, version
_CHUNK = struct.Struct("<IHB")  # crc32 of (type byte + data), length, type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    run_id: str
    project: str
    name: str
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per logged row

    def series(self, key: str) -> dict[int, Any]:
        """step -> value of ``key`` in the rows that hold it."""
        return {row["_step"]: row[key] for row in self.history if key in row}


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _version = _HEADER.unpack_from(data)
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path}: not a W&B run file"
    found, parts, position = [], [], _HEADER.size
    while position + _CHUNK.size <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < _CHUNK.size:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        crc, length, kind = _CHUNK.unpack_from(data, position)
        if kind == 0 and length == 0:  # zero padding to the end of the block
            position += left
            continue
        body = data[position + _CHUNK.size : position + _CHUNK.size + length]
        assert zlib.crc32(body, zlib.crc32(bytes([kind]))) == crc, f"{path}: bad chunk crc"
        position += _CHUNK.size + length
        parts.append(body)
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            found.append(record)
            parts = []
    return found


def read_offline_run(path: Path) -> OfflineRun:
    run = None
    config: dict[str, Any] = {}
    history = []
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            for item in run.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            history.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                 for item in record.history.item}
            )  # fmt: skip
    assert run is not None, f"{path}: no run record"
    return OfflineRun(run.run_id, run.project, run.display_name, list(run.tags), config, history)


def offline_runs(folder: Path) -> list[Path]:
    """The run files under ``folder/wandb``, oldest first."""
    found = Path(folder).glob("wandb/offline-run-*/run-*.wandb")
    return sorted(found, key=lambda path: (path.stat().st_mtime, path.parent.name))
