"""Pictures and text summaries of one song's features (``fstore plot``, ``fstore show``).

Each panel is drawn by the kind its extractor declares (``Output.kind``, recorded in the group
attributes as ``plot_kind``): ``activation`` (a curve with its peaks), ``pitch`` (f0 on a log-frequency axis
with note names, points shaded by confidence) or ``embedding`` (a feature × time heatmap; the last
stored layer when there are several). All panels share one time axis in seconds. Needs matplotlib
(``pip install 'fstore-audio[plot]'``).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from .read import StoreReader, as_names, decode_attrs

#: the model whose activation the beat tracker decodes (``StoreReader.beats``)
BEAT_MODEL = "madmom"
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
PLOT_KINDS = ("activation", "pitch", "embedding")


class PlotUnavailable(ImportError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlotUnavailable("fstore plot needs matplotlib: pip install 'fstore-audio[plot]' "
                              "(or pip install matplotlib)") from e
    return plt


def plot_kind(reader: StoreReader, group: str, da: Any) -> str:
    """The group's declared plot kind (stores before schema 2: its extractor's), else one that fits the shape."""
    attrs = reader.model_attrs(group)
    kind = attrs.get("plot_kind")
    if kind is None:
        from .extractors import registry

        try:
            kind = registry.get(attrs.get("model", group))().output.kind
        except (KeyError, ImportError, TypeError, ValueError):
            kind = None
    if kind in PLOT_KINDS:
        return kind
    return "activation" if da.ndim == 1 else "embedding"


def note_ticks(low_hz: float, high_hz: float) -> tuple[list[float], list[str]]:
    """Frequencies and names of the notes to mark between ``low_hz`` and ``high_hz`` (A4 = 440 Hz):
    every natural note over up to two octaves, else the Cs and As."""
    marked = (0, 2, 4, 5, 7, 9, 11) if high_hz / low_hz <= 4 else (0, 9)
    ticks, names = [], []
    for midi in range(0, 128):
        if midi % 12 not in marked:
            continue
        hz = 440.0 * 2 ** ((midi - 69) / 12)
        if low_hz <= hz <= high_hz:
            ticks.append(hz)
            names.append(f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}")
    return ticks, names


def beat_groups(reader: StoreReader, groups: Sequence[str]) -> list[str]:
    """The groups of ``groups`` that hold a beat activation madmom's DBN decodes into beats (their recorded
    model is madmom's beat tracker, whatever the group's name)."""
    return [g for g in groups if reader.model_attrs(g).get("model") == BEAT_MODEL]


def plot_song(reader: StoreReader, song_id: str, models: str | Sequence[str] | None = None,
              start: float | None = None, end: float | None = None) -> Any:
    """One matplotlib Figure, one panel per model (in ``models`` order), sharing the time axis. When a group
    holds a beat activation, its beats (madmom's DBN) are marked on its panel and as thin lines across all."""
    plt = _pyplot()
    groups = [m for m in (as_names(models) or reader.models()) if reader.has(song_id, m)]
    if not groups:
        raise KeyError(f"song {song_id!r} has no complete features in {reader.url}")
    arrays = {g: reader.load(song_id, g, start=start, end=end) for g in groups}
    beats = {g: _within(reader.beats(song_id, g), start, end) for g in beat_groups(reader, groups)}
    lines = next(iter(beats.values()), np.zeros(0))
    fig, axes = plt.subplots(len(groups), 1, sharex=True, squeeze=False, figsize=(11, 2.4 * len(groups) + 0.8),
                             constrained_layout=True)
    for ax, (group, da) in zip(axes[:, 0], arrays.items()):
        kind = plot_kind(reader, group, da)
        {"activation": _activation, "pitch": _pitch, "embedding": _embedding}[kind](ax, da)
        if lines.size:
            ax.vlines(lines, 0, 1, transform=ax.get_xaxis_transform(), lw=0.5, color="0.4", alpha=0.6, zorder=0)
        if group in beats:
            _mark_beats(ax, da, beats[group])
        ax.set_title(f"{group}", loc="left", fontsize=10)
    axes[-1, 0].set_xlabel("time (s)")
    attrs = decode_attrs(next(iter(arrays.values())).attrs)
    source = (attrs.get("source") or {}).get("path", "?")
    fig.suptitle(f"{song_id}  ·  {attrs.get('duration_s', 0):.2f} s  ·  {source}")
    return fig


def _within(times: np.ndarray, start: float | None, end: float | None) -> np.ndarray:
    """The times in ``[start, end)`` (None: open on that side)."""
    keep = np.ones(times.shape, bool)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times < end
    return times[keep]


def _mark_beats(ax: Any, da: Any, beats: np.ndarray) -> None:
    """The beats on an activation's panel, at the activation's height there."""
    t, y = da["time"].values, da.values.reshape(da.sizes["time"], -1)[:, 0]
    ax.plot(beats, np.interp(beats, t, y) if t.size else np.zeros_like(beats), "v", ms=5, color="tab:red",
            label=f"{beats.size} beats")
    ax.legend(loc="upper right", fontsize=8)


def _activation(ax: Any, da: Any) -> None:
    t, y = da["time"].values, da.values if da.ndim == 1 else da.values.reshape(da.sizes["time"], -1)[:, 0]
    ax.plot(t, y, lw=0.8, color="tab:blue")
    ax.set_ylabel("activation")


def _pitch(ax: Any, da: Any) -> None:
    f0 = da.sel(feature="frequency").values
    conf = da.sel(feature="confidence").values
    t = da["time"].values
    voiced = f0 > 0
    ax.scatter(t[voiced], f0[voiced], c=conf[voiced], cmap="Greys", vmin=0, vmax=1, s=3, linewidths=0)
    ax.set_yscale("log")
    low, high = (np.nanmin(f0[voiced]), np.nanmax(f0[voiced])) if voiced.any() else (55.0, 1760.0)
    low, high = max(30.0, low / 1.2), min(8000.0, high * 1.2)
    ax.set_ylim(low, high)
    ticks, names = note_ticks(low, high)
    ax.set_yticks(ticks, names)
    ax.minorticks_off()
    ax.set_ylabel("f0 (note)")


def _embedding(ax: Any, da: Any) -> None:
    if "layer" in da.dims:
        da = da.isel(layer=-1)
    values = da.transpose("time", ...).values.reshape(da.sizes["time"], -1)
    # each feature as a z-score over time: raw embeddings are dominated by per-dimension offsets
    spread = values.std(axis=0)
    values = np.clip((values - values.mean(axis=0)) / np.where(spread > 0, spread, 1), -3, 3)
    t = da["time"].values
    hop = float(da.attrs.get("hop_s", 1.0))
    extent = (t[0] - hop / 2, t[-1] + hop / 2, 0, values.shape[1]) if t.size else (0, 1, 0, values.shape[1])
    ax.imshow(values.T, aspect="auto", origin="lower", extent=extent, cmap="magma", interpolation="nearest",
              vmin=-3, vmax=3)
    ax.set_ylabel("feature (z)")


def describe_song(reader: StoreReader, song_id: str, models: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per model: frames, rate, duration, value ranges and fingerprint of one song (``fstore show``), and for a
    beat activation the beats madmom's DBN finds in it and the tempo they give."""
    rows = []
    for group in as_names(models) or reader.models():
        if not reader.has(song_id, group):
            continue
        da = reader.load(song_id, group)
        attrs = decode_attrs(da.attrs)
        values = da.values
        row = {"group": group, "model": attrs.get("model", group), "shape": list(values.shape),
               "dims": list(da.dims), "frames": int(da.sizes["time"]), "frame_rate_hz": attrs.get("frame_rate_hz"),
               "t0_s": attrs.get("t0_s"), "duration_s": attrs.get("duration_s"),
               "min": float(np.nanmin(values)) if values.size else None,
               "max": float(np.nanmax(values)) if values.size else None,
               "mean": float(np.nanmean(values)) if values.size else None,
               "fingerprint": attrs.get("fingerprint"), "source": attrs.get("source")}
        if "feature" in da.dims and da["feature"].dtype.kind in "US":
            row["per_feature"] = {str(f): {"min": float(np.nanmin(da.sel(feature=f).values)),
                                           "max": float(np.nanmax(da.sel(feature=f).values))}
                                  for f in da["feature"].values}
        if beat_groups(reader, [group]):
            from .beats import tempo_bpm

            beats = reader.beats(song_id, group)
            row.update(beats=int(beats.size), tempo_bpm=tempo_bpm(beats))
        rows.append(row)
    if not rows:
        raise KeyError(f"song {song_id!r} has no complete features in {reader.url}")
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """``fstore show``'s text: one block per model."""
    lines = []
    for r in rows:
        lines.append(f"{r['group']}" + ("" if r["model"] == r["group"] else f" (model {r['model']})"))
        lines.append(f"  {r['frames']} frames at {r['frame_rate_hz']:g} Hz, first at {r['t0_s']:.4g} s; "
                     f"{r['duration_s']:.2f} s of audio; shape {tuple(r['shape'])} {json.dumps(r['dims'])}")
        for name, rng in (r.get("per_feature") or {}).items():
            lines.append(f"  {name}: {rng['min']:.4g} .. {rng['max']:.4g}")
        if not r.get("per_feature"):
            lines.append(f"  values {r['min']:.4g} .. {r['max']:.4g}, mean {r['mean']:.4g}")
        if "beats" in r:
            lines.append(f"  tempo {r['tempo_bpm']:.1f} BPM from {r['beats']} beats" if r["tempo_bpm"] is not None
                         else "  tempo: no beats found")
        lines.append(f"  fingerprint {str(r['fingerprint'])[:16]}…  source {(r['source'] or {}).get('path')}")
    return "\n".join(lines)
