"""Extractors: one module per model, the shared contract in :mod:`.base`, names in :mod:`.registry`."""

from .base import Extractor, ExtractorConfig, TimeAxis, WeightFile, WeightsInfo
from .registry import create, get, names

__all__ = ["Extractor", "ExtractorConfig", "TimeAxis", "WeightFile", "WeightsInfo", "create", "get", "names"]
