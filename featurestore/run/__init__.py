"""The run: from audio files to a store of features.

- :mod:`.setup`: :func:`prepare_run` turns a :class:`RunRequest` into a :class:`PreparedRun`;
  :func:`execute` runs it; :func:`extract` does both (``fstore extract`` from Python);
- :mod:`.coordinator`: :func:`run`, the loop over tasks for given files, models and options;
- :mod:`.planning`: what is cached and what to compute (:func:`plan`, :func:`decide`);
- :mod:`.task`: one task's songs, claimed, computed and written under their leases;
- :mod:`.compute`: decoding and the models' calls (batching, CPU-only models beside a GPU);
- :mod:`.execution`: in this process, or in worker processes (local pool, Dask);
- :mod:`.writer`, :mod:`.prefetch`: writes behind compute, decodes ahead;
- :mod:`.results`: :class:`Result`, :class:`Summary` and the :class:`Reporter` callbacks.
"""

from .coordinator import run
from .execution import InProcess, Workers, execution
from .options import RunOptions, songs_per_task
from .planning import Plan, decide, plan
from .results import ModelTotals, Reporter, Result, SilentReporter, SongOutcome, Summary
from .setup import PreparedRun, RunRequest, execute, extract, prepare_run

__all__ = ["InProcess", "ModelTotals", "Plan", "PreparedRun", "Reporter", "Result", "RunOptions", "RunRequest",
           "SilentReporter", "SongOutcome", "Summary", "Workers", "decide", "execute", "execution", "extract", "plan",
           "prepare_run", "run", "songs_per_task"]
