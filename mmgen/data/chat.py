"""Rendering a conversation to text segments that know which characters the model learns.

With a chat template (the tokenizer's, or one passed to ``MultimodalProcessor``) the whole
conversation is rendered once and each assistant turn is located in it:

- templates with ``{% generation %}`` blocks: transformers reports those character spans;
- any other template is rendered per turn: assistant turn ``k`` spans from the end of
  ``template(turns[:k], add_generation_prompt=True)`` (its header) to the end of
  ``template(turns[:k+1])``. Both must be prefixes of the full rendering, so the segments always
  concatenate to exactly what the template renders; a template for which that fails (e.g. one that
  rewrites earlier turns) is reported with the turn, and needs ``{% generation %}`` markers or a
  ``chat_template`` override.

Trailing whitespace after an assistant turn's end token stays untrained: it is layout, not
something the model should learn to emit.

Without a template, the plain format (documented in ``plain_segments``) is used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmgen.data.rows import Turn
from mmgen.errors import ConfigError, DataError

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
ASSISTANT = "assistant"


@dataclass(frozen=True)
class Segment:
    text: str
    trainable: bool


def template_segments(
    tokenizer: Any, template: str, turns: Sequence[Turn], *, generation: bool = False
) -> list[Segment]:
    """Render ``turns`` with the Jinja ``template``; assistant turns are trainable (none are when
    ``generation`` adds the prompt for a new assistant turn)."""
    messages = [{"role": t.role, "content": t.content} for t in turns]
    if _GENERATION_TAG.search(template):
        full, spans = _generation_spans(tokenizer, template, messages, generation)
    else:
        full, spans = _prefix_spans(tokenizer, template, messages, generation)
    if generation:
        spans = []
    return _split(full, spans)


def plain_segments(
    turns: Sequence[Turn], *, bos: str | None, eos: str | None, generation: bool = False
) -> list[Segment]:
    """The fallback for tokenizers without a chat template::

        {bos}System: ...\\nUser: ...\\nAssistant: {answer}{eos}\\nUser: ...\\nAssistant: ...

    Each turn is ``"{Role}: {content}\\n"`` (role capitalised); an assistant turn ends with
    ``eos`` before the newline, and ``" {answer}{eos}"`` is what the model learns (the space
    belongs to the answer, as byte-level BPEs tokenize it). ``generation`` appends
    ``"Assistant:"`` for the model to continue.
    """
    segments = [Segment(bos, False)] if bos else []
    for turn in turns:
        header = f"{turn.role.capitalize()}:"
        if turn.role == ASSISTANT:
            segments += [Segment(header, False), Segment(f" {turn.content}{eos or ''}", True)]
            segments.append(Segment("\n", False))
        else:
            segments.append(Segment(f"{header} {turn.content}\n", False))
    if generation:
        segments.append(Segment(f"{ASSISTANT.capitalize()}:", False))
    return segments


def _render(tokenizer: Any, template: str, messages: list[dict], generation: bool) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=generation
        )
    except (TemplateError, ValueError) as exc:  # the template's raise_exception, no messages
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"the chat template refuses the conversation: {message}", reason="malformed row"
        ) from None


def _prefix_spans(
    tokenizer: Any, template: str, messages: list[dict], generation: bool
) -> tuple[str, list[tuple[int, int]]]:
    full = _render(tokenizer, template, messages, generation)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != ASSISTANT or generation:
            continue
        head = _render(tokenizer, template, messages[:k], True) if k else ""
        # the last turn's rendering is the whole conversation's (already at hand)
        last = k + 1 == len(messages)
        done = full if last else _render(tokenizer, template, messages[: k + 1], False)
        if not (full.startswith(done) and done.startswith(head)):
            raise ConfigError(
                f"the chat template does not render turn {k} (assistant) as a prefix of the whole"
                " conversation, so its tokens cannot be located; use a template with"
                " {% generation %} blocks, or pass chat_template=... (or 'plain')"
            )
        spans.append((len(head), len(done)))
    return full, spans


def _generation_spans(
    tokenizer: Any, template: str, messages: list[dict], generation: bool
) -> tuple[str, list[tuple[int, int]]]:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, indices = render_jinja_template(
        conversations=[messages],
        chat_template=template,
        return_assistant_tokens_mask=True,
        add_generation_prompt=generation,
        **tokenizer.special_tokens_map,
    )
    return rendered[0], [tuple(span) for span in indices[0]]


def _split(full: str, spans: list[tuple[int, int]]) -> list[Segment]:
    segments, cursor = [], 0
    for start, end in spans:
        trimmed = len(full[start:end].rstrip())
        if start > cursor:
            segments.append(Segment(full[cursor:start], False))
        if trimmed:
            segments.append(Segment(full[start : start + trimmed], True))
        cursor = start + trimmed
    if cursor < len(full):
        segments.append(Segment(full[cursor:], False))
    return segments
