"""Deprecated: the run lives in :mod:`featurestore.run`; these names are kept for code written against 0.2."""

from __future__ import annotations

import warnings

from .run import Plan, Reporter, Result, RunOptions, SilentReporter, Summary, plan, run

warnings.warn("featurestore.pipeline is deprecated: import from featurestore.run (run, plan, RunOptions, Summary, "
              "...) or call featurestore.extract", DeprecationWarning, stacklevel=2)

__all__ = ["Plan", "Reporter", "Result", "RunOptions", "SilentReporter", "Summary", "plan", "run"]
