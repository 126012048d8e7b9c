"""Synthesise the example clips in this folder (deterministic; run from anywhere).

    python audio_files/make_examples.py

Three short pieces with a clear beat and melody, so every model has something to
measure: a 120-BPM drum loop with a bass line, a 90-BPM arpeggio in 3/4, and a sung-like
vibrato melody over a pad. Written by this script alone; released under CC0 1.0 (see
LICENSE in this folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 22050
HERE = Path(__file__).resolve().parent


def note(freq: float, seconds: float, decay: float = 4.0, harmonics: int = 4) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    return (tone * np.exp(-decay * t)).astype(np.float32)


def kick(seconds: float = 0.25) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * (50 + 100 * np.exp(-30 * t)) * t) * np.exp(-12 * t)).astype(np.float32)


def hat(rng: np.random.Generator, seconds: float = 0.05) -> np.ndarray:
    return (rng.standard_normal(int(seconds * RATE)) * np.exp(-np.linspace(0, 8, int(seconds * RATE))) * 0.3).astype(np.float32)


def place(out: np.ndarray, sound: np.ndarray, at_s: float, gain: float = 1.0) -> None:
    i = int(at_s * RATE)
    n = min(len(sound), len(out) - i)
    if n > 0:
        out[i : i + n] += gain * sound[:n]


def drum_loop(rng: np.random.Generator, seconds: float = 8.0, bpm: float = 120.0) -> np.ndarray:
    out = np.zeros(int(seconds * RATE), dtype=np.float32)
    beat = 60.0 / bpm
    bass = [55.0, 55.0, 65.41, 73.42]
    for i in range(int(seconds / beat)):
        place(out, kick(), i * beat, 0.9)
        place(out, hat(rng), i * beat + beat / 2, 0.5)
        place(out, note(bass[i % 4], beat, decay=3.0), i * beat, 0.25)
    return out


def arpeggio(seconds: float = 8.0, bpm: float = 90.0) -> np.ndarray:
    out = np.zeros(int(seconds * RATE), dtype=np.float32)
    step = 60.0 / bpm / 2
    chord = [261.63, 329.63, 392.00, 523.25, 392.00, 329.63]
    for i in range(int(seconds / step)):
        place(out, note(chord[i % len(chord)], step * 2, decay=5.0), i * step, 0.3 if i % 6 else 0.5)
    return out


def vibrato_melody(seconds: float = 8.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    melody = np.repeat([220.0, 246.94, 261.63, 293.66, 329.63, 293.66, 261.63, 246.94], int(seconds * RATE) // 8 + 1)[: len(t)]
    freq = melody * (1 + 0.006 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    voice = 0.35 * (np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase))
    pad = 0.08 * (np.sin(2 * np.pi * 110 * t) + np.sin(2 * np.pi * 164.81 * t))
    return (voice + pad).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(2024)
    clips = {
        "drum_loop_120bpm.flac": drum_loop(rng),
        "arpeggio_90bpm.ogg": arpeggio(),
        "vibrato_melody.wav": vibrato_melody(),
    }
    for name, wave in clips.items():
        wave = 0.8 * wave / np.abs(wave).max()
        subtype = {"flac": "PCM_16", "wav": "PCM_16", "ogg": "VORBIS"}[name.rsplit(".", 1)[1]]
        sf.write(HERE / name, wave, RATE, subtype=subtype)
        print(f"{name}: {len(wave) / RATE:.1f} s, {(HERE / name).stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
