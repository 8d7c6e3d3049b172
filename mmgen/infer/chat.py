"""A multi-turn chat with a trained model, as ``mmgen chat`` runs it in the terminal.

    session = ChatSession(mmgen.load("runs/demo"), GenerationOptions(max_new_tokens=64))
    session.handle("/audio data/clip.wav")           # attached to the next message
    reply = session.handle("What notes are played?")  # the model's answer (streamed to on_text)
    session.handle("What is in <image> photo.png")   # a placeholder followed by a path
    session.handle("/reset")                         # a new conversation

Media is attached by path, with ``/<modality> PATH`` or the modality's placeholder followed by
the path in the message; relative paths start at the working directory. The history holds
OpenAI-style messages with content parts, processed as a dataset row each turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgen.errors import DataError, MmgenError
from mmgen.model.generation import GenerationOptions, TextStream, check_fits, generate

HELP = (
    "/<modality> PATH attaches media to your next message (or write the placeholder, then the"
    " path); /reset starts over; /exit (or Ctrl-D) leaves"
)


@dataclass
class Turn:
    """What ``handle`` did: ``reply`` is the model's answer (None for a command), ``note`` a
    line for the user (an attachment, an error, help), ``done`` asks to leave."""

    reply: str | None = None
    note: str | None = None
    done: bool = False


class ChatSession:
    def __init__(
        self,
        loaded: Any,
        options: GenerationOptions | None = None,
        *,
        system: str | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self.model, self.processor = loaded
        self.options = options or GenerationOptions()
        self.system = system
        self.on_text = on_text or (lambda piece: None)
        self.messages: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []  # media parts for the next user message
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.pending = []

    def handle(self, line: str) -> Turn:
        """One line of input: a command, or a message the model answers."""
        text = line.strip()
        if not text:
            return Turn()
        if text in ("/exit", "/quit"):
            return Turn(done=True)
        if text == "/reset":
            self.reset()
            return Turn(note="(a new conversation)")
        if text in ("/help", "/?"):
            return Turn(note=HELP)
        command, _, rest = text.partition(" ")
        if command.startswith("/") and command[1:] in self.processor.names:
            try:
                self.pending.append(self._part(command[1:], rest.strip()))
            except DataError as error:
                return Turn(note=f"error: {error}")
            return Turn(note=f"(attached {rest.strip()} as {command[1:]})")
        if command.startswith("/"):
            names = ", ".join(f"/{n}" for n in self.processor.names)
            return Turn(note=f"error: unknown command {command}; {names}, /reset, /exit")
        try:
            content = self._content(text)
        except DataError as error:
            return Turn(note=f"error: {error}")
        return self._answer(content)

    def _answer(self, content: list[dict[str, Any]]) -> Turn:
        messages = [*self.messages, {"role": "user", "content": content}]
        try:
            sample = self.processor.process({"messages": messages}, origin="chat",
                                            generation=True)  # fmt: skip
            check_fits(self.model, sample, self.options)
        except MmgenError as error:  # neither the message nor its media is kept: try again
            dropped = " (attachments dropped)" if self.pending else ""
            self.pending = []
            return Turn(note=f"error: {_first_line(error)}{dropped}")
        stream = TextStream(self.processor.tokenizer, self.options.stop)

        def on_token(row: int, token: int) -> None:
            piece = stream.add(token)
            if piece:
                self.on_text(piece)

        done = generate(self.model, self.processor, [sample], self.options, on_token=on_token)[0]
        rest = done.text[len(stream.sent) :] if done.text.startswith(stream.sent) else ""
        if rest:
            self.on_text(rest)
        self.messages = [*messages, {"role": "assistant", "content": done.text}]
        self.pending = []
        return Turn(reply=done.text)

    def _content(self, text: str) -> list[dict[str, Any]]:
        """The message's parts: the attached media first, then the text, where a placeholder
        followed by a path becomes that media."""
        parts = list(self.pending)
        tokens = {self.processor.placeholder_tokens[n]: n for n in self.processor.names}
        pattern = re.compile("(" + "|".join(re.escape(t) for t in tokens) + r")\s+(\S+)")
        cursor = 0
        for match in pattern.finditer(text):
            name, path = tokens[match.group(1)], match.group(2)
            if not Path(path).expanduser().is_file():
                continue  # a placeholder in plain text, not a path after it
            if match.start() > cursor:
                parts.append({"type": "text", "text": text[cursor : match.start()]})
            parts.append(self._part(name, path))
            cursor = match.end()
        if cursor < len(text):
            parts.append({"type": "text", "text": text[cursor:]})
        return parts

    def _part(self, name: str, path: str) -> dict[str, Any]:
        if not path:
            raise DataError(f"/{name} needs a path")
        found = Path(path).expanduser()
        if not found.is_file():
            raise DataError(f"{path}: no such file")
        return {"type": name, name: str(found.resolve())}


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
