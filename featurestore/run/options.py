"""How a run computes and stores: the options every task of a run shares (picklable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..extractors.base import Extractor

#: songs per task on a GPU: short songs share model calls (``extract_batch``), which keeps a GPU busy;
#: on a CPU, where a song alone fills the cores, a task is one song
GPU_SONGS_PER_TASK = 16


def songs_per_task(device: str) -> int:
    """The default number of songs per task on ``device``."""
    return 1 if device == "cpu" else GPU_SONGS_PER_TASK


@dataclass(frozen=True)
class RunOptions:
    skip_existing: bool = True  # caching: a complete array of the same configuration and source is kept
    retry_failed: bool = False  # only (song, model) pairs whose failure is recorded in the store
    output_base: Path | None = None  # also write <output_base>/<model>/<song_id>.npy
    device: str = "cpu"  # where the models run ("cpu", "cuda", "cuda:N"), resolved already
    overwrite: bool = False  # replace each model's group (its arrays and failures) before the run
    dtype: str = "float32"  # how arrays are stored: float32 or float16
    groups: tuple[tuple[str, str], ...] = ()  # (model, group) pairs: store a model under another group name
    batch_songs: int | None = None  # songs per task (None: songs_per_task(device)); short ones share model calls
    hash_sources: bool = False  # a source is unchanged when its sha256 is, not its size and mtime

    def group(self, ext: Extractor) -> str:
        """The store group ``ext`` writes into: its name, unless ``--as`` chose another."""
        return dict(self.groups).get(ext.name, ext.name)

    @property
    def songs_per_task(self) -> int:
        return self.batch_songs or songs_per_task(self.device)
