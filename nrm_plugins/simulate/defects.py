"""Defects injected on request, each labelled in ``truth["defect"]`` for exactly the ramps it affects.

=====================  ==================================================================================
kind                   what the ramp looks like
=====================  ==================================================================================
``nan_ramp``           every deflection and lateral sample is NaN (the piezo sweep is kept)
``nan_run``            a run of 5–30 % of the samples (anywhere, often the tail) is NaN in deflection and
                       lateral channels
``no_contact``         the ramp stops above the electrode (inside or just above the SEI): no hard contact
``starts_in_contact``  the far end of the ramp is already in hard contact or inside the layer: no free
                       baseline (for retract ramps: it never leaves the layer)
``clipped``            a large liquid background drives the X output to the ±10.5 V clip inside the layer,
                       hiding part of the layer response
``truncated``          the written ``.3ds`` file is cut inside the record of the first of these ramps (the
                       last ramps of the file); the in-memory model keeps them complete
=====================  ==================================================================================
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

KINDS = ("nan_ramp", "nan_run", "no_contact", "starts_in_contact", "clipped", "truncated")


def choose(defects: dict | None, n_ramps: int, rng) -> np.ndarray:
    """Defect label of every ramp ("" = good): ``truncated`` takes the last ramps, the rest are random."""
    labels = np.full(n_ramps, "", dtype=object)
    defects = dict(defects or {})
    unknown = sorted(set(defects) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown defect kind(s) {unknown}; kinds: {', '.join(KINDS)}")
    counts = {k: int(v) for k, v in defects.items()}
    if any(v < 0 for v in counts.values()):
        raise ValueError(f"defect counts must be >= 0, got {defects}")
    if sum(counts.values()) > n_ramps:
        raise ValueError(f"{sum(counts.values())} defects requested for only {n_ramps} ramps")
    n_trunc = counts.pop("truncated", 0)
    if n_trunc:
        labels[n_ramps - n_trunc:] = "truncated"
    free = rng.permutation(n_ramps - n_trunc)
    start = 0
    for kind in KINDS:
        n = counts.get(kind, 0)
        labels[free[start:start + n]] = kind
        start += n
    return labels


def nan_runs(labels, n_samples: int, rng):
    """(start, stop) sample index of the NaN run of each ramp (0, 0 where there is none)."""
    n = len(labels)
    length = np.round(rng.uniform(0.05, 0.3, n) * n_samples).astype(np.int64)
    tail = rng.random(n) < 0.5
    start = np.where(tail, n_samples - length, (rng.random(n) * (n_samples - length)).astype(np.int64))
    on = labels == "nan_run"
    return np.where(on, start, 0), np.where(on, start + length, 0)


def truncate_file(path, n_bytes: int) -> Path:
    """Keep only the first ``n_bytes`` of ``path`` (a file cut short, e.g. by a crash during a save)."""
    path = Path(path)
    size = path.stat().st_size
    if not 0 <= n_bytes <= size:
        raise ValueError(f"{path}: cannot truncate a {size}-byte file to {n_bytes} bytes")
    with open(path, "r+b") as fh:
        fh.truncate(n_bytes)
    return path


def truncate_grid(path, n_ramps: int, n_lost: int) -> int:
    """Cut a Nanonis ``.3ds`` grid of ``n_ramps`` equal point records in the middle of record
    ``n_ramps − n_lost``, so that the last ``n_lost`` ramps are incomplete.  Returns the new size (bytes)."""
    path = Path(path)
    raw_size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    marker = head.find(b":HEADER_END:")
    if marker < 0:
        raise ValueError(f"{path}: no ':HEADER_END:' in the first MiB; not a Nanonis grid")
    header = marker + len(b":HEADER_END:")
    while head[header:header + 1] in (b"\r", b"\n"):
        header += 1
    record, rest = divmod(raw_size - header, n_ramps)
    if rest or record % 4:
        raise ValueError(f"{path}: {raw_size - header} data bytes are not {n_ramps} equal float32 records")
    cut = header + (n_ramps - n_lost) * record + 4 * (record // 8)
    truncate_file(path, cut)
    return cut
