"""``mmgen serve`` through the official ``openai`` client: answers, streaming, audio and image
parts, concurrent requests batched together with the answers they get alone; every malformed
request a 4xx JSON error, and the server still answers after it."""

from __future__ import annotations

import base64
import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

import mmgen
from mmgen.serve.app import create_app
from mmgen.serve.app import running as serving


@contextlib.contextmanager
def running(run: Path, **options):
    """A live server for ``run`` on a free port: ``(base_url, app)``."""
    app = create_app(mmgen.load(run), model_name="m", **options)
    with serving(app, startup_seconds=30) as url:
        yield url, app


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=60)


def audio_part(audio_data: Path, n: int = 0) -> dict:
    data = (audio_data / f"media/test-{n:05d}.wav").read_bytes()
    return {"type": "input_audio",
            "input_audio": {"data": base64.b64encode(data).decode(), "format": "wav"}}  # fmt: skip


def ask(part: dict, text: str = "What notes are played in ") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, part,
                                         {"type": "text", "text": "?"}]}]  # fmt: skip


@pytest.fixture(scope="module")
def audio_server(trained_run, audio_data):
    with running(trained_run, allowed_media_dirs=[audio_data], max_batch_size=8,
                 batch_wait_ms=50) as found:  # fmt: skip
        yield found


def test_answers_are_what_the_model_generates(audio_server, trained_run, audio_data) -> None:
    base, _ = audio_server
    api = client(base)
    assert [m.id for m in api.models.list().data] == ["m"]
    reply = api.chat.completions.create(model="m", messages=ask(audio_part(audio_data)),
                                        temperature=0, max_tokens=6)  # fmt: skip
    choice = reply.choices[0]
    row = {"messages": ask(audio_part(audio_data))}
    expected = mmgen.load(trained_run).generate([row], max_new_tokens=6)[0]
    assert choice.message.content == expected.text and choice.message.role == "assistant"
    assert choice.finish_reason == expected.finish_reason
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    assert reply.usage.completion_tokens == expected.completion_tokens
    assert reply.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens


def test_streaming_gives_the_same_text(audio_server, audio_data) -> None:
    base, _ = audio_server
    api = client(base)
    options = {"model": "m", "messages": ask(audio_part(audio_data, 1)), "temperature": 0,
               "max_tokens": 8, "extra_body": {"ignore_eos": True}}  # fmt: skip
    whole = api.chat.completions.create(**options).choices[0].message.content
    chunks = list(api.chat.completions.create(**options, stream=True,
                                              stream_options={"include_usage": True}))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and whole  # words, not only end tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_a_file_url_is_read_only_inside_the_allowed_folder(
    audio_server, audio_data, tmp_path
) -> None:
    base, _ = audio_server
    api = client(base)
    inside = {"type": "audio", "audio": (audio_data / "media/test-00002.wav").as_uri()}
    by_path = api.chat.completions.create(model="m", messages=ask(inside), temperature=0,
                                          max_tokens=4)  # fmt: skip
    data = api.chat.completions.create(model="m", messages=ask(audio_part(audio_data, 2)),
                                       temperature=0, max_tokens=4)  # fmt: skip
    assert by_path.choices[0].message.content == data.choices[0].message.content
    outside = tmp_path / "secret.wav"
    outside.write_bytes((audio_data / "media/test-00002.wav").read_bytes())
    for path in (outside.as_uri(), str(audio_data / "media/../../" / outside.name)):
        with pytest.raises(openai.BadRequestError, match="outside the folders this server"):
            api.chat.completions.create(model="m", messages=ask({"type": "audio", "audio": path}))


def test_concurrent_requests_are_batched_with_the_answers_they_get_alone(
    audio_server, audio_data
) -> None:
    base, app = audio_server
    api = client(base)

    def one(n: int) -> str:
        reply = api.chat.completions.create(model="m", messages=ask(audio_part(audio_data, n)),
                                            temperature=0, max_tokens=6)  # fmt: skip
        return reply.choices[0].message.content

    alone = [one(n) for n in range(8)]
    before = app.state.batcher.stats.largest
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(one, range(8)))
    assert together == alone
    assert app.state.batcher.stats.largest > max(before, 1)  # several generated in one batch


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "the body is not JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"model": "m"}', 400, "messages: Field required"),
        (b'{"model": "m", "messages": []}', 400, "messages: List should have at least 1 item"),
        (b'{"model": "x", "messages": [{"role": "user", "content": "hi"}]}', 404,
         "model 'x' does not exist"),
        (b'{"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}', 400,
         "messages.0.role"),
        (b'{"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}', 400, "n:"),
        (b'{"model": "m", "temperature": -1, "messages": [{"role": "user", "content": "a"}]}',
         400, "temperature"),
        (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio",'
         b' "input_audio": {"data": "!!!", "format": "wav"}}]}]}', 400, "malformed base64"),
        (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio",'
         b' "input_audio": {"data": "AAAA", "format": "wav"}}]}]}', 400, "field messages"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "<audio> twice"}]}', 400,
         "placeholder"),
        (b'{"model": "m", "max_tokens": 100000, "messages": [{"role": "user", "content": "a"}]}',
         400, "context"),
        (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url",'
         b' "image_url": {"url": "http://example.com/x.png"}}]}]}', 400, "not a modality here"),
    ],
)  # fmt: skip
def test_malformed_requests_get_4xx_and_the_server_lives(
    audio_server, audio_data, body, status, message
) -> None:
    base, _ = audio_server
    reply = httpx.post(f"{base}/v1/chat/completions", content=body,
                       headers={"content-type": "application/json"}, timeout=60)  # fmt: skip
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"
    ok = client(base).chat.completions.create(model="m", messages=ask(audio_part(audio_data)),
                                              temperature=0, max_tokens=2)  # fmt: skip
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_size_limits_and_unknown_routes(trained_run) -> None:
    with running(trained_run, max_request_bytes=1000) as (base, _):
        big = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"a" * 2000 + b'"}]}'
        reply = httpx.post(f"{base}/v1/chat/completions", content=big, timeout=30)
        assert reply.status_code == 413 and "limit" in reply.json()["error"]["message"]
        assert httpx.get(f"{base}/v1/nothing", timeout=30).status_code == 404
        assert httpx.get(f"{base}/v1/chat/completions", timeout=30).status_code == 405
        with pytest.raises(openai.BadRequestError, match="not accepted by this server"):
            part = {"type": "audio", "audio": "/etc/passwd"}
            client(base).chat.completions.create(model="m", messages=ask(part))


def test_an_image_part(image_run) -> None:
    from PIL import Image

    buffer = __import__("io").BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    part = {"type": "image_url", "image_url": {"url": url}}
    with running(image_run) as (base, _):
        reply = client(base).chat.completions.create(
            model="m", messages=ask(part, "What shape is in "), temperature=0, max_tokens=4
        )
    expected = mmgen.load(image_run).generate([{"messages": ask(part, "What shape is in ")}],
                                              max_new_tokens=4)[0]  # fmt: skip
    assert reply.choices[0].message.content == expected.text
    assert reply.usage.prompt_tokens == expected.prompt_tokens
