"""``mmgen chat``: a multi-turn session with media attached by command or by a placeholder
followed by a path; answers stream and equal the model's own; bad input is a note, not an end."""

from __future__ import annotations

from typer.testing import CliRunner

import mmgen
from mmgen.cli import app
from mmgen.infer.chat import ChatSession
from mmgen.model.generation import GenerationOptions

OPTIONS = GenerationOptions(max_new_tokens=6, ignore_eos=True)


def expected(loaded, messages) -> str:
    return loaded.generate([{"messages": messages}], OPTIONS)[0].text


def test_turns_keep_history_and_stream_the_answer(trained_run, audio_data) -> None:
    loaded = mmgen.load(trained_run)
    pieces: list[str] = []
    session = ChatSession(loaded, OPTIONS, on_text=pieces.append)
    clip = str(audio_data / "media/test-00000.wav")
    assert session.handle(f"/audio {clip}").note == f"(attached {clip} as audio)"
    first = session.handle("What notes are played?")
    question = {"type": "text", "text": "What notes are played?"}
    user = {"role": "user", "content": [{"type": "audio", "audio": clip}, question]}
    assert first.reply == expected(loaded, [user]) and first.reply
    assert "".join(pieces) == first.reply  # streamed piece by piece
    # a second turn sees the first one
    second = session.handle("And again?")
    history = [user, {"role": "assistant", "content": first.reply},
               {"role": "user", "content": [{"type": "text", "text": "And again?"}]}]  # fmt: skip
    assert second.reply == expected(loaded, history)
    assert len(session.messages) == 4
    assert session.handle("/reset").note and session.messages == []


def test_a_placeholder_followed_by_a_path_is_that_media(trained_run, audio_data) -> None:
    loaded = mmgen.load(trained_run)
    session = ChatSession(loaded, OPTIONS)
    clip = audio_data / "media/test-00001.wav"
    turn = session.handle(f"What notes are played in <audio> {clip} ?")
    parts = [{"type": "text", "text": "What notes are played in "},
             {"type": "audio", "audio": str(clip)}, {"type": "text", "text": " ?"}]  # fmt: skip
    assert turn.reply == expected(loaded, [{"role": "user", "content": parts}])


def test_bad_input_is_a_note_and_the_session_goes_on(trained_run, tmp_path) -> None:
    session = ChatSession(mmgen.load(trained_run), OPTIONS)
    assert session.handle("/audio nowhere.wav").note == "error: nowhere.wav: no such file"
    assert session.handle("/video x").note.startswith("error: unknown command /video; /audio")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVE")
    session.handle(f"/audio {broken}")
    note = session.handle("What is this?").note
    assert note.startswith("error: sample") and "broken.wav" in note
    assert note.endswith("(attachments dropped)")
    assert session.messages == []  # the failed message is not kept
    assert session.handle("hello").reply is not None
    assert session.handle("/exit").done


def test_the_command_chats_until_exit(trained_run, audio_data) -> None:
    clip = audio_data / "media/test-00002.wav"
    script = f"/audio {clip}\nWhat notes are played?\n/reset\n/exit\n"
    args = ["chat", str(trained_run), "--max-new-tokens", "4"]
    result = CliRunner().invoke(app, args, input=script)
    assert result.exit_code == 0, result.output
    assert f"(attached {clip} as audio)" in result.output
    assert "model> " in result.output and "(a new conversation)" in result.output
