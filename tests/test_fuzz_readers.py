"""Robustness of every reader against corrupted files (the engine is ``benchmarks/fuzz_readers.py``).

A few hundred mutated copies of the real example files (truncation, byte/bit flips, 4-byte size edits,
chunk deletion/insertion, header line edits), each opened in a worker process with a 4 GiB
address-space limit and a timeout: ``nrm.open`` must return a valid model or raise the reader's own
``ReaderError`` naming the file — never another exception, a hang or an absurd allocation.
``NRM_FUZZ_CASES`` sets the number of cases (default 300); the benchmark runs 10 000.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time

import pytest

from conftest import REAL, ROOT

_spec = importlib.util.spec_from_file_location("fuzz_readers", ROOT / "benchmarks" / "fuzz_readers.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_readers"] = fuzz  # dataclasses and pickling look the module up by name
_spec.loader.exec_module(fuzz)

N_CASES = int(os.environ.get("NRM_FUZZ_CASES", "300"))


def test_mutations_are_deterministic_and_varied():
    data = bytes(range(256)) * 64 + b"\nkey: 12.5 nm\nother: 3\n" * 20
    assert fuzz.mutate(data, 7, "a.spm") == fuzz.mutate(data, 7, "a.spm")
    results = {fuzz.mutate(data, seed, "a.spm") for seed in range(200)}
    assert len(results) > 190  # different seeds, different mutants
    kinds = {description.split(" ")[0] for _, description in results}
    assert {"truncate", "flip_bytes", "flip_bits", "int32", "delete", "insert", "header"} <= kinds


def test_harness_reports_hangs_and_absurd_allocations():
    cases = [fuzz.Case("selftest:alloc", 0, "selftest"), fuzz.Case("selftest:hang", 1, "selftest")]
    start = time.monotonic()
    results = fuzz.run_cases(cases, jobs=2, timeout=3, memory_limit=1 << 30)
    assert time.monotonic() - start < 30
    assert {r["file"]: r["outcome"] for r in results} == {"selftest:alloc": "memory", "selftest:hang": "timeout"}


def test_readers_raise_only_reader_errors_on_corrupted_files(tmp_path):
    if not REAL.is_dir():
        pytest.skip(f"shared real-data folder {REAL} is absent")
    templates = fuzz.example_files(tmp_path)
    assert templates, "no reader recognises any example file"
    results = fuzz.run_cases(fuzz.plan(templates, N_CASES), jobs=2, timeout=30)
    assert len(results) == N_CASES
    assert not fuzz.failures(results), fuzz.report(results, 0)
