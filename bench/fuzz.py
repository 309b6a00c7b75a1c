"""Mutation fuzzer of the ``.tcs`` reader: damaged and crafted files must fail
with a ``TcsError``, quickly and in bounded memory (issue 17).

    python bench/fuzz.py [--cases 10000] [--seed 17] [--jobs N] [--memory-mb 4096]
                         [--timeout 20] [--slow 5] [--in-process] [--only I,J,...]
                         [--json report.json]

Valid files of every codec and stored dtype (and the spec's vectors, and a
killed writer's ``.partial``) are mutated: bit and byte flips, truncations,
insertions and deletions, header / record / index / footer field edits with
their checksums recomputed (so the checks behind the checksums are reached),
crafted metadata (deep nesting, long numbers, non-objects, bad UTF-8), zstd
bombs (a few KB declaring, or holding, gigabytes), bytes after zstd frames,
out-of-range predict-rice escapes and absurd sizes and offsets.  Each case
opens the file with ``tcscodec.open`` and calls ``metadata()``,
``measurements(g)`` of every group and ``masks()``, then runs
``tcscodec verify`` and ``tcscodec recover`` on it and reads what recover
wrote.

By default every case runs in a child process forked from this one (no
re-import), with ``RLIMIT_AS`` at the parent's address space plus
``--memory-mb`` and an alarm at ``--timeout`` seconds; the child reports
its time and its peak resident memory above its start (``VmHWM`` after
resetting it).  ``--in-process`` runs the cases in this process with a
try/except instead (the test suite's fixed-seed slice).  Case ``I`` of seed
``S`` is always the same file: ``--only I`` replays it.

Reported: outcomes (read fine / refused with a TcsError), every exception
that is not a ``TcsError`` (with its case number), cases over ``--slow``
seconds, the slowest case, the largest peak memory, and the cases whose
peak is over the issue's budget: 64 MiB + 2 x the header's largest tile,
beyond the arrays the API must return (a measurement, the masks).  Exit
status 1 when any case raised outside ``TcsError``, crashed, timed out,
was slow or over budget.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard

import tcscodec
import tcscodec.cli.main  # noqa: F401 - imported once here, not by every forked case
from tcscodec.format.header import _FIXED as HEADER_FIXED
from tcscodec.format.records import FOOTER_MAGIC, INDEX_MAGIC, RECORD_MAGIC

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "spec" / "vectors"

_FIELDS = ("magic", "major", "minor", "header_size", "flags", "height", "width", "n_frames", "B",
           "input_dtype", "stored_dtype", "generator", "codec", "reserved", "seed", "tile_h", "tile_w",
           "quant_step", "json_size")
_FIELD_BITS = dict(zip(_FIELDS, (0, 16, 16, 32, 32, 32, 32, 64, 16, 8, 8, 8, 8, 16, 64, 32, 32, 0, 32)))
_RECORD = struct.Struct("<4sIHHHBBII")


# -- a parsed file, and files built from parts --------------------------------------------------
@dataclass
class Record:
    """One record: its key, n_frames, codec id, payload and header fields as
    they are (``size`` and ``crc`` None: computed when packed)."""

    group: int
    row: int
    col: int
    n: int
    codec: int
    payload: bytes
    size: int | None = None
    crc: int | None = None
    magic: bytes = RECORD_MAGIC

    def pack(self) -> bytes:
        size = len(self.payload) if self.size is None else self.size
        head = _RECORD.pack(self.magic, self.group, self.row, self.col, self.n, self.codec, 0, size, 0)[:20]
        crc = zlib.crc32(self.payload, zlib.crc32(head)) if self.crc is None else self.crc
        return head + struct.pack("<I", crc) + self.payload


@dataclass
class Layout:
    """A valid ``.tcs`` file taken apart: header fields, JSON, records in
    file order, and whether it had an index."""

    fields: dict
    json: bytes
    records: list[Record]
    indexed: bool = True
    n_frames: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes) -> "Layout":
        fixed = dict(zip(_FIELDS, HEADER_FIXED.unpack_from(data)))
        jsize = fixed["json_size"]
        pos = 72 + jsize + 4
        records = []
        while pos + 24 <= len(data) and data[pos:pos + 4] == RECORD_MAGIC:
            magic, g, r, c, n, codec, _r, size, crc = _RECORD.unpack_from(data, pos)
            if pos + 24 + size > len(data):
                break
            records.append(Record(g, r, c, n, codec, data[pos + 24:pos + 24 + size]))
            pos += 24 + size
        indexed = data[-8:] == FOOTER_MAGIC
        n_frames = struct.unpack_from("<Q", data, len(data) - 24)[0] if indexed else fixed["n_frames"]
        return cls(fixed, data[72:72 + jsize], records, indexed, n_frames)

    def header(self, crc: bool = True, **edits) -> bytes:
        f = {**self.fields, "json_size": len(self.json), "header_size": 72 + len(self.json) + 4}
        f.update(edits)
        body = HEADER_FIXED.pack(*(f[k] for k in _FIELDS)) + self.json
        return body + struct.pack("<I", zlib.crc32(body) if crc else f.get("crc", 0))

    def build(self, records=None, index: bool | None = None, entries=None, footer=None,
              **header_edits) -> bytes:
        """The file's bytes from (possibly edited) parts; the index lists
        ``entries`` (offset, group, row, col) if given, else the records;
        ``footer`` may set its ``index_offset`` and ``n_frames``; other
        keywords edit header fields (its CRC is recomputed)."""
        records = self.records if records is None else records
        head = self.header(**header_edits)
        out, listed, off = [head], [], len(head)
        for rec in records:
            raw = rec.pack()
            listed.append((off, rec.group, rec.row, rec.col))
            out.append(raw)
            off += len(raw)
        if index if index is not None else self.indexed:
            listed = sorted(listed, key=lambda e: e[1:]) if entries is None else entries
            body = INDEX_MAGIC + struct.pack("<Q", len(listed)) + b"".join(struct.pack("<QIHH", *e) for e in listed)
            out.append(body + struct.pack("<I", zlib.crc32(body)))
            index_offset, frames = off, self.n_frames
            if footer is not None:
                index_offset, frames = footer.get("index_offset", index_offset), footer.get("n_frames", frames)
            fhead = struct.pack("<QQ", index_offset, frames)
            out.append(fhead + struct.pack("<II", zlib.crc32(fhead), 0) + FOOTER_MAGIC)
        return b"".join(out)


def base_files(folder: Path) -> list[tuple[str, bytes]]:
    """Valid files to mutate: every codec and stored dtype, tiled and not,
    quantised, a short last group, escapes; the spec vectors; a killed writer."""
    rng = np.random.default_rng(20240617)
    made = []
    specs = [
        ("pr_u16_q", "uint16", (9, 40, 50), 4, (16, 24), "predict-rice", 3.0),
        ("pr_u8", "uint8", (6, 19, 37), 2, (19, 37), "predict-rice", 1.0),
        ("pr_u32", "uint32", (5, 20, 30), 5, (20, 16), "predict-rice", 1.0),
        ("pr_f32_q", "float32", (6, 24, 20), 3, (12, 20), "predict-rice", 0.5),
        ("sz_u16", "uint16", (7, 30, 33), 3, (16, 16), "shuffle-zstd", 1.0),
        ("zs_f32", "float32", (5, 17, 9), 2, (5, 4), "zstd", 1.0),
        ("zs_u8_one_tile", "uint8", (8, 33, 65), 4, (512, 512), "zstd", 1.0),
    ]
    for name, dtype, shape, B, tile, codec, step in specs:
        if dtype == "float32":
            frames = rng.normal(100, 30, shape).astype(np.float32)
        else:
            frames = rng.poisson(20, shape).astype(dtype)
            frames[0, 3, 5] = np.iinfo(dtype).max  # escapes in predict-rice
        path = folder / f"{name}.tcs"
        tcscodec.write(path, frames, B=B, seed=int(rng.integers(2**63)), tile=tile, codec=codec,
                       quant_step=step, metadata={"name": name, "pixel_size_A": 0.5, "list": [1, 2, 3]})
        made.append((name, path.read_bytes()))
    for p in sorted(VECTORS.glob("*.tcs")) + sorted(VECTORS.glob("*.partial")):
        made.append((p.name, p.read_bytes()))
    full = made[0][1]
    lay = Layout.parse(full)
    cut = len(lay.header()) + sum(len(r.pack()) for r in lay.records[:-2]) + 17
    made.append(("killed_partial", lay.header(n_frames=0) + full[len(lay.header()):cut]))
    return made


# -- mutations ------------------------------------------------------------------------------------
def _interesting(rng, bits: int) -> int:
    top = (1 << bits) - 1 if bits else 0
    pool = [0, 1, 2, 3, 7, 255, 256, 65535, 65536, 2**20, 2**24, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
            2**62, 2**63 - 1, 2**63, 2**64 - 1]
    pool = [v for v in pool if v <= top] + [int(rng.integers(0, top + 1, dtype=np.uint64)) if bits == 64
                                            else int(rng.integers(0, top + 1))]
    return int(pool[int(rng.integers(len(pool)))])


_BOMBS: dict = {}


def bomb(size: int, declare: bool) -> bytes:
    """A zstd frame of ``size`` zero bytes (a few KB for a GiB), declaring
    its size in the frame header or not."""
    key = (size, declare)
    if key not in _BOMBS:
        cctx = zstandard.ZstdCompressor(level=1, write_content_size=declare, write_checksum=False)
        with tempfile.TemporaryFile() as fh:
            with cctx.stream_writer(fh, size=size if declare else -1, closefd=False) as w:
                chunk = b"\x00" * (1 << 20)
                left = size
                while left:
                    w.write(chunk[:min(left, len(chunk))])
                    left -= min(left, len(chunk))
            fh.seek(0)
            _BOMBS[key] = fh.read()
    return _BOMBS[key]


def _json_craft(rng) -> bytes:
    kind = int(rng.integers(10))
    if kind == 0:
        d = int(rng.choice([65, 1000, 100_000]))
        return b"[" * d + b"]" * d
    if kind == 1:
        d = int(rng.choice([65, 1000, 100_000]))
        return b'{"a":' * d + b"1" + b"}" * d
    if kind == 2:
        return b'{"n": ' + b"9" * int(rng.choice([101, 5000, 100_000])) + b"}"
    if kind == 3:
        return rng.choice([b"[1, 2, 3]", b"42", b'"text"', b"null", b"true", b"1e999"])
    if kind == 4:
        return b'{"s": "\x1b[2J\xff\xfe"}'
    if kind == 5:
        return b'{"x": NaN, "y": -Infinity, "z": 1e400}'
    if kind == 6:
        return b'{"a": "' + b"\\\\" * 1000 + b'\\"[[[[[[" }'
    if kind == 7:
        return b"[" + b"{}," * 200_000 + b"{}]"
    if kind == 8:
        return b'{"k": "' + b"x" * int(rng.choice([1 << 19, (1 << 20) + 1])) + b'"}'
    return b'{"a": [' + b"[" * 64 + b"]" * 64 + b"]}"


def mutate(rng, name: str, data: bytes) -> tuple[str, bytes]:
    """One mutation of ``data``: (description, new bytes)."""
    n = len(data)
    kind = str(rng.choice(MUTATIONS, p=WEIGHTS))
    try:
        lay = Layout.parse(data)
    except struct.error:  # too short to take apart: bytes only
        kind = str(rng.choice(["bitflip", "byteset", "insert"]))
    if n == 0:
        return "insert", rng.bytes(int(rng.integers(1, 100)))
    if kind == "bitflip":
        out = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(n))
            out[i] ^= 1 << int(rng.integers(8))
        return kind, bytes(out)
    if kind == "byteset":
        out = bytearray(data)
        for _ in range(int(rng.integers(1, 5))):
            out[int(rng.integers(n))] = int(rng.integers(256))
        return kind, bytes(out)
    if kind == "truncate":
        return kind, data[:int(rng.integers(0, n))]
    if kind == "insert":
        i = int(rng.integers(n + 1))
        return kind, data[:i] + rng.bytes(int(rng.integers(1, 64))) + data[i:]
    if kind == "delete":
        i = int(rng.integers(n))
        return kind, data[:i] + data[i + int(rng.integers(1, 64)):]
    if kind == "header_field":
        f = str(rng.choice([k for k in _FIELDS if k not in ("magic",)]))
        if f == "quant_step":
            v = float(rng.choice([0.0, -1.0, np.inf, np.nan, 1e-300, 1e300, 0.5]))
        else:
            v = _interesting(rng, _FIELD_BITS[f])
        # header_size/json_size edits break the layout: build with the raw value
        if f in ("header_size", "json_size"):
            head = bytearray(lay.header())
            off = {"header_size": 12, "json_size": 68}[f]
            struct.pack_into("<I", head, off, v & 0xFFFFFFFF)
            body = bytes(head[:-4])
            return f"header {f}={v}", body + struct.pack("<I", zlib.crc32(body)) + data[len(head):]
        return f"header {f}={v}", lay.build(**{f: v})
    if kind == "two_header_fields":
        a = {"height": _interesting(rng, 32), "width": _interesting(rng, 32),
             "tile_h": _interesting(rng, 32), "tile_w": _interesting(rng, 32)}
        if rng.random() < 0.5:
            a["tile_h"], a["tile_w"] = a["height"], a["width"]
        return f"header sizes {a}", lay.build(**a)
    if kind == "metadata":
        j = _json_craft(rng)
        lay.json = j
        return f"metadata {j[:30]!r}...", lay.build()
    if not lay.records:
        return "truncate", data[:int(rng.integers(0, n))]
    i = int(rng.integers(len(lay.records)))
    rec = lay.records[i]
    if kind == "record_field":
        f = str(rng.choice(["group", "row", "col", "n", "codec", "size", "crc", "magic"]))
        bits = {"group": 32, "row": 16, "col": 16, "n": 16, "codec": 8, "size": 32, "crc": 32}
        if f == "magic":
            rec.magic = b"TCSX"
        else:
            setattr(rec, f, _interesting(rng, bits[f]))
        return f"record {i} {f}={getattr(rec, f)}", lay.build()
    if kind == "record_field_crc":  # a field edit whose checksum holds
        f = str(rng.choice(["group", "row", "col", "n", "codec"]))
        setattr(rec, f, _interesting(rng, {"group": 32, "row": 16, "col": 16, "n": 16, "codec": 8}[f]))
        keep_index = rng.random() < 0.5
        entries = None
        if keep_index:
            orig = Layout.parse(data)
            entries = _entries(orig)
        return f"record {i} {f}={getattr(rec, f)} (crc ok)", lay.build(entries=entries)
    if kind == "payload":
        p = bytearray(rec.payload)
        what = str(rng.choice(["flip", "append", "cut", "zeros"]))
        if what == "flip" and p:
            p[int(rng.integers(len(p)))] ^= 1 << int(rng.integers(8))
        elif what == "append":
            p += rng.bytes(int(rng.integers(1, 16)))
        elif what == "cut" and p:
            del p[int(rng.integers(len(p))):]
        else:
            p = bytearray(len(p))
        rec.payload = bytes(p)
        return f"record {i} payload {what} (crc ok)", lay.build()
    if kind == "zstd_bomb":
        size = int(rng.choice([1 << 20, 1 << 26, 1 << 30]))
        declare = bool(rng.random() < 0.5)
        b = bomb(size, declare)
        prefix = b"\x00" if lay.fields["codec"] == 3 else b""
        rec.payload = prefix + b
        return f"record {i} zstd bomb {size} declared={declare}", lay.build()
    if kind == "rice":
        if lay.fields["codec"] != 3 or not rec.payload[:1] == b"\x01":
            return "bitflip", _flip(rng, data)
        p = bytearray(rec.payload)
        what = str(rng.choice(["escape", "k", "counts"]))
        E = struct.unpack_from("<I", p, 11)[0]
        if what == "escape" and E:
            j = int(rng.integers(E))
            values = [2**61, 2**62, 2**63, 2**64 - 1, 2**52 + 1]
            struct.pack_into("<Q", p, 19 + 8 * j, values[int(rng.integers(len(values)))])
        elif what == "k":
            p[2 + int(rng.integers(9))] = int(rng.choice([0, 8, 9, 40, 62, 63, 255]))
        else:
            struct.pack_into("<II", p, 11, _interesting(rng, 32), _interesting(rng, 32))
        rec.payload = bytes(p)
        return f"record {i} predict-rice {what}", lay.build()
    if kind == "index_entry":
        if not lay.indexed:
            return "truncate", data[:int(rng.integers(0, n))]
        entries = _entries(lay)
        j = int(rng.integers(len(entries)))
        e = list(entries[j])
        f = int(rng.integers(4))
        e[f] = _interesting(rng, (64, 32, 16, 16)[f])
        entries[j] = tuple(e)
        return f"index entry {j} field {f}={e[f]}", lay.build(entries=entries)
    if kind == "index_count":
        if not lay.indexed:
            return "truncate", data[:int(rng.integers(0, n))]
        entries = _entries(lay)
        cut = int(rng.integers(len(entries) + 1))
        more = entries[:cut] + entries[:int(rng.integers(3))]
        return f"index with {len(more)} entries", lay.build(entries=more)
    if kind == "footer":
        f = str(rng.choice(["index_offset", "n_frames"]))
        v = _interesting(rng, 64)
        if f == "n_frames" and rng.random() < 0.5:
            v = int(rng.integers(2**31, 2**63)) if rng.random() < 0.5 else 2**64 - 1
        return f"footer {f}={v}", lay.build(index=True, footer={f: v})
    if kind == "swap":
        j = int(rng.integers(len(lay.records)))
        recs = list(lay.records)
        recs[i], recs[j] = recs[j], recs[i]
        return f"records {i} and {j} swapped", lay.build(records=recs, entries=_entries(lay))
    if kind == "duplicate":
        recs = list(lay.records)
        recs.insert(int(rng.integers(len(recs) + 1)), rec)
        return f"record {i} duplicated", lay.build(records=recs)
    if kind == "drop":
        recs = [r for k, r in enumerate(lay.records) if k != i]
        return f"record {i} dropped", lay.build(records=recs, index=bool(rng.random() < 0.5))
    raise AssertionError(kind)


def _flip(rng, data: bytes) -> bytes:
    out = bytearray(data)
    out[int(rng.integers(len(out)))] ^= 1 << int(rng.integers(8))
    return bytes(out)


def _entries(lay: Layout) -> list[tuple]:
    off = len(lay.header())
    entries = []
    for rec in lay.records:
        entries.append((off, rec.group, rec.row, rec.col))
        off += len(rec.pack())
    return sorted(entries, key=lambda e: e[1:])


_MUT = {
    "bitflip": 14, "byteset": 6, "truncate": 8, "insert": 4, "delete": 4,
    "header_field": 12, "two_header_fields": 4, "metadata": 7,
    "record_field": 6, "record_field_crc": 6, "payload": 7, "zstd_bomb": 3, "rice": 5,
    "index_entry": 5, "index_count": 2, "footer": 4, "swap": 1, "duplicate": 1, "drop": 1,
}
MUTATIONS = list(_MUT)
WEIGHTS = np.array(list(_MUT.values()), float) / sum(_MUT.values())


def make_case(seed: int, i: int, bases) -> tuple[str, bytes]:
    """Case ``i`` of ``seed``: (description, file bytes); always the same."""
    rng = np.random.default_rng([seed, i])
    name, data = bases[int(rng.integers(len(bases)))]
    what, out = mutate(rng, name, data)
    if rng.random() < 0.15:  # a second mutation on top
        what2, out = mutate(rng, name, out)
        what = f"{what}; {what2}"
    return f"{name}: {what}", out


# -- running a case -------------------------------------------------------------------------------
def exercise(path: Path, info: dict | None = None) -> str:
    """What a user does with a file: open, metadata, every group's
    measurement, the masks, ``tcscodec verify`` and ``tcscodec recover``.
    Returns 'ok' or the last TcsError class that refused something;
    anything else raises.  ``info`` gets the bytes the API had to return
    at once (a measurement, the masks) and the largest legal tile's, for
    the memory budget."""
    import contextlib
    import io

    import click

    from tcscodec.cli.main import main as cli

    outcome = "ok"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r = tcscodec.open(path)
        except tcscodec.TcsError as exc:
            return type(exc).__name__
        with r:
            r.metadata()
            c, h = r._container, r.header
            size = np.dtype(h.stored_dtype).itemsize
            if info is not None:
                info["tile"] = min(h.tile[0], h.height) * min(h.tile[1], h.width) * size
                info["outputs"] = h.height * h.width * (size + h.B)  # a measurement, the masks
            rows, cols = h.grid
            for g in range(min(r.n_groups, 64)):
                try:
                    r.measurements(g)
                except tcscodec.TcsError as exc:
                    outcome = type(exc).__name__
                for row in range(min(rows, 4)):
                    for col in range(min(cols, 4)):
                        c.raw_record(g, row, col)
            try:
                r.masks()
            except tcscodec.TcsError as exc:
                outcome = type(exc).__name__
        # The CLI's verify and recover (one-line errors are ClickExceptions).
        out = path.with_name(path.name + ".recovered.tcs")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for args in (["verify", str(path)], ["recover", str(path), "-o", str(out), "-f"]):
                try:
                    cli.main(args, standalone_mode=False)
                except click.ClickException:
                    pass
        if out.exists():
            try:
                with tcscodec.open(out) as r:
                    for g in range(min(r.n_groups, 64)):
                        try:
                            r.measurements(g)
                        except tcscodec.TcsError:
                            pass
            except tcscodec.TcsError as exc:
                raise AssertionError(f"recover wrote a file that does not open: {exc}") from None
            finally:
                out.unlink()
    return outcome


def _vm(field_name: str) -> int:
    with open("/proc/self/status") as fh:
        m = re.search(rf"{field_name}:\s+(\d+) kB", fh.read())
    return int(m.group(1)) * 1024 if m else 0


def _child(path: Path, data: bytes, memory: int, timeout: float, wfd: int) -> None:
    """In the forked child: limits, the case, a JSON line on ``wfd``."""
    try:
        path.write_bytes(data)
        resource.setrlimit(resource.RLIMIT_AS, (_vm("VmSize") + memory,) * 2)
        signal.alarm(int(np.ceil(timeout)))
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        start = _vm("VmRSS")
        t0 = time.perf_counter()
        res, info = {"outcome": None}, {}
        try:
            res["outcome"] = exercise(path, info)
        except BaseException as exc:  # noqa: BLE001 - the point: anything not a TcsError
            res["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            res["trace"] = traceback.format_exc()[-2000:]
        res["time"] = time.perf_counter() - t0
        res["peak"] = max(0, _vm("VmHWM") - start)
        # The target: 64 MB + 2 x the largest legal tile, beyond what
        # the API must hand back at once (a measurement, the masks).
        res["budget"] = (64 << 20) + 2 * info.get("tile", 0) + info.get("outputs", 0)
        os.write(wfd, (json.dumps(res) + "\n").encode())
    finally:
        os._exit(0)


def run_forked(cases, folder: Path, jobs: int, memory: int, timeout: float, log):
    """Run ``(i, description, bytes)`` cases, ``jobs`` children at a time."""
    results, running = {}, {}
    it = iter(cases)
    done = False
    while not done or running:
        while not done and len(running) < jobs:
            try:
                i, what, data = next(it)
            except StopIteration:
                done = True
                break
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                _child(folder / f"case{i}.tcs", data, memory, timeout, w)
            os.close(w)
            running[pid] = (i, what, r, time.perf_counter())
        if not running:
            break
        pid, status = os.wait()
        i, what, r, t0 = running.pop(pid)
        with os.fdopen(r) as fh:
            line = fh.read().strip()
        (folder / f"case{i}.tcs").unlink(missing_ok=True)
        if line:
            res = json.loads(line)
        else:
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            res = {"outcome": None, "time": time.perf_counter() - t0, "peak": 0,
                   "error": "timeout" if sig == signal.SIGALRM else f"crash (signal {sig}, status {status})"}
        res["what"] = what
        results[i] = res
        log(i, res)
    return results


def run_in_process(cases, folder: Path, log):
    """Run the cases here, with a try/except (no memory limit)."""
    results = {}
    for i, what, data in cases:
        path = folder / f"case{i}.tcs"
        path.write_bytes(data)
        t0 = time.perf_counter()
        res = {"outcome": None}
        try:
            res["outcome"] = exercise(path)
        except Exception as exc:  # noqa: BLE001
            res["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            res["trace"] = traceback.format_exc()[-2000:]
        res["time"] = time.perf_counter() - t0
        res["what"] = what
        path.unlink(missing_ok=True)
        results[i] = res
        log(i, res)
    return results


def summarise(results: dict, slow: float) -> dict:
    outcomes: dict[str, int] = {}
    for r in results.values():
        key = r["outcome"] or "FAILED"
        outcomes[key] = outcomes.get(key, 0) + 1
    errors = {i: r for i, r in results.items() if r.get("error")}
    slowest = max(results.items(), key=lambda kv: kv[1]["time"]) if results else (None, {"time": 0})
    peak = max(results.items(), key=lambda kv: kv[1].get("peak", 0)) if results else (None, {})
    over = {i: {"what": r["what"], "peak": r["peak"], "budget": r["budget"]}
            for i, r in results.items() if r.get("budget") and r.get("peak", 0) > r["budget"]}
    return {
        "cases": len(results),
        "outcomes": outcomes,
        "errors": {i: {"what": r["what"], "error": r["error"], "trace": r.get("trace", "")}
                   for i, r in sorted(errors.items())},
        "slow": {i: {"what": r["what"], "time": r["time"]} for i, r in results.items() if r["time"] > slow},
        "slowest": {"case": slowest[0], "time": slowest[1]["time"], "what": slowest[1].get("what")},
        "peak": {"case": peak[0], "bytes": peak[1].get("peak", 0), "what": peak[1].get("what")},
        "over_budget": over,
    }


def run(n_cases: int, seed: int = 17, *, jobs: int = 1, memory_mb: int = 4096, timeout: float = 20,
        in_process: bool = False, only=None, log=None) -> dict:
    """Make the base files, run ``n_cases`` cases (or the ``only`` ones), and
    return :func:`summarise`'s report (with ``slow`` > 5 s)."""
    log = log or (lambda i, r: None)
    with tempfile.TemporaryDirectory(prefix="tcsfuzz-") as d:
        folder = Path(d)
        bases = base_files(folder)
        ids = only if only is not None else range(n_cases)
        cases = ((i, *make_case(seed, i, bases)) for i in ids)
        if in_process:
            results = run_in_process(cases, folder, log)
        else:
            results = run_forked(cases, folder, jobs, memory_mb << 20, timeout, log)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--memory-mb", type=int, default=4096, help="address space a case may add (RLIMIT_AS)")
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--slow", type=float, default=5.0, help="report cases slower than this (s)")
    ap.add_argument("--in-process", action="store_true", help="no child processes (no limits)")
    ap.add_argument("--only", help="comma-separated case numbers to replay")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case")
    a = ap.parse_args(argv)
    only = [int(x) for x in a.only.split(",")] if a.only else None
    t0 = time.perf_counter()
    count = [0]

    def log(i, r):
        count[0] += 1
        if a.verbose or r.get("error"):
            print(f"case {i}: {r['outcome'] or r.get('error')}  {r['time']:.2f}s  {r['what']}", flush=True)
            if r.get("trace") and (a.verbose or only):
                print(r["trace"])
        elif count[0] % 1000 == 0:
            print(f"{count[0]} cases, {time.perf_counter() - t0:.0f} s", flush=True)

    results = run(a.cases, a.seed, jobs=a.jobs, memory_mb=a.memory_mb, timeout=a.timeout,
                  in_process=a.in_process, only=only, log=log)
    rep = summarise(results, a.slow)
    rep["seconds"] = time.perf_counter() - t0
    print(f"{rep['cases']} cases in {rep['seconds']:.0f} s: " +
          ", ".join(f"{k} {v}" for k, v in sorted(rep["outcomes"].items())))
    print(f"exceptions outside TcsError (crashes, timeouts included): {len(rep['errors'])}")
    for i, e in list(rep["errors"].items())[:20]:
        print(f"  case {i}: {e['error']}  ({e['what']})")
    print(f"cases over {a.slow:g} s: {len(rep['slow'])}")
    print(f"slowest case: {rep['slowest']['case']} {rep['slowest']['time']:.2f} s ({rep['slowest']['what']})")
    if not a.in_process:
        print(f"largest peak memory above the case's start: {rep['peak']['bytes'] / 2**20:.1f} MiB "
              f"(case {rep['peak']['case']}: {rep['peak']['what']})")
        print(f"cases over 64 MiB + 2 x the largest legal tile + the arrays returned: {len(rep['over_budget'])}")
        for i, o in list(rep["over_budget"].items())[:10]:
            print(f"  case {i}: {o['peak'] / 2**20:.1f} MiB > {o['budget'] / 2**20:.1f} MiB ({o['what']})")
    if a.json:
        a.json.write_text(json.dumps(rep, indent=1))
    return 1 if rep["errors"] or rep["slow"] or rep["over_budget"] else 0


if __name__ == "__main__":
    sys.exit(main())
