"""``MultimodalProcessor``: one dataset sample -> token ids, labels and processed modality items.

    processor = MultimodalProcessor(tokenizer, {"image": ImageProcessor(config)})
    sample = processor({"id": "x", "conversations": [...], "modalities": [...]})
    sample.input_ids, sample.labels, sample.items      # see mmgen.data.sample.ProcessedSample

Steps: read the row (``mmgen.data.rows``), render it to segments (the chat template or the plain
format, ``mmgen.data.chat``), find placeholders by string, tokenize the text between them, and
expand the i-th placeholder of a modality into ``num_embeddings`` copies of its placeholder id,
taking the i-th entry of that modality (loaded by its loader, then processed).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import mmgen.loaders  # noqa: F401  (registers raw-image and raw-audio)
from mmgen.constants import (
    IGNORE_INDEX,
    MODALITIES_KEY,
    MODALITY_VALUE_KEY,
    NUM_EMBEDDINGS_KEY,
    default_placeholder_id,
    default_placeholder_token,
)
from mmgen.data.chat import ASSISTANT, Segment, plain_segments, template_segments
from mmgen.data.rows import Entry, Row, parse_row
from mmgen.data.sample import ModalityItem, ProcessedSample, SampleSize, cut_point
from mmgen.data.skips import SkipLog
from mmgen.errors import ConfigError, DataError, reason_of
from mmgen.loaders._source import resolve_paths
from mmgen.modality.base import BaseModalityLoader, BaseModalityProcessor
from mmgen.modality.registry import AutoModalityLoader

logger = logging.getLogger("mmgen.data")

# errors a loader or processor raises for bad data (anything else is a bug and keeps its type)
_DATA_ERRORS = (DataError, OSError, ValueError)


class MultimodalProcessor:
    """Turns dataset samples into ``ProcessedSample``s for one tokenizer and set of modalities.

    Args:
        tokenizer: a transformers tokenizer. Its chat template is used when it has one.
        processors: modality name (the dataset's ``"type"``) -> its ``BaseModalityProcessor``.
        loaders: name -> loader or registered loader name. Default:
            ``processor.config.loader`` if set, else ``"raw-<config.modality_type>"``. Options a
            loader lists in ``processor_options`` (e.g. raw-audio's ``sampling_rate``) are taken
            from the processor, its config or its ``feature_extractor`` when the loader has none.
        placeholder_tokens: name -> the text that marks an item (default ``"<name>"``).
        placeholder_ids: name -> the id its positions hold (default ``-1000 - k`` for the k-th
            modality). Never a tokenizer id, so the vocabulary is not resized.
        max_length: most tokens per sample (``None``: no limit).
        truncation: ``"shorten"`` cuts a longer sample at a modality-instance boundary;
            ``"error"`` rejects it with a ``DataError``.
        on_error: ``"raise"`` a ``DataError`` for a bad sample, or ``"skip"`` it: ``__call__``
            returns ``None`` and counts it in ``self.skipped``.
        chat_template: ``"auto"`` (the tokenizer's template, else the plain format), ``"plain"``
            (always the plain format, see ``mmgen.data.chat.plain_segments``) or a Jinja template.
        boundary_tokens: name -> ``(start, end)`` tokens around each of its items (either may be
            ``None``), as Qwen2-VL's ``<|vision_start|>``; each must be one token of the
            tokenizer (``add_boundary_tokens`` adds new ones). Default: the processor config's
            ``boundary_start`` and ``boundary_end``.
    """

    def __init__(
        self,
        tokenizer: Any,
        processors: Mapping[str, BaseModalityProcessor],
        *,
        loaders: Mapping[str, str | BaseModalityLoader] | None = None,
        placeholder_tokens: Mapping[str, str] | None = None,
        placeholder_ids: Mapping[str, int] | None = None,
        max_length: int | None = None,
        truncation: Literal["shorten", "error"] = "shorten",
        on_error: Literal["raise", "skip"] = "raise",
        chat_template: str = "auto",
        boundary_tokens: Mapping[str, tuple[str | None, str | None]] | None = None,
    ) -> None:
        if not processors:
            raise ConfigError("MultimodalProcessor needs at least one modality processor")
        for name, processor in processors.items():
            if not isinstance(processor, BaseModalityProcessor):
                raise TypeError(f"processors[{name!r}] must be a BaseModalityProcessor")
        self.tokenizer = tokenizer
        self.processors = dict(processors)
        self.names = list(self.processors)
        for option, given in (("loaders", loaders), ("placeholder_tokens", placeholder_tokens),
                              ("placeholder_ids", placeholder_ids)):  # fmt: skip
            unknown = set(given or {}) - set(self.names)
            if unknown:
                raise ConfigError(f"{option} names unknown modalities {sorted(unknown)}")
        loaders, tokens, ids = loaders or {}, placeholder_tokens or {}, placeholder_ids or {}
        self.loaders = {n: self._loader(n, loaders.get(n)) for n in self.names}
        self.placeholder_tokens = {
            n: tokens.get(n) or default_placeholder_token(n) for n in self.names
        }
        self.placeholder_ids = {
            n: int(ids.get(n, default_placeholder_id(k))) for k, n in enumerate(self.names)
        }
        self._check_placeholders()
        given = boundary_tokens or {}
        self.boundary_tokens = {
            n: tuple(given[n]) if n in given else boundary_of(self.processors[n].config)
            for n in self.names
        }
        self._check_boundary_tokens()
        by_length = sorted(self.placeholder_tokens.values(), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(token) for token in by_length))
        self._name_of = {token: name for name, token in self.placeholder_tokens.items()}
        if max_length is not None and max_length < 1:
            raise ConfigError(f"max_length must be >= 1, got {max_length}")
        if truncation not in ("shorten", "error"):
            raise ConfigError(f"truncation must be 'shorten' or 'error', got {truncation!r}")
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.max_length, self.truncation, self.on_error = max_length, truncation, on_error
        self.chat_template = chat_template
        self.template = self._template(chat_template)
        self.skipped = SkipLog()
        self._boundaries_checked = False

    # -- public --------------------------------------------------------------------------------

    def __call__(self, sample: Mapping[str, Any], **kwargs: Any) -> ProcessedSample | None:
        """``process`` honouring ``on_error``: a skipped sample returns ``None``."""
        return self.skipped.attempt(self.on_error, self.process, sample, **kwargs)

    def process(
        self,
        sample: Mapping[str, Any],
        *,
        origin: str | None = None,
        base_dir: str | Path | None = None,
        generation: bool = False,
    ) -> ProcessedSample:
        """Process one dataset row; raises ``DataError`` for a bad one.

        Args:
            origin: where the row came from (``"train.jsonl:7"``), for error messages and as
                the id of a row without ``"id"``.
            base_dir: folder that relative modality paths are relative to (the dataset's).
            generation: render a prompt for the model to answer (template's generation prompt,
                no end-of-text for ``text`` rows); every label is ``-100``. A final assistant
                turn is left out (it is the reference answer of an evaluation row).
        """
        row, segments, pieces = self._prepare(sample, origin, generation)
        texts = [piece for piece, _ in pieces if isinstance(piece, str)]
        encoded = iter(self._tokenize(texts))
        entries = {n: iter([e for e in row.modalities if e.modality == n]) for n in self.names}
        base = Path(base_dir) if base_dir is not None else None
        ids: list[int] = []
        labels: list[int] = []
        items: list[ModalityItem] = []
        for piece, trainable in pieces:
            if isinstance(piece, str):
                tokens = list(next(encoded))
                ids += tokens
                labels += tokens if trainable and not generation else [IGNORE_INDEX] * len(tokens)
                continue
            item = self._item(row, next(entries[piece.name]), base, start=len(ids))
            ids += [self.placeholder_ids[item.modality]] * item.num_embeddings
            labels += [IGNORE_INDEX] * item.num_embeddings
            items.append(item)
        if not self._boundaries_checked and not items and row.turns is not None:
            self._check_boundaries(segments, ids)
        result = ProcessedSample(
            id=row.id,
            input_ids=torch.tensor(ids, dtype=torch.long),
            labels=torch.tensor(labels, dtype=torch.long),
            items=items,
        )
        return self._fit(result, row, generation)

    def render(
        self, sample: Mapping[str, Any], *, origin: str | None = None, generation: bool = False
    ) -> str:
        """The text ``sample`` is tokenized from (the chat template or the plain format), its
        placeholders as they are: with ``generation``, the prompt the model answers."""
        _, segments, _ = self._prepare(sample, origin, generation)
        return "".join(segment.text for segment in segments)

    def measure(
        self,
        samples: Sequence[tuple[Mapping[str, Any], str | None, str | Path | None]],
        *,
        headers: bool = True,
    ) -> list[SampleSize | DataError]:
        """What ``process`` would make of each ``(sample, origin, base_dir)`` — its length and
        item spans, after truncation — without loading the values whose processor can count
        them (``BaseModalityProcessor.count``); the others are processed. The texts of all the
        samples are tokenized in one batched call. A bad sample gives its ``DataError``.

        ``headers``: read each item's header even when its count does not need it
        (``BaseModalityLoader.measure``), so a missing or unreadable file is found now; with
        ``False`` a counted item's value is not touched at all."""
        prepared: list[Any] = []
        for sample, origin, base_dir in samples:
            try:
                row, _, pieces = self._prepare(sample, origin, generation=False)
                prepared.append((row, pieces, Path(base_dir) if base_dir is not None else None))
            except DataError as error:
                prepared.append(error)
        texts = [
            piece for entry in prepared if not isinstance(entry, DataError)
            for piece, _ in entry[1] if isinstance(piece, str)
        ]  # fmt: skip
        counts = iter(self._count_tokens(texts))
        sizes: list[SampleSize | DataError] = []
        for entry in prepared:
            if isinstance(entry, DataError):
                sizes.append(entry)
                continue
            row, pieces, base = entry
            text = [next(counts) for piece, _ in pieces if isinstance(piece, str)]
            try:
                sizes.append(self._size(row, pieces, text, base, headers))
            except DataError as error:
                sizes.append(error)
        return sizes

    def _size(
        self, row: Row, pieces, text: list[int], base: Path | None, headers: bool
    ) -> SampleSize:
        entries = {n: iter([e for e in row.modalities if e.modality == n]) for n in self.names}
        texts = iter(text)
        length, spans, names, learnt = 0, [], [], []  # learnt: (start, end) of trained text
        for piece, trainable in pieces:
            if isinstance(piece, str):
                count = next(texts)
                if trainable:
                    learnt.append((length, length + count))
                length += count
                continue
            count = self._count(row, next(entries[piece.name]), base, length, headers)
            spans.append((length, length + count))
            names.append(piece.name)
            length += count
        if length == 0:
            raise DataError(f"{row.where}: has no tokens")
        full = length
        if self.max_length is not None and length > self.max_length:
            if self.truncation == "error":
                raise DataError(
                    f"{row.where}: {length} tokens, more than max_length={self.max_length}"
                )
            cut = cut_point(spans, length, self.max_length)
            if cut == 0:
                raise DataError(
                    f"{row.where}: cannot shorten to max_length={self.max_length}"
                    " without cutting through its first modality instance"
                )
            length, spans = cut, [span for span in spans if span[1] <= cut]
            names = names[: len(spans)]
        targets = sum(max(0, min(end, length) - start) for start, end in learnt)
        return SampleSize(row.id, length, tuple(spans), tuple(names), targets, full)

    def _count(self, row: Row, entry: Entry, base: Path | None, start: int, headers: bool) -> int:
        """An item's num_embeddings: counted by its processor, or by processing it."""
        name = entry.modality
        data = resolve_paths(entry.data, base)
        measured: list[Any] = []

        def measure() -> dict[str, Any] | None:  # read once, however often asked
            if not measured:
                measured.append(self.loaders[name].measure(data))
            return measured[0]

        try:
            if headers:
                measure()
            count = self.processors[name].count(data, measure)
        except _DATA_ERRORS as exc:
            raise DataError(f"{row.where}: field {entry.field} ({name}): {exc}") from exc
        if count is None:
            return self._item(row, entry, base, start).num_embeddings
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise DataError(f"{row.where}: field {entry.field} ({name}): {count!r} embeddings")
        return count

    def _prepare(self, sample: Mapping[str, Any], origin: str | None, generation: bool):
        """The row, its rendered segments, and the pieces between its placeholders."""
        row = parse_row(
            sample, names=self.names, origin=origin, placeholders=self.placeholder_tokens
        )
        if generation and row.turns and row.turns[-1].role == ASSISTANT:
            row = replace(row, turns=row.turns[:-1])
            if not row.turns:
                raise DataError(
                    f"{row.where}: nothing to answer: the conversation is one assistant turn",
                    reason="malformed row",
                )
        try:
            segments = self._segments(row, generation)
        except DataError as exc:
            raise DataError(f"{row.where}: {exc}", reason=reason_of(exc)) from None
        pieces = self._pieces(segments)
        self._check_counts(row, pieces)
        return row, segments, pieces

    def _count_tokens(self, texts: list[str]) -> list[int]:
        """How many tokens each text makes (what ``_tokenize`` would give, counted): a fast
        tokenizer's backend counts without building Python lists of ids."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        plain = backend is not None and backend.truncation is None and backend.padding is None
        if plain and hasattr(backend, "encode_batch_fast") and texts:
            return [len(encoded) for encoded in backend.encode_batch_fast(
                texts, add_special_tokens=False)]  # fmt: skip
        return [len(tokens) for tokens in self._tokenize(texts)]

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        # one batched call per sample: fast tokenizers encode the pieces in parallel
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    @property
    def pad_token_id(self) -> int:
        """The id padded layouts fill with: the tokenizer's pad, else its eos, else 0."""
        for name in ("pad_token_id", "eos_token_id"):
            value = getattr(self.tokenizer, name, None)
            if value is not None:
                return int(value)
        return 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable options (with the tokenizer and processors, rebuilds ``self``)."""
        return {
            "loaders": {name: loader.name for name, loader in self.loaders.items()},
            "placeholder_tokens": dict(self.placeholder_tokens),
            "placeholder_ids": dict(self.placeholder_ids),
            "boundary_tokens": {n: list(t) for n, t in self.boundary_tokens.items() if any(t)},
            "max_length": self.max_length,
            "truncation": self.truncation,
            "on_error": self.on_error,
            "chat_template": self.chat_template,
        }

    # -- construction --------------------------------------------------------------------------

    def _loader(self, name: str, given: str | BaseModalityLoader | None) -> BaseModalityLoader:
        processor = self.processors[name]
        if isinstance(given, BaseModalityLoader):
            loader = given
        else:
            if given is None:
                config = getattr(processor, "config", None)
                given = getattr(config, "loader", None)
                kind = getattr(config, "modality_type", None)
                if given is None and kind is None:
                    raise ConfigError(
                        f"modality {name!r}: its processor's config has no modality_type or"
                        f" loader; pass loaders={{{name!r}: 'raw-...'}}"
                    )
                given = given or f"raw-{kind}"
            try:
                loader = AutoModalityLoader.from_name(given)
            except KeyError as exc:
                raise ConfigError(f"modality {name!r}: {exc.args[0]}") from None
        for option in getattr(loader, "processor_options", ()):
            if getattr(loader, option, None) is None:
                value = _processor_option(processor, option)
                if value is not None:
                    setattr(loader, option, value)
                    loader.options[option] = value
        return loader

    def _check_placeholders(self) -> None:
        tokens, ids = list(self.placeholder_tokens.values()), list(self.placeholder_ids.values())
        if len(set(tokens)) != len(tokens) or len(set(ids)) != len(ids):
            raise ConfigError(f"placeholders must differ per modality: {self.placeholder_tokens}"
                              f" -> {self.placeholder_ids}")  # fmt: skip
        vocab = len(self.tokenizer)
        for name, pid in self.placeholder_ids.items():
            if 0 <= pid < vocab:
                raise ConfigError(
                    f"placeholder id {pid} of {name!r} is a tokenizer id (vocabulary size"
                    f" {vocab}); placeholder ids must lie outside the vocabulary (e.g. negative)"
                )

    def _template(self, chat_template: str) -> str | None:
        if chat_template == "plain":
            return None
        if chat_template == "auto":
            has = getattr(self.tokenizer, "chat_template", None)
            return self.tokenizer.get_chat_template() if has else None
        if "{" not in chat_template:
            raise ConfigError("chat_template must be 'auto', 'plain' or a Jinja template")
        return chat_template

    # -- per sample ----------------------------------------------------------------------------

    def _segments(self, row: Row, generation: bool) -> list[Segment]:
        tok = self.tokenizer
        if row.turns is None:  # a plain text row: every text token is learnt
            eos = None if generation else tok.eos_token
            parts = [Segment(tok.bos_token, False)] if tok.bos_token else []
            return [*parts, Segment(row.text, True)] + ([Segment(eos, True)] if eos else [])
        if self.template is None:
            return plain_segments(
                row.turns, bos=tok.bos_token, eos=tok.eos_token or tok.sep_token,
                generation=generation,
            )  # fmt: skip
        return template_segments(tok, self.template, row.turns, generation=generation)

    def _pieces(self, segments: list[Segment]) -> list[tuple[str | _Placeholder, bool]]:
        """Split segments at placeholders: text pieces and ``_Placeholder`` markers, in order."""
        pieces: list[tuple[str | _Placeholder, bool]] = []
        for segment in segments:
            cursor = 0
            for match in self._pattern.finditer(segment.text):
                if match.start() > cursor:
                    pieces.append((segment.text[cursor : match.start()], segment.trainable))
                name = self._name_of[match.group()]
                start, end = self.boundary_tokens[name]
                if start is not None:  # boundary tokens: one token each, never learnt
                    pieces.append((start, False))
                pieces.append((_Placeholder(name), False))
                if end is not None:
                    pieces.append((end, False))
                cursor = match.end()
            if cursor < len(segment.text):
                pieces.append((segment.text[cursor:], segment.trainable))
        return pieces

    def _check_boundary_tokens(self) -> None:
        for name, tokens in self.boundary_tokens.items():
            for token in tokens:
                if token is None:
                    continue
                if token in self.placeholder_tokens.values():
                    raise ConfigError(f"boundary token {token!r} of {name!r} is a placeholder")
                ids = self.tokenizer(token, add_special_tokens=False)["input_ids"]
                if len(ids) != 1:
                    raise ConfigError(
                        f"boundary token {token!r} of {name!r} is {len(ids)} tokens of the"
                        " tokenizer, not one: add it first (mmgen.data.add_boundary_tokens)"
                    )

    def _check_counts(self, row: Row, pieces: list[tuple[str | _Placeholder, bool]]) -> None:
        found = Counter(p.name for p, _ in pieces if isinstance(p, _Placeholder))
        given = Counter(entry.modality for entry in row.modalities)
        for name in self.names:
            if found[name] != given[name]:
                fields = {e.field.split("[")[0] for e in row.modalities if e.modality == name}
                listed = ", ".join(sorted(fields)) or MODALITIES_KEY
                raise DataError(
                    f"{row.where}: field {row.text_field} has {found[name]}"
                    f" {self.placeholder_tokens[name]} placeholder(s) but {listed} has"
                    f" {given[name]} {name!r} entr{'y' if given[name] == 1 else 'ies'}",
                    reason="placeholder mismatch",
                )

    def _item(self, row: Row, entry: Entry, base: Path | None, start: int) -> ModalityItem:
        name = entry.modality
        data = resolve_paths(entry.data, base)
        try:
            raw = self.loaders[name](data)
            if not _all_finite(raw):
                raise DataError("the loaded value holds NaN or infinite numbers")
            out = self.processors[name].process({**data, MODALITY_VALUE_KEY: raw})
            if isinstance(out, Mapping) and not _all_finite(out.get(MODALITY_VALUE_KEY)):
                raise DataError("the processed value holds NaN or infinite numbers")
        except _DATA_ERRORS as exc:
            raise DataError(f"{row.where}: field {entry.field} ({name}): {exc}") from exc
        if not isinstance(out, Mapping) or MODALITY_VALUE_KEY not in out:
            raise TypeError(
                f"{type(self.processors[name]).__name__}.process must return a dict with"
                f" {MODALITY_VALUE_KEY!r} and {NUM_EMBEDDINGS_KEY!r}"
            )
        count = out.get(NUM_EMBEDDINGS_KEY)
        if isinstance(count, torch.Tensor):
            count = count.item()
        if not isinstance(count, int) or isinstance(count, bool):
            raise TypeError(f"{NUM_EMBEDDINGS_KEY} of {name!r} must be an int, got {count!r}")
        if count < 1:
            raise DataError(f"{row.where}: field {entry.field} ({name}): {count} embeddings")
        return ModalityItem(name, out[MODALITY_VALUE_KEY], count, start)

    def _check_boundaries(self, segments: list[Segment], ids: list[int]) -> None:
        """Once, on the first conversation without modalities: tokens made per segment should be
        those of the whole rendered text, or training sees other tokens than generation does."""
        self._boundaries_checked = True
        whole = self._tokenize(["".join(segment.text for segment in segments)])[0]
        if list(whole) != ids:
            pairs = enumerate(zip(whole, ids, strict=False))  # lengths may differ
            at = next((i for i, (a, b) in pairs if a != b), min(len(whole), len(ids)))
            logger.warning(
                "the chat format splits a token at a turn boundary (first difference at token"
                " %d): training tokens differ from those of the rendered conversation; a template"
                " whose turns end in special tokens avoids this",
                at,
            )

    def _fit(self, sample: ProcessedSample, row: Row, generation: bool = False) -> ProcessedSample:
        if sample.length == 0:
            raise DataError(f"{row.where}: has no tokens")
        if self.max_length is None or sample.length <= self.max_length:
            return sample
        if generation:  # a prompt cut short asks another question
            raise DataError(
                f"{row.where}: a prompt of {sample.length} tokens, more than"
                f" max_length={self.max_length}"
            )
        if self.truncation == "error":
            raise DataError(
                f"{row.where}: {sample.length} tokens, more than max_length={self.max_length}"
            )
        return sample.truncate(self.max_length)


class _Placeholder:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _all_finite(value: Any) -> bool:
    """False when a tensor or array in ``value`` (nested in dicts and lists too) holds NaN or
    inf: such a sample would turn the loss NaN for the rest of the run."""
    if isinstance(value, torch.Tensor):
        return not (value.is_floating_point() or value.is_complex()) or bool(
            torch.isfinite(value).all()
        )
    if isinstance(value, np.ndarray):
        return not np.issubdtype(value.dtype, np.inexact) or bool(np.isfinite(value).all())
    if isinstance(value, Mapping):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def _processor_option(processor: BaseModalityProcessor, option: str) -> Any:
    for owner in (processor, getattr(processor, "config", None),
                  getattr(processor, "feature_extractor", None)):  # fmt: skip
        value = getattr(owner, option, None) if owner is not None else None
        if value is not None:
            return value
    return None


def boundary_of(config: Any) -> tuple[str | None, str | None]:
    """A modality config's ``(boundary_start, boundary_end)`` tokens (``None`` where unset)."""
    tokens = (getattr(config, "boundary_start", None), getattr(config, "boundary_end", None))
    return tuple(t if isinstance(t, str) and t else None for t in tokens)  # type: ignore[return-value]


def add_boundary_tokens(tokenizer: Any, configs: Mapping[str, Any]) -> list[str]:
    """Add the boundary tokens of the modality ``configs`` that ``tokenizer`` lacks, as special
    tokens (never split, never merged with their neighbours); return the ones added. The LLM's
    embedding table must then grow to ``len(tokenizer)`` rows."""
    wanted = [t for config in configs.values() for t in boundary_of(config) if t is not None]
    vocab = tokenizer.get_vocab()
    new = list(dict.fromkeys(t for t in wanted if t not in vocab))
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    return new
