"""Batched generation for many prompts with media: what ``mmgen predict``, ``eval``, ``chat`` and
``serve`` run.

    options = GenerationOptions(max_new_tokens=64, temperature=0.7, top_p=0.9, stop=("\\n\\n",))
    completions = generate(model, processor, samples, options)   # samples: processed prompts
    completions[0].text, completions[0].finish_reason, completions[0].completion_tokens

Prompts are left-padded into one batch (``mmgen.data.collator.left_padded``): each modality item
is encoded once, the merged prompt is prefilled, and decoding runs on the LLM's KV cache through
transformers' ``generate`` (greedy, or sampling with temperature / top-p / top-k, a repetition
penalty, stop strings). Position ids follow each row's own tokens, so a prompt's greedy output in
a batch is its output alone. ``on_token(row, token_id)`` streams each new token as it is made.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from mmgen.data.batch import to_device
from mmgen.data.collator import left_padded
from mmgen.errors import ConfigError, DataError


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode. ``temperature`` 0 is greedy (the other sampling options then do nothing).

    Attributes:
        max_new_tokens: most tokens generated per prompt.
        temperature: 0 for greedy; else the softmax temperature of sampling.
        top_p: nucleus sampling: the smallest set of tokens whose probability reaches ``top_p``.
        top_k: sample among the ``top_k`` likeliest tokens (0: all).
        repetition_penalty: > 1 makes tokens already in the prompt or output less likely.
        stop: strings that end a completion (left out of its text).
        seed: seeds sampling, for reproducible samples (None: the global generator).
        ignore_eos: generate ``max_new_tokens`` whatever the model says (benchmarks, vLLM's
            ``ignore_eos``); stop strings still end a completion.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        checks = (
            ("max_new_tokens", self.max_new_tokens >= 1, "must be >= 1"),
            ("temperature", 0 <= self.temperature <= 100, "must be in [0, 100]"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("top_k", self.top_k >= 0, "must be >= 0"),
            ("repetition_penalty", 0 < self.repetition_penalty <= 100, "must be in (0, 100]"),
        )
        for name, ok, why in checks:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not ok
                or (isinstance(value, float) and not math.isfinite(value))
            ):
                raise ConfigError(f"generation option {name}={value!r}: {why}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"generation option stop={self.stop!r}: non-empty strings only")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generate_kwargs(self) -> dict[str, Any]:
        """The matching keyword arguments of transformers' ``generate``."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p,
                          top_k=self.top_k)  # fmt: skip
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs

    def replace(self, **changes: Any) -> GenerationOptions:
        return replace(self, **changes)


@dataclass
class Completion:
    """One prompt's generated text."""

    text: str
    token_ids: list[int]  # the generated tokens kept (up to the end token or stop string)
    prompt_tokens: int
    finish_reason: Literal["stop", "length"]  # an end token or stop string, or max_new_tokens

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@torch.no_grad()
def generate(
    model: Any,
    processor: Any,
    samples: Sequence[Any],
    options: GenerationOptions | None = None,
    *,
    on_token: Callable[[int, int], None] | None = None,
) -> list[Completion]:
    """Completions of ``samples`` (``ProcessedSample`` prompts, from ``processor.process(row,
    generation=True)``), generated together in one batch."""
    options = options or GenerationOptions()
    if not samples:
        return []
    tokenizer = processor.tokenizer
    pad = processor.pad_token_id
    ends = set() if options.ignore_eos else _end_ids(tokenizer, model)
    for sample in samples:
        check_fits(model, sample, options)
    batch = to_device(left_padded(samples, pad), _device(model))
    kwargs = options.generate_kwargs()
    if options.stop:
        kwargs["stopping_criteria"] = _stop_criteria(options.stop, tokenizer)
    streamer = _Streamer(len(samples), ends, on_token) if on_token is not None else None
    seeded = options.seed is not None and not options.greedy
    # a seed draws from a forked generator: the caller's random state is left as it was
    devices = [] if batch["input_ids"].is_cpu else [batch["input_ids"].device]
    with torch.random.fork_rng(devices=devices) if seeded else contextlib.nullcontext():
        if seeded:
            torch.manual_seed(options.seed)
        output = model.generate(
            **batch, eos_token_id=sorted(ends) or None, pad_token_id=pad, streamer=streamer,
            **kwargs,
        )  # fmt: skip
    completions = []
    for sample, row in zip(samples, output.tolist(), strict=True):
        completions.append(_completion(row, sample.length, ends, tokenizer, options))
    return completions


def check_fits(model: Any, sample: Any, options: GenerationOptions) -> None:
    """A ``DataError`` when ``sample``'s prompt and its new tokens exceed the LLM's context."""
    text_config = model.language_model.config.get_text_config()
    context = getattr(text_config, "max_position_embeddings", None)
    if context is not None and sample.length + options.max_new_tokens > context:
        raise DataError(
            f"sample {sample.id!r}: a prompt of {sample.length} tokens plus max_new_tokens="
            f"{options.max_new_tokens} is more than the model's context of {context} tokens"
        )


def _completion(
    tokens: list[int], prompt: int, ends: set[int], tokenizer: Any, options: GenerationOptions
) -> Completion:
    kept, reason = tokens, "length"
    for i, token in enumerate(tokens):
        if token in ends:
            kept, reason = tokens[:i], "stop"
            break
    text = tokenizer.decode(kept, skip_special_tokens=True)
    for stop in options.stop:  # the earliest stop string ends the text (and is left out)
        at = text.find(stop)
        if at != -1:
            text, reason = text[:at], "stop"
            kept = _tokens_of(kept, text, tokenizer)
    return Completion(text, kept, prompt, reason)


def _tokens_of(tokens: list[int], text: str, tokenizer: Any) -> list[int]:
    """The shortest prefix of ``tokens`` that decodes to at least ``text``."""
    for n in range(len(tokens) + 1):
        if len(tokenizer.decode(tokens[:n], skip_special_tokens=True)) >= len(text):
            return tokens[:n]
    return tokens


def _stop_criteria(stops: tuple[str, ...], tokenizer: Any):
    """A row stops once the text of its last tokens holds a stop string. (transformers' own
    ``stop_strings`` needs a tokenizer whose tokens map to bytes, which not every one does.)"""
    from transformers import StoppingCriteria, StoppingCriteriaList

    # a stop string spans at most its length in tokens (every token decodes to >= 1 character
    # or to nothing), and a few more cover tokens that decode to nothing
    window = max(len(stop) for stop in stops) + 8

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            tails = tokenizer.batch_decode(input_ids[:, -window:], skip_special_tokens=True)
            done = [any(stop in tail for stop in stops) for tail in tails]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopOnText()])


def _end_ids(tokenizer: Any, model: Any) -> set[int]:
    """Tokens that end a completion: the tokenizer's eos, and the model's generation config's
    (chat models end a turn with their own token, e.g. ``<|im_end|>``)."""
    ends: set[int] = set()
    for source in (tokenizer.eos_token_id,
                   getattr(getattr(model.language_model, "generation_config", None),
                           "eos_token_id", None)):  # fmt: skip
        if isinstance(source, int):
            ends.add(source)
        elif isinstance(source, (list, tuple)):
            ends.update(int(s) for s in source)
    if not ends:
        raise ConfigError("the tokenizer has no eos token: generation could not end")
    return ends


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


class _Streamer:
    """transformers' streamer protocol for a batch: ``put`` gets each step's ``(B,)`` new tokens
    (the first call, the prompt, is skipped); rows that ended stream nothing more."""

    def __init__(self, rows: int, ends: set[int], on_token: Callable[[int, int], None]) -> None:
        self.ends, self.on_token = ends, on_token
        self.done = [False] * rows
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token in self.ends:
                self.done[row] = True
                continue
            self.on_token(row, token)

    def end(self) -> None:
        return


class TextStream:
    """Text of a token stream as it becomes final, for streaming it: ``add(token)`` returns the
    new text that can be shown, holding back an end that may be half a character or the start
    of a stop string, and nothing after a stop string. ``sent`` is all shown so far."""

    def __init__(self, tokenizer: Any, stops: Sequence[str]) -> None:
        self.tokenizer, self.stops = tokenizer, stops
        self.tokens: list[int] = []
        self.sent = ""
        self.stopped = False

    def add(self, token: int) -> str:
        if self.stopped:
            return ""
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        safe = len(text)
        for stop in self.stops:
            at = text.find(stop)
            if at != -1:
                safe, self.stopped = min(safe, at), True
            else:  # hold back an ending that could begin the stop string
                for n in range(min(len(stop) - 1, len(text)), 0, -1):
                    if text.endswith(stop[:n]):
                        safe = min(safe, len(text) - n)
                        break
        while safe and text[safe - 1] == "\ufffd":  # half a multi-byte character
            safe -= 1
        if safe <= len(self.sent) or not text.startswith(self.sent):
            return ""
        piece, self.sent = text[len(self.sent) : safe], text[:safe]
        return piece
