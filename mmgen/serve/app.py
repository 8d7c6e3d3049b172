"""The OpenAI-compatible app: ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON, or
server-sent events with ``stream: true``), ``GET /health``.

    app = create_app(mmgen.load("runs/demo"), model_name="demo", allowed_media_dirs=["data"])
    uvicorn.run(app, host="127.0.0.1", port=8000)

Every request is checked before it reaches the model: the body's size, its JSON, the fields
(``mmgen.serve.schema``), its content and media (``mmgen.serve.requests``), the prompt's length
against the context. A bad one gets OpenAI's error object with a 4xx status and the server goes
on; concurrent requests are generated together (``mmgen.serve.batcher``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from mmgen.errors import MmgenError
from mmgen.model.generation import GenerationOptions, TextStream, check_fits
from mmgen.serve.batcher import Batcher
from mmgen.serve.requests import prompt
from mmgen.serve.schema import ChatRequest

MAX_REQUEST_BYTES = 32 * 1024 * 1024  # base64 media makes requests large; this bounds them
DEFAULT_MAX_TOKENS = 256


class RequestError(Exception):
    """A request the server refuses: its status and OpenAI-style error fields."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def response(self) -> JSONResponse:
        error = {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, status_code=self.status)


def create_app(
    loaded: Any,
    *,
    model_name: str | None = None,
    allowed_media_dirs: Sequence[str | os.PathLike] = (),
    max_batch_size: int = 16,
    batch_wait_ms: float = 5.0,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> FastAPI:
    """The server's app for ``loaded`` (``mmgen.load``'s result)."""
    model, processor = loaded
    name = model_name or Path(loaded.path).resolve().parent.name
    allowed = [Path(os.path.realpath(folder)) for folder in allowed_media_dirs]
    for folder in allowed:
        if not folder.is_dir():
            raise MmgenError(f"--allowed-media-dir {folder}: not a folder")
    batcher = Batcher(model, processor, max_batch_size=max_batch_size, wait_ms=batch_wait_ms)
    created = int(time.time())
    app = FastAPI(title="mmgen", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return error.response()

    @app.exception_handler(404)
    async def not_found(request: Request, error: Exception) -> JSONResponse:
        message = f"no route {request.method} {request.url.path}"
        return RequestError(404, message, code="not_found").response()

    @app.exception_handler(405)
    async def not_allowed(request: Request, error: Exception) -> JSONResponse:
        message = f"{request.method} is not allowed on {request.url.path}"
        return RequestError(405, message, code="method_not_allowed").response()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = batcher.stats
        return {"status": "ok", "batches": stats.batches, "requests": stats.requests,
                "largest_batch": stats.largest}  # fmt: skip

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": name, "object": "model", "created": created, "owned_by": "mmgen"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await _body(request, max_request_bytes)
        chat = _parse(body)
        if chat.model != name:
            raise RequestError(404, f"model {chat.model!r} does not exist; this server has"
                               f" {name!r}", param="model", code="model_not_found")  # fmt: skip
        options = _options(chat)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"

        def prepare() -> Any:  # in the batcher's thread, with the round's other prompts
            sample, _ = prompt(chat, processor, allowed, request_id)
            check_fits(model, sample, options)
            return sample

        tokens: asyncio.Queue[int | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def on_token(token: int) -> None:  # called in the batcher's thread
            loop.call_soon_threadsafe(tokens.put_nowait, token)

        job = batcher.submit(prepare, options, on_token=on_token if chat.stream else None)
        try:
            await asyncio.wrap_future(job.prepared)
        except MmgenError as error:  # bad content: undecodable media, placeholders, length
            raise RequestError(400, _one_line(error), param="messages") from None
        head = {"id": request_id, "created": int(time.time()), "model": name}
        if chat.stream:
            usage = chat.stream_options is not None and chat.stream_options.include_usage
            job.result.add_done_callback(
                lambda _: loop.call_soon_threadsafe(tokens.put_nowait, None)
            )
            events = _stream(job, tokens, options, processor, head, usage)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})  # fmt: skip
        try:
            done = await asyncio.wrap_future(job.result)
        except MmgenError as error:
            raise RequestError(400, _one_line(error)) from None
        message = {"role": "assistant", "content": done.text}
        choice = {"index": 0, "message": message, "finish_reason": done.finish_reason,
                  "logprobs": None}  # fmt: skip
        return {**head, "object": "chat.completion", "choices": [choice],
                "usage": _usage(done)}  # fmt: skip

    return app


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body of {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"request body over the limit of {limit} bytes")
    return bytes(body)


def _parse(body: bytes) -> ChatRequest:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"the body must be a JSON object, got {type(data).__name__}")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        message = first["msg"].removeprefix("Value error, ")
        raise RequestError(400, f"{where}: {message}", param=where) from None


def _options(chat: ChatRequest) -> GenerationOptions:
    tokens = chat.max_completion_tokens or chat.max_tokens or DEFAULT_MAX_TOKENS
    try:
        return GenerationOptions(
            max_new_tokens=tokens, temperature=chat.temperature, top_p=chat.top_p,
            top_k=chat.top_k, repetition_penalty=chat.repetition_penalty, stop=chat.stops,
            seed=chat.seed, ignore_eos=chat.ignore_eos,
        )  # fmt: skip
    except MmgenError as error:
        raise RequestError(400, str(error)) from None


def _usage(done: Any) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}  # fmt: skip


def _one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


async def _stream(
    job: Any, tokens: asyncio.Queue, options: GenerationOptions, processor: Any,
    head: dict[str, Any], include_usage: bool,
) -> AsyncIterator[str]:  # fmt: skip
    """Server-sent events: a role chunk, content chunks as text becomes final, a last chunk
    with the finish reason (and usage when asked), then ``[DONE]``."""
    text = TextStream(processor.tokenizer, options.stop)

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        body = {**head, "object": "chat.completion.chunk", "choices": [choice], **extra}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    while (token := await tokens.get()) is not None:
        piece = text.add(token)
        if piece:
            yield chunk({"content": piece})
    try:
        done = job.result.result()
    except Exception as error:  # the batch failed: an error event, then the stream ends
        payload = {"error": {"message": _one_line(error), "type": "server_error"}}
        yield f"data: {json.dumps(payload)}\n\n"
        return
    # what is left (a decode of all tokens may differ from the pieces only past what was sent)
    rest = done.text[len(text.sent) :] if done.text.startswith(text.sent) else ""
    if rest:
        yield chunk({"content": rest})
    yield chunk({}, done.finish_reason)
    if include_usage:
        body = {**head, "object": "chat.completion.chunk", "choices": [], "usage": _usage(done)}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


@contextlib.contextmanager
def running(app: FastAPI, *, startup_seconds: float = 60.0) -> Iterator[str]:
    """``app`` served by uvicorn in a thread of this process on a free local port, for
    benchmarks and tests: yields its base URL; stops the server and the batcher after."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_seconds
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.batcher.close()
