"""The audio demo task: short clips of three tones; the answer is their note names.

Each clip is ``NOTES_PER_CLIP`` tones of ``NOTE_SECONDS`` at 16 kHz with short fades (no clicks
for the encoder to key on) and light noise (no two clips alike). The ten notes span C4..A5 on a
pentatonic scale, so neighbours are at least a whole tone apart: a small Whisper encoder with 80
mel bins tells them apart, while a text-only model is at chance (1 in 1000 for three notes).
"""

from __future__ import annotations

import io

import numpy as np

SAMPLING_RATE = 16000
NOTES = {
    "C4": 261.63,
    "D4": 293.66,
    "E4": 329.63,
    "G4": 392.00,
    "A4": 440.00,
    "C5": 523.25,
    "D5": 587.33,
    "E5": 659.25,
    "G5": 783.99,
    "A5": 880.00,
}
NOTES_PER_CLIP = 3
NOTE_SECONDS = 0.25
FADE_SECONDS = 0.01  # fade in/out of every tone
AMPLITUDE = 0.5
NOISE = 0.01  # standard deviation of the added white noise
PROMPT = "What notes are played in <audio>?"


def tones(notes: list[str], rng: np.random.Generator) -> np.ndarray:
    """The waveform (float32, mono, ``SAMPLING_RATE``) of ``notes`` played one after another."""
    t = np.arange(int(SAMPLING_RATE * NOTE_SECONDS)) / SAMPLING_RATE
    envelope = np.minimum(1.0, np.minimum(t, NOTE_SECONDS - t) / FADE_SECONDS)
    parts = [AMPLITUDE * envelope * np.sin(2 * np.pi * NOTES[name] * t) for name in notes]
    wave = np.concatenate(parts)
    wave += NOISE * rng.standard_normal(wave.shape[0])
    return wave.astype(np.float32)


def sample(rng: np.random.Generator) -> tuple[bytes, str]:
    """One random clip as 16-bit WAV bytes, and its answer (e.g. ``"C4 G5 E4"``)."""
    import soundfile

    names = list(NOTES)
    notes = [names[i] for i in rng.integers(0, len(names), size=NOTES_PER_CLIP)]
    buffer = io.BytesIO()
    soundfile.write(buffer, tones(notes, rng), SAMPLING_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue(), " ".join(notes)
