"""Activation engine: every selected feature of a site in one pass per batch, streamed top-k, disk cache."""

from harness.activations._calibration import calibration_corpus
from harness.activations._derived import cached_derivation
from harness.activations._extract import extract_activations
from harness.activations._forward import tokenize
from harness.activations._pool import pool_examples
from harness.activations._processes import Processes, current_processes
from harness.activations._report import top_examples_report
from harness.activations._saebench import saebench_examples
from harness.activations._texts import activations_for_texts
from harness.activations._windows import delphi_windows
from harness.activations.types import ActivatingExample, ActivationSet, SAEBenchSample, WindowSample

__all__ = [
    "ActivatingExample",
    "ActivationSet",
    "Processes",
    "SAEBenchSample",
    "cached_derivation",
    "calibration_corpus",
    "activations_for_texts",
    "WindowSample",
    "current_processes",
    "delphi_windows",
    "extract_activations",
    "pool_examples",
    "saebench_examples",
    "tokenize",
    "top_examples_report",
]
