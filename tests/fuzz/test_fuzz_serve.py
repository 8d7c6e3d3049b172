"""Fuzzed request bodies against a live ``mmgen serve`` (a one-step tiny run of the built-in
audio modality, served by ``mmgen.serve.app.running`` on a loopback port): a valid chat request
with random fields, values and content parts (text, audio and image parts with bad base64,
data URLs, paths inside and outside the allowed folder), random JSON, and random bytes.

Property: every answer is a 4xx with an OpenAI-shaped JSON error of one line, or a 200 with a
chat completion (or a stream of chunks ending in ``[DONE]``); never a 5xx; the server still
answers after every request; each example ends in bounded time.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx2 as httpx
import pytest
from helpers.fuzzing import bounded, fuzz, one_line
from hypothesis import event, given
from hypothesis import strategies as st

from tests.train.conftest import audio_data  # noqa: F401  (fixture)
from tests.train.helpers import make_config, write_config


@pytest.fixture(scope="module")
def server(audio_data, tmp_path_factory):  # noqa: F811
    import mmgen
    from mmgen.serve.app import create_app, running
    from mmgen.train.config import load_config
    from mmgen.train.loop import train

    folder = tmp_path_factory.mktemp("serve-fuzz")
    config = make_config(audio_data, folder / "run", stages=[{"name": "full", "steps": 1}])
    config["eval"] = {"accuracy_samples": 0, "max_new_tokens": 2}
    run = train(load_config(write_config(folder / "train.yaml", config))).output_dir
    app = create_app(mmgen.load(run), model_name="m", allowed_media_dirs=[audio_data])
    with running(app, startup_seconds=30) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client, audio_data


def wav(media: Path) -> str:
    return base64.b64encode((media / "media/test-00000.wav").read_bytes()).decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
          "top_k", "repetition_penalty", "stop", "seed", "ignore_eos", "stream",
          "stream_options", "n", "logprobs", "tools", "user"]  # fmt: skip


@st.composite
def bodies(draw, media: Path) -> bytes:
    good = wav(media)
    audio = st.one_of(
        st.just(good),
        st.just(good[: len(good) // 2]),
        st.text(max_size=20),
        st.just("!!!not base64"),
    )
    part = st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}),
        st.fixed_dictionaries({
            "type": st.just("input_audio"),
            "input_audio": st.fixed_dictionaries({"data": audio, "format": st.just("wav")}),
        }),
        st.fixed_dictionaries({
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries({"url": st.sampled_from([
                "data:image/png;base64,iVBORw0KGgo=", "https://example.com/a.png",
                "file:///etc/passwd", f"file://{media}/media/test-00000.wav"])}),
        }),
        st.fixed_dictionaries({"type": st.sampled_from(["audio", "video", "x"]),
                               "audio": st.sampled_from(["media/test-00000.wav", "/etc/passwd",
                                                         "../../x.wav", ""])}),
        json_values,
    )  # fmt: skip
    content = st.text(max_size=30) | st.lists(part, max_size=3) | json_values
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", ""])},
        optional={"content": content},
    )
    body = {
        "model": "m",
        "messages": draw(st.lists(message, min_size=1, max_size=3)),
        "max_tokens": draw(st.integers(1, 3)),
    }
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(FIELDS))
        if field == "max_tokens" or field == "max_completion_tokens":
            body[field] = draw(st.integers(-2, 3) | json_values)
        elif draw(st.booleans()):
            body.pop(field, None)
        else:
            body[field] = draw(json_values)
    shape = draw(st.sampled_from(["json", "json", "json", "other json", "bytes"]))
    if shape == "other json":
        return json.dumps(draw(json_values)).encode()
    if shape == "bytes":
        return draw(st.binary(max_size=60))
    return json.dumps(body).encode()


def check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert {"message", "type", "code"} <= set(error), error
        one_line(error["message"])
        event(f"{response.status_code}")
        return
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [line for line in response.text.split("\n\n") if line]
        assert events[-1] == "data: [DONE]", events[-3:]
        for line in events[:-1]:
            chunk = json.loads(line.removeprefix("data: "))
            assert chunk.get("object") == "chat.completion.chunk", chunk
        event("200 stream")
        return
    reply = response.json()
    assert reply["object"] == "chat.completion"
    assert isinstance(reply["choices"][0]["message"]["content"], str)
    event("200")


@fuzz(40)
@given(data=st.data())
def test_request_bodies(server, data):
    client, media = server
    body = data.draw(bodies(media))
    with bounded():
        response = client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        check_answer(response)
        assert client.get("/v1/models").status_code == 200  # still serving
