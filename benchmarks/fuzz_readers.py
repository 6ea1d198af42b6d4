"""Fuzz every reader with mutated copies of the real example files (and a NetCDF file of the storage
plugin): truncation, byte and bit flips, 4-byte size edits, chunk deletion/insertion, header line edits.

Each case runs ``nrm.open`` in a worker process with an address-space limit (``RLIMIT_AS``, default
4 GiB) and a per-case timeout, and ends in one outcome:

=============  =====================================================================  ========
outcome        meaning                                                                verdict
=============  =====================================================================  ========
``ok``         a model was returned and it passes the generic model checks            fine
``error``      ``ReaderError`` from the reader, naming the file                       fine
``invalid``    a model was returned that fails the model checks                       failure
``unnamed``    ``ReaderError`` whose message does not name the file                   failure
``crash``      the reader raised something else; the plugin manager wrapped it        failure
``exception``  an exception other than ``ReaderError`` reached the caller             failure
``memory``     the reader ran out of the memory limit (an absurd allocation)          failure
``timeout``    the case did not finish within the timeout (a hang)                    failure
``died``       the worker process died (a crash in C code, a kill)                    failure
=============  =====================================================================  ========

A case is ``(file, seed)``; the mutation is a pure function of the file's bytes and the seed, so a
failure is reproduced with ``python benchmarks/fuzz_readers.py --file bruker/x.spm --seed 123``
(in-process, with the traceback; ``--keep DIR`` saves the mutated file).

    python benchmarks/fuzz_readers.py                    # 10 000 cases, 2 workers
    python benchmarks/fuzz_readers.py --cases 500 --jobs 2 --timeout 20

``tests/test_fuzz_readers.py`` runs a few hundred cases of the same engine in CI.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NRM_SHARED", ROOT.parent / "shared"))
REAL = SHARED / "data" / "real"
FINE = ("ok", "error")
MUTATIONS = ("truncate", "flip_bytes", "flip_bits", "int32_edit", "delete_chunk", "insert_chunk", "header_line")
#: Where structure (headers, sizes, offsets) lives: half of the point mutations land in the first bytes.
HEAD_BYTES = 4096
_NUMBER = re.compile(rb"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Case:
    file: str  # path relative to REAL ("bruker/x.spm"), or an absolute path
    seed: int
    reader: str = ""  # the reader of the unmutated file (for the report)


def resolve(file: str) -> Path:
    path = Path(file)
    return path if path.is_absolute() else REAL / path


# ---------------------------------------------------------------------------------------------- mutations
def mutate(data: bytes, seed: int, name: str) -> tuple[bytes, str]:
    """A mutated copy of ``data`` and a description; deterministic in (data, seed, name)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    out = bytearray(data)
    n = len(out)
    if n == 0:
        return b"", "empty"

    def position() -> int:
        if rng.random() < 0.5:
            return int(rng.integers(min(n, HEAD_BYTES)))
        return int(rng.integers(n))

    if kind == "truncate":
        cut = int(rng.integers(n))
        return bytes(out[:cut]), f"truncate at {cut} of {n}"
    if kind in ("flip_bytes", "flip_bits"):
        where = sorted({position() for _ in range(int(rng.integers(1, 17)))})
        for p in where:
            out[p] = int(rng.integers(256)) if kind == "flip_bytes" else out[p] ^ (1 << int(rng.integers(8)))
        return bytes(out), f"{kind} at {where}"
    if kind == "int32_edit":
        p = min(position(), max(n - 4, 0))
        value = [0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0x10000, int(rng.integers(2 ** 32))][int(rng.integers(7))]
        out[p:p + 4] = value.to_bytes(4, "little")[: n - p]
        return bytes(out), f"int32 {value:#x} at {p}"
    if kind == "delete_chunk":
        p, length = position(), int(rng.integers(1, 1025))
        del out[p:p + length]
        return bytes(out), f"delete {length} bytes at {p}"
    if kind == "insert_chunk":
        p, length = position(), int(rng.integers(1, 65))
        out[p:p] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        return bytes(out), f"insert {length} bytes at {p}"
    return _edit_header_line(bytes(out), rng)


def _edit_header_line(data: bytes, rng) -> tuple[bytes, str]:
    """Edit one line of a text header (the printable lines in the first 64 KiB); else flip bytes."""
    head = data[:65536]
    starts = [0] + [m.end() for m in re.finditer(rb"\n", head)]
    lines = [(a, b) for a, b in zip(starts, starts[1:]) if b - a > 2 and _printable(head[a:b])]
    if not lines:
        p = int(rng.integers(min(len(data), HEAD_BYTES)))
        return data[:p] + bytes([int(rng.integers(256))]) + data[p + 1:], f"flip_bytes at [{p}] (no text header)"
    a, b = lines[int(rng.integers(len(lines)))]
    line = data[a:b]
    action = ["delete", "duplicate", "number", "truncate", "empty"][int(rng.integers(5))]
    numbers = list(_NUMBER.finditer(line))
    if action == "number" and numbers:
        m = numbers[int(rng.integers(len(numbers)))]
        new = [b"0", b"-1", b"999999999999", b"1e308", b"nan", b"-2147483649", b"x"][int(rng.integers(7))]
        edited = line[:m.start()] + new + line[m.end():]
        return data[:a] + edited + data[b:], f"header line at {a}: number {m.group()!r} -> {new!r}"
    if action == "duplicate":
        return data[:b] + line + data[b:], f"header line at {a}: duplicated"
    if action == "truncate":
        cut = a + max(1, (b - a) // 2)
        return data[:cut] + b"\n" + data[b:], f"header line at {a}: cut after {cut - a} bytes"
    if action == "empty":
        return data[:a] + b"\n" + data[b:], f"header line at {a}: emptied"
    return data[:a] + data[b:], f"header line at {a}: deleted"


def _printable(raw: bytes) -> bool:
    text = raw.strip(b"\r\n")
    return bool(text) and sum(32 <= c < 127 or c == 9 for c in text) >= 0.95 * len(text)


# ---------------------------------------------------------------------------------------------- one case
def run_case(case: Case, workdir: Path, cache: dict | None = None, keep: Path | None = None) -> dict:
    """Mutate, open, classify.  Runs in a worker (or in-process for a reproduction)."""
    import nrm_plugins as nrm

    source = resolve(case.file)
    cache = {} if cache is None else cache
    if source not in cache:
        cache[source] = source.read_bytes()
    data, description = mutate(cache[source], case.seed, source.name)
    target = workdir / source.name
    target.write_bytes(data)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, keep / f"seed{case.seed}_{source.name}")
    result = {"file": case.file, "seed": case.seed, "reader": case.reader, "mutation": description, "detail": ""}
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = nrm.open(target)
            try:
                check_model(ds, target.name)
                result["outcome"] = "ok"
            except AssertionError as exc:
                result["outcome"], result["detail"] = "invalid", str(exc)[:300]
            finally:
                ds.close()
    except nrm.ReaderError as exc:
        problem = exc.problem
        if re.match(r"not enough memory", problem):
            result["outcome"] = "memory"
        elif re.match(r"the '[^']+' reader failed: ", problem):
            result["outcome"] = "crash"
            if exc.__cause__ is not None:
                result["traceback"] = "".join(traceback.format_exception(exc.__cause__))
        elif target.name not in str(exc):
            result["outcome"] = "unnamed"
        else:
            result["outcome"] = "error"
        result["detail"] = str(exc).replace(str(target), target.name)[:300]
    except MemoryError:
        result["outcome"], result["detail"] = "memory", "MemoryError"
    except Exception as exc:  # noqa: BLE001 - that is the finding
        result["outcome"], result["detail"] = "exception", f"{type(exc).__name__}: {exc}"[:300]
        result["traceback"] = traceback.format_exc()
    result["seconds"] = time.perf_counter() - start
    target.unlink(missing_ok=True)
    return result


def check_model(ds, source: str) -> None:
    """The generic model checks of tests/test_readers_generic.py (AssertionError when one fails)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_readers_generic import assert_valid_model
    finally:
        sys.path.pop(0)
    try:
        assert_valid_model(ds, source)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. validate() raising ModelError
        raise AssertionError(f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------- worker pool
def _worker(conn, memory_limit: int, workdir: str) -> None:
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    cache: dict = {}
    work = Path(workdir)
    while True:
        case = conn.recv()
        if case is None:
            return
        if case.file == "selftest:alloc":  # harness checks: an absurd allocation and a hang
            try:
                np.ones(memory_limit // 4)
                conn.send({"outcome": "ok", "file": case.file, "seed": case.seed})
            except MemoryError:
                conn.send({"outcome": "memory", "file": case.file, "seed": case.seed})
            continue
        if case.file == "selftest:hang":
            while True:
                time.sleep(1)
        conn.send(run_case(case, work, cache))


class _Slot:
    def __init__(self, ctx, memory_limit: int, workdir: Path):
        self.ctx, self.memory_limit, self.workdir = ctx, memory_limit, workdir
        self.case, self.deadline = None, 0.0
        self.start()

    def start(self):
        self.conn, child = self.ctx.Pipe()
        self.dir = Path(tempfile.mkdtemp(dir=self.workdir))
        self.proc = self.ctx.Process(target=_worker, args=(child, self.memory_limit, str(self.dir)), daemon=True)
        self.proc.start()
        child.close()

    def restart(self):
        self.proc.kill()
        self.proc.join()
        self.conn.close()
        self.start()


def run_cases(cases, jobs: int = 2, timeout: float = 30.0, memory_limit: int = 4 << 30, progress=None) -> list[dict]:
    """Run ``cases`` on ``jobs`` worker processes; a hung or dead worker is killed, recorded and replaced."""
    ctx = multiprocessing.get_context("fork")
    results = []
    pending = list(cases)[::-1]
    with tempfile.TemporaryDirectory(prefix="nrm-fuzz-") as workdir:
        slots = [_Slot(ctx, memory_limit, Path(workdir)) for _ in range(max(1, min(jobs, len(pending))))]
        try:
            while pending or any(s.case for s in slots):
                for slot in slots:
                    if slot.case is None and pending:
                        slot.case, slot.deadline = pending.pop(), time.monotonic() + timeout
                        slot.conn.send(slot.case)
                busy = [s for s in slots if s.case is not None]
                wait_for = max(0.0, min(s.deadline for s in busy) - time.monotonic())
                ready = wait([s.conn for s in busy], timeout=wait_for)
                for slot in busy:
                    base = {"file": slot.case.file, "seed": slot.case.seed, "reader": slot.case.reader}
                    if slot.conn in ready:
                        try:
                            result = slot.conn.recv()
                        except (EOFError, ConnectionError):
                            slot.proc.join()
                            result = {**base, "outcome": "died", "detail": f"exit code {slot.proc.exitcode}"}
                            slot.restart()
                    elif time.monotonic() > slot.deadline:
                        result = {**base, "outcome": "timeout", "detail": f"no answer within {timeout:.0f} s"}
                        slot.restart()
                    else:
                        continue
                    if result["outcome"] in ("died", "timeout"):
                        result["mutation"] = describe(slot.case)
                    result.setdefault("reader", slot.case.reader)
                    results.append(result)
                    slot.case = None
                    if progress:
                        progress(result)
        finally:
            for slot in slots:
                if slot.proc.is_alive():
                    try:
                        slot.conn.send(None)
                    except (BrokenPipeError, OSError):
                        pass
                    slot.proc.join(timeout=2)
                    if slot.proc.is_alive():
                        slot.proc.kill()
    return results


def describe(case: Case) -> str:
    if case.file.startswith("selftest:"):
        return case.file
    return mutate(resolve(case.file).read_bytes(), case.seed, resolve(case.file).name)[1]


# ---------------------------------------------------------------------------------------------- which files
def example_files(storage_dir: Path | None = None) -> list[Case]:
    """One template case per example file of every reader that exists (seed 0), labelled with its reader."""
    import nrm_plugins as nrm

    manager = nrm.get_plugin_manager()
    readers = {i.name for i in manager.plugins() if "nrm_read" in i.hooks}
    out = []
    if REAL.is_dir():
        for path in sorted(p for p in REAL.glob("*/*") if p.is_file() and p.name != "MANIFEST.md"):
            scores = manager.identify(path)
            if scores and scores[0][1] in readers:
                out.append(Case(f"{path.parent.name}/{path.name}", 0, scores[0][1]))
    if storage_dir is not None and "storage" in readers:
        from nrm_plugins.model import ramps_dataset

        rng = np.random.default_rng(0)
        piezo = np.tile(np.linspace(1e-7, 0, 64), (4, 1))
        ds = ramps_dataset({"piezo": (piezo, "m", "Z"), "deflection": (rng.normal(size=piezo.shape), "V", "Defl")},
                           coords={"direction": ["approach", "retract"] * 2}, attrs={"spring_constant": 0.5})
        path = nrm.save(ds, storage_dir / "storage_model.nc")
        out.append(Case(str(path), 0, "storage"))
    return out


def plan(templates: list[Case], n_cases: int, first_seed: int = 0) -> list[Case]:
    """``n_cases`` cases spread evenly over the files (round robin), seeds counting up from ``first_seed``."""
    return [Case(templates[k % len(templates)].file, first_seed + k, templates[k % len(templates)].reader)
            for k in range(n_cases)]


def failures(results: list[dict]) -> list[dict]:
    return [r for r in results if r["outcome"] not in FINE]


def report(results: list[dict], seconds: float) -> str:
    counts = defaultdict(Counter)
    for r in results:
        counts[r["reader"]][r["outcome"]] += 1
    outcomes = ["ok", "error", "invalid", "unnamed", "crash", "exception", "memory", "timeout", "died"]
    lines = [f"{len(results)} cases in {seconds:.0f} s", "",
             "| reader | cases | " + " | ".join(outcomes) + " |", "|---" * (len(outcomes) + 2) + "|"]
    for reader in sorted(counts):
        c = counts[reader]
        lines.append(f"| {reader} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in outcomes) + " |")
    bad = failures(results)
    if bad:
        lines += ["", f"{len(bad)} failure(s) (reproduce: python benchmarks/fuzz_readers.py --file FILE --seed SEED):"]
        for r in sorted(bad, key=lambda r: (r["reader"], r["outcome"], r["file"], r["seed"])):
            lines.append(f"  [{r['outcome']}] --file {r['file']} --seed {r['seed']}  ({r.get('mutation', '')}): "
                         f"{r.get('detail', '')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case [30]")
    parser.add_argument("--memory", type=float, default=4.0, help="address-space limit per worker, GiB [4]")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--file", help="reproduce: one file (relative to shared/data/real) ...")
    parser.add_argument("--seed", type=int, help="... with this seed, in-process, with the traceback")
    parser.add_argument("--keep", type=Path, help="with --file/--seed: save the mutated file in this folder")
    args = parser.parse_args(argv)
    if args.file is not None:
        with tempfile.TemporaryDirectory() as work:
            result = run_case(Case(args.file, args.seed or 0), Path(work), keep=args.keep)
        print(result.pop("traceback", ""), end="")
        for key, value in result.items():
            print(f"{key}: {value}")
        return 0 if result["outcome"] in FINE else 1
    with tempfile.TemporaryDirectory() as storage:
        templates = example_files(Path(storage))
        if not templates:
            print(f"no example files found in {REAL}")
            return 2
        cases = plan(templates, args.cases, args.first_seed)
        start = time.monotonic()
        done = Counter()

        def progress(result):
            done[result["outcome"]] += 1
            if sum(done.values()) % 1000 == 0:
                print(f"  {sum(done.values())} cases: {dict(done)}", file=sys.stderr, flush=True)

        results = run_cases(cases, jobs=args.jobs, timeout=args.timeout, memory_limit=int(args.memory * (1 << 30)),
                            progress=progress)
    print(report(results, time.monotonic() - start))
    return 1 if failures(results) else 0


if __name__ == "__main__":
    sys.exit(main())
