"""The file commands of ``tcscodec``: ``encode``, ``info``, ``decode``,
``decoders``, ``verify`` and ``recover``, as plain click commands.

:mod:`tcscodec.cli.main` adds them to the ``tcscodec`` group; ``demo``
invokes some of them.  Only :mod:`tcscodec.cli.common` is imported from the
CLI, so no command module imports the group back.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from pathlib import Path

import click
import numpy as np

from tcscodec import TcsError
from tcscodec.format import CODECS
from tcscodec.motion import MAX_DOSE, MAX_NON_RIGIDITY, MAX_ROUGHNESS, MIN_SPEED, RIGID_START_FRAMES

from .common import CONTEXT, GroupSize, check_output, parse_quant_step, safe_text

__all__ = ["encode", "info", "decode", "decoders", "verify", "recover"]


def _parse_meta(items) -> dict:
    meta = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--meta")
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return meta


# -- encode ------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-B", "B", type=GroupSize(), default="10", show_default=True,
              help="Frames per measurement (compression factor before zstd), or 'auto': groups of "
                   "--min-B to --max-B frames, each ended where the scene changes (a cut always ends one).")
@click.option("--min-B", "min_B", type=click.IntRange(1, 64),
              help="-B auto: the shortest group a gradual change makes [4].")
@click.option("--max-B", "max_B", type=click.IntRange(2, 64), help="-B auto: the longest group [64].")
@click.option("--auto-tolerance", type=click.FloatRange(0, min_open=True),
              help="-B auto: the change since a group's start, in shot-noise stds, that ends it [0.5]; "
                   "smaller: shorter groups, better on motion, larger files.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output .tcs file [INPUT with .tcs].")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), help="Mask seed [random, recorded in the file].")
@click.option("--tile", type=click.IntRange(16, 65535), default=512, show_default=True,
              help="Tile size of the stored measurements (random-access unit).")
@click.option("--quantize", "quantize", default="auto", show_default=True,
              help="Measurement quantisation step in the input's units. 'auto': the largest step "
                   "(odd for integer frames) up to 1.5x the measurement's shot-noise std, so rounding adds "
                   "at most 3/16 of the shot-noise variance (files 2-4x smaller than lossless, about "
                   "0.1-0.3 dB lower PSNR after decoding, bench/quantize.py); 1: lossless, the exact measurement.")
@click.option("--device", default="cpu", show_default=True, help="Encoder device: cpu or cuda.")
# --codec offers the registered record codecs (tcscodec.format.codecs)
@click.option("--codec", type=click.Choice(list(CODECS.values())), default="predict-rice",
              show_default=True,
              help="Record codec. predict-rice predicts each value from its neighbours and their mask sums "
                   "(1.2-1.9x smaller files than shuffle-zstd); the zstd codecs make files that .tcs 1.0 readers read.")
@click.option("--level", type=click.IntRange(1, 22), default=3, show_default=True,
              help="zstd level (zstd codecs, and predict-rice tiles it cannot predict).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE",
              help="User metadata (repeatable), e.g. pixel_size_A=0.5; overrides what the input file says.")
@click.option("--signal", type=int, metavar="N",
              help="For EM files holding several image stacks: which signal to encode (rosettasciio's order).")
@click.option("-j", "--jobs", type=click.IntRange(1, 4096), default=1, show_default=True,
              help="Inputs encoded at once, each in its own process (several INPUTs).")
@click.option("--threads", type=click.IntRange(1, 4096), default=os.cpu_count() or 1, show_default="all cores",
              help="Cores the encoder uses (mask sums, quantisation, record coding), shared by the --jobs.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def encode(inputs, B, min_B, max_B, auto_tolerance, output, seed, tile, quantize, device, codec, level, meta,
           signal, jobs, threads, force, quiet):
    """Encode movies into .tcs files (each INPUT to INPUT.tcs, or -o for one).

    \b
    INPUT: a multi-page TIFF, .npy, MRC, a folder of TIFFs, an HDF5 dataset
    (file.h5:/path/to/dataset), or an EM file rosettasciio reads (DM3/DM4,
    EMD Velox and NCEM, SER/EMI, hspy/zspy, ...; pip install 'tcscodec[em]').
    It must be a T x H x W stack of grayscale frames. Its calibration (pixel
    size, frame rate, detector, ...) is stored in the file's metadata.
    Several INPUTs are encoded --jobs at a time; one that fails is named and
    leaves no output, the others are still encoded (exit status 1).
    """
    if output is not None and len(inputs) > 1:
        raise click.UsageError("-o names one output: give one INPUT, or none and get INPUT.tcs each")
    auto = {k: v for k, v in (("min_B", min_B), ("max_B", max_B), ("auto_tolerance", auto_tolerance))
            if v is not None}
    if auto and B != "auto":
        raise click.UsageError("--min-B, --max-B and --auto-tolerance go with -B auto")
    if device != "cpu" and B == "auto":
        raise click.UsageError("-B auto encodes on the CPU only (the CUDA encoder makes groups of one length)")
    # the --jobs share the cores: each writer gets its part of --threads
    share = max(1, threads // min(jobs, len(inputs)))
    options = dict(B=B, auto=auto, output=output, seed=seed, tile=tile, quantize=quantize, device=device, codec=codec,
                   level=level, meta=meta, signal=signal, force=force, threads=share)
    if len(inputs) == 1:
        click.echo(_encode_one(inputs[0], quiet=quiet, **options))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    failed = []
    # spawn, not fork: a process forked from one that runs numba's or
    # torch's thread pools can hang or die in them
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(inputs)), mp_context=spawn) as pool:
        futures = [(path, pool.submit(_encode_job, path, options)) for path in inputs]
        for path, future in futures:
            try:
                click.echo(future.result())
            except (TcsError, OSError, click.ClickException) as exc:
                message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
                click.echo(f"error: {safe_text(str(path))}: {safe_text(message)}", err=True)
                failed.append(path)
    if failed:
        raise click.exceptions.Exit(1)


def _encode_job(path: Path, options: dict) -> str:
    """One INPUT of a many-input encode, in a worker process (no progress bar)."""
    return _encode_one(path, quiet=True, **options)


def _encode_one(input: Path, *, B, auto, output, seed, tile, quantize, device, codec, level, meta, signal, force,
                quiet, threads=None) -> str:
    """Encode one INPUT; returns the summary line."""
    from tqdm import tqdm

    import tcscodec
    from tcscodec.movies import open_movie

    user_meta = _parse_meta(meta)
    step = parse_quant_step(quantize)
    with open_movie(input, signal=signal) as movie:
        output = output or movie.path.with_suffix(".tcs")
        check_output(output, force)
        metadata = {**movie.metadata, "source": movie.name, **user_meta}
        t0 = time.perf_counter()
        w = tcscodec.open(output, "w", B=B, seed=seed, tile=tile, metadata=metadata,
                          quant_step=step, device=device, codec=codec, level=level, threads=threads, **auto)
        try:
            with w:
                for frame in tqdm(movie, total=len(movie), unit="frame", desc="encode", disable=quiet):
                    w.write(frame)
        except KeyboardInterrupt:
            _interrupted(w, output)
        dt = time.perf_counter() - t0
        lossy = "lossless" if w.quant_step == 1 else f"quant_step {w.quant_step:g}"
    raw = int(np.prod(movie.shape)) * movie.dtype.itemsize
    size = output.stat().st_size
    groups = f"B={B}"
    if B == "auto":
        with tcscodec.open(output) as r:
            lengths = r.group_lengths()
        groups = (f"B=auto: {len(lengths)} groups of {int(lengths.min())}..{int(lengths.max())} frames "
                  f"(mean {lengths.mean():.1f})")
    return (f"{output}: {movie.shape[0]} frames {movie.shape[1]}x{movie.shape[2]} {movie.dtype.name}, "
            f"{groups}, {lossy}, {size:,} bytes, ratio {raw / size:.1f}x, {movie.shape[0] / dt:.1f} frames/s")


def _interrupted(w, output: Path) -> None:
    """Ctrl-C during encode: say where the groups written so far are and
    how to keep them, exit 130 (the writer left its .partial file)."""
    if w.partial_path is None:
        click.echo(f"interrupted after {w.frames_written} frames, before the first group was "
                   "written: nothing to keep", err=True)
    else:
        click.echo(f"interrupted after {w.frames_written} frames; the complete groups are in "
                   f"{safe_text(w.partial_path)}; keep them with:\n"
                   f"  tcscodec recover {safe_text(w.partial_path)} -o {safe_text(output)}", err=True)
    raise click.exceptions.Exit(130)


# -- info -----------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--motion", "with_motion", is_flag=True,
              help="Also estimate the movie's drift from the measurements (reads every group).")
def info(file, as_json, with_motion):
    """Show a .tcs file's header, metadata and real compression ratio
    (and, with --motion, the drift the decoders compensate)."""
    import tcscodec

    with tcscodec.open(file) as r:
        m = r.metadata()
        T, H, W = r.shape
        size = file.stat().st_size
        raw = T * H * W * r.input_dtype.itemsize
        rows, cols = r.header.grid
        m.update(file=str(file), file_bytes=size, raw_bytes=raw, groups=r.n_groups,
                 group_lengths=r._container.layout.histogram(),
                 tile_grid=[rows, cols], ratio=raw / size if size else 0.0,
                 bits_per_pixel=8 * size / (T * H * W) if T else 0.0)
        if with_motion:
            m["motion"] = r.motion().summary()
    if as_json:
        click.echo(json.dumps(m, indent=2, default=list))
        return
    click.echo(f"file        {safe_text(file)}  ({size:,} bytes, format {m['version']}"
               f"{'' if m['complete'] else ', INCOMPLETE: recovered groups only'})")
    click.echo(f"movie       {T} frames x {H} x {W}  {m['dtype']}  ({raw:,} bytes raw)")
    B = f"B<={m['B']} (variable groups)" if m["variable_groups"] else f"B={m['B']}"
    click.echo(f"encoding    {B}  {r.n_groups} groups  measurement {m['stored_dtype']}"
               f"  quant_step {m['quant_step']:g}  codec {m['codec']}")
    click.echo("groups      " + _histogram(m["group_lengths"]))
    click.echo(f"masks       {m['mask_generator']}  seed {m['mask_seed']}")
    click.echo(f"tiles       {m['tile'][0]}x{m['tile'][1]}  grid {rows}x{cols}")
    click.echo(f"ratio       {m['ratio']:.2f}x real (raw bytes / file bytes), {m['bits_per_pixel']:.3f} bits/pixel")
    if with_motion:
        mo = m["motion"]
        click.echo(f"motion      drift {mo['speed_median_px']:.2f} px/frame (median; max {mo['speed_max_px']:.2f}), "
                   f"{mo['travel_px']:.1f} px in all; compensated in {mo['groups_compensated']} of "
                   f"{mo['groups']} groups ({mo['groups_rigid_start']} from a rigid start"
                   + (f", {mo['groups_start_open']} whose start the decoder picks from the measurements"
                      if mo["groups_start_open"] else "") + ")")
        dose, rough, rigid = mo["dose"], mo["roughness"], mo["non_rigidity"]
        click.echo(f"dose        {dose if isinstance(dose, str) else format(dose, '.3g')} e-/px/frame "
                   f"(from the shot noise); path roughness {'-' if rough is None else format(rough, '.2f')}, "
                   f"non-rigidity {'-' if rigid is None else format(rigid, '.2f')} "
                   f"(decode compensates groups at >= {MIN_SPEED:g} px/frame, <= {MAX_DOSE:g} "
                   f"e-/px/frame, roughness <= {MAX_ROUGHNESS:g} and non-rigidity <= {MAX_NON_RIGIDITY:g})")
    for k, v in m["user"].items():
        click.echo(f"metadata    {safe_text(k)} = {safe_text(v)}")


# -- decode ---------------------------------------------------------------------------------------------
def _parse_frames(spec: str | None, n: int) -> list[int]:
    if not spec:
        return list(range(n))
    out: list[int] = []
    for part in spec.split(","):
        if ":" in part:
            out.extend(range(*slice(*(int(p) if p else None for p in part.split(":"))).indices(n)))
        else:
            i = int(part)
            if not -n <= i < n:
                raise click.BadParameter(f"frame {i} is out of range 0..{n - 1}", param_hint="--frames")
            out.append(i % n)
    return out


def _parse_region(spec: str | None):
    if not spec:
        return None
    try:
        (y0, y1), (x0, x1) = (tuple(int(v) for v in p.split(":")) for p in spec.split(","))
    except ValueError:
        raise click.BadParameter("use Y0:Y1,X0:X1, e.g. 0:512,1024:1536", param_hint="--region") from None
    return (y0, y1, x0, x1)


@click.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output .tif or .npy.")
@click.option("--decoder", help="Decoder name [best available]; see 'tcscodec decoders'.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--frames", help="Frames to decode: 'A:B', 'A:B:STEP' or 'I,J,K' [all].")
@click.option("--region", help="Window to decode: 'Y0:Y1,X0:X1' [whole frame].")
@click.option("--dtype", type=click.Choice(["input", "float32"]), default="input", show_default=True,
              help="Output dtype: the input's (rounded and clipped), or float32.")
@click.option("--tile", type=int, help="Decoder tile size [decoder default].")
@click.option("--overlap", type=int, help="Tile overlap [decoder default].")
@click.option("--motion", type=click.Choice(["auto", "checked", "off"]), default="auto", show_default=True,
              help=f"auto: estimate the drift from the file and decode in the moving frame the groups "
                   f"moving >= {MIN_SPEED:g} px/frame on a smooth path, in movies of <= {MAX_DOSE:g} e-/px/frame "
                   f"whose scene moves as one within a tile; the others decode as still (up to +4 dB on smooth "
                   f"drift, but some movies lose up to 3 dB: README, 'Motion'). checked: also decode as still "
                   f"the groups whose compensated frames predict the neighbouring groups' measurements worse "
                   f"than their still frames, and as one rigid image moved along the path (decoder rigid-tv) "
                   f"those where that predicts them far better (each group is decoded three times, whole or a "
                   f"central window, to check; smaller losses, smaller gains, and large gains on a specimen "
                   f"that only drifts). off: decode every group as still, and skip the estimate "
                   f"(which reads every group once).")
@click.option("--rigid-start/--no-rigid-start", default=True, show_default=True,
              help=f"With --motion auto or checked and the learned decoder: start groups of up to "
                   f"{RIGID_START_FRAMES} frames in a movie whose path is smooth and whose scene moves as one "
                   "from the rigid-scene solution (the group as one image moved along the path) instead of "
                   "GAP-TV in the moving frame, and longer groups of such a movie where a few of them decoded "
                   "both ways say it predicts the measurements better (README, 'Motion').")
@click.option("--threads", type=click.IntRange(1, 4096), default=os.cpu_count() or 1, show_default="all cores",
              help="Groups decoded at once on this machine, each on one torch thread.")
@click.option("--workers", type=click.IntRange(1, 4096),
              help="Decode on a local dask.distributed cluster of N single-threaded worker processes.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Decode on a running dask.distributed scheduler, e.g. tcp://10.0.0.5:8786.")
@click.option("--skip-damaged", is_flag=True,
              help="Decode every intact group of a damaged file: the frames of a damaged group are "
                   "written as NaN (0 for integer output), with a warning naming the groups.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def decode(file, output, decoder, device, frames, region, dtype, tile, overlap, motion, rigid_start, threads,
           workers, scheduler, skip_damaged, force, quiet):
    """Decode a .tcs file into a TIFF stack or .npy movie.

    Groups are decoded in parallel (--threads on this machine, --workers or
    --scheduler on dask.distributed), each worker reopening the file by
    path; the output is written in order, a few groups behind.

    TIFFs carry the file's calibration and metadata: uint8, uint16 and
    float32 movies as ImageJ hyperstacks (pixel size in nm, frame interval,
    the metadata as JSON in Info), uint32 ones with resolution tags in
    centimetres and the metadata in tifffile's JSON description."""
    from tqdm import tqdm

    import tcscodec
    from tcscodec.decoders import default_decoder
    from tcscodec.format import TcsDamageWarning
    from tcscodec.movies import write_movie

    check_output(output, force)
    opts = {k: v for k, v in (("tile", tile), ("overlap", overlap)) if v is not None}
    opts["motion"] = motion != "off"
    opts["motion_check"] = motion == "checked"
    if not rigid_start:
        opts["rigid_start"] = False
    if skip_damaged:
        opts["skip_damaged"] = True
    with warnings.catch_warnings(), tcscodec.open(file, decoder=decoder, device=device, dtype=dtype, **opts) as r:
        warnings.simplefilter("ignore", TcsDamageWarning)  # named below, once
        wanted = _parse_frames(frames, r.n_frames)
        if not wanted:
            raise click.ClickException("no frames selected")
        damaged = _damaged_groups(r, sorted({r.locate(i)[0] for i in wanted}))
        if damaged and not skip_damaged:
            g, problems = next(iter(damaged.items()))
            raise click.ClickException(safe_text(f"{problems[0]} (damaged group(s) {_groups(damaged)}; "
                                             "--skip-damaged decodes the others)"))
        reg = _parse_region(region)
        y0, y1, x0, x1 = reg or (0, r.shape[1], 0, r.shape[2])
        out_dtype = r.dtype
        bar = tqdm(total=len(wanted), unit="frame", desc=f"decode ({decoder or default_decoder()})", disable=quiet)

        with _decode_executor(threads, workers, scheduler) as executor:

            def produce():
                if executor is None or wanted != sorted(wanted):
                    for i in wanted:
                        f = r.read(i, region=reg)
                        bar.update(1)
                        yield f
                    return
                groups = sorted({r.locate(i)[0] for i in wanted})
                todo = list(wanted)
                for g, block in r.iter_groups(groups, region=reg, executor=executor):
                    while todo and r.locate(todo[0])[0] == g:
                        bar.update(1)
                        yield block[r.locate(todo.pop(0))[1]]

            write_movie(output, produce(), (len(wanted), y1 - y0, x1 - x0), out_dtype,
                        metadata=r.metadata()["user"], frame_step=_frame_step(wanted))
        bar.close()
    click.echo(f"{output}: {len(wanted)} frames {y1 - y0}x{x1 - x0} {out_dtype.name}")
    if damaged:
        fill = "NaN" if out_dtype.kind == "f" else "0"
        click.echo(safe_text(f"warning: damaged group(s) {_groups(damaged)} written as {fill} "
                         f"(frames {_groups(damaged, r)}): " + "; ".join(p[0] for p in damaged.values())),
                   err=True)


def _damaged_groups(r, groups) -> dict:
    """``{group: [problem, ...]}`` for the damaged ones among ``groups``
    (every record read and decompressed; nothing decoded)."""
    out = {}
    for g in groups:
        problems = r._container.check_group(g)
        if problems:
            out[g] = problems
    return out


def _groups(groups, reader=None, most: int = 8) -> str:
    """"3, 7, 9" (or, with the reader, their frames "30-39, 70-79"), the first ``most``."""
    gs = sorted(groups)
    items = [str(g) if reader is None else
             f"{reader.group_start(g)}-{reader.group_start(g) + reader.group_frames(g) - 1}" for g in gs[:most]]
    return ", ".join(items) + (f" and {len(gs) - most} more" if len(gs) > most else "")


def _histogram(counts: dict, most: int = 12) -> str:
    """Group lengths as "64 x 12, 7 x 1, 3 x 2" (length x groups, the most
    common first, at most ``most``)."""
    if not counts:
        return "none"
    items = sorted(counts.items(), key=lambda kv: (-kv[1], -kv[0]))
    text = ", ".join(f"{n} frames x {c}" for n, c in items[:most])
    if len(items) > most:
        text += f", and {len(items) - most} other lengths"
    total = sum(counts.values())
    mean = sum(n * c for n, c in counts.items()) / total
    return f"{text}  (mean {mean:.1f} frames)"


def _frame_step(wanted: list[int]) -> int | None:
    """Spacing of the decoded frames (1 for one frame), None when uneven:
    the decoded TIFF's frame interval is the file's times this."""
    steps = {b - a for a, b in zip(wanted, wanted[1:], strict=False)}  # pairs: one shorter
    if not steps:
        return 1
    step = steps.pop()
    return step if not steps and step > 0 else None


@contextlib.contextmanager
def _decode_executor(threads: int, workers: int | None, scheduler: str | None):
    """Where `decode` runs its groups: None (here, one at a time), a thread
    pool, or a dask.distributed client.  Torch gets one thread per decoding
    thread: on small tiles its own threads make decoding 3-5x slower."""
    from tcscodec.decoders import require_torch

    torch = require_torch()

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if workers or scheduler:
            try:
                import distributed
            except ImportError:
                raise click.ClickException("--workers and --scheduler need dask.distributed: "
                                           "pip install 'tcscodec[dask]'") from None
            if scheduler:
                with distributed.Client(scheduler) as client:
                    yield client
            else:
                # One torch thread per worker process (torch reads it at import).
                with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                              dashboard_address=None, env={"OMP_NUM_THREADS": "1"}) as cluster, \
                        distributed.Client(cluster) as client:
                    yield client
        elif threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                yield pool
        else:
            yield None
    finally:
        torch.set_num_threads(saved)


@click.command(context_settings=CONTEXT)
def decoders():
    """List the available decoders (the default first)."""
    from tcscodec import weights
    from tcscodec.decoders import available_decoders, default_decoder

    default = default_decoder()
    for name in sorted(available_decoders(), key=lambda n: n != default):
        note = "  (default)" if name == default else ""
        if weights.available(name):
            rec = weights.zoo()[name]
            note += f"  (weights {rec['file']}, {rec.get('steps', '?')} training steps, sha256 {rec['sha256'][:16]}...)"
        elif name in weights.zoo() or name == "tcs-unfold":
            note += "  (no weights shipped: train with 'tcscodec train')"
        click.echo(f"{name}{note}")


# -- verify / recover --------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(path_type=Path))
def verify(file):
    """Check a file: its index, and every record's checksum and payload.

    Exit status 0 only for a complete, intact file. Status 1, with a line
    per problem, for a file that had to be rescanned (no valid index: a
    killed writer's, a truncated or damaged one; 'tcscodec recover' repairs
    it), that is truncated, or that has damaged records (each named by
    group and tile; 'decode --skip-damaged' decodes the others)."""
    import tcscodec
    from tcscodec.format import TcsRecoveryWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TcsRecoveryWarning)
        r = tcscodec.open(file)
    with r:
        c = r._container
        rows, cols = r.header.grid
        problems = []
        if not c.indexed:
            problems.append(f"{file}: no valid index ({c.recovery}): the records were rescanned, "
                            f"{r.n_groups} complete group(s), {r.n_frames} frame(s); "
                            "'tcscodec recover' writes a repaired file")
        if c.truncated:
            problems.append(f"{file}: truncated: the header says {c.expected_frames} frames, "
                            f"{r.n_frames} are left")
        damaged = _damaged_groups(r, range(r.n_groups))
        for found in damaged.values():
            problems.extend(found)
        if problems:
            for p in problems[:50]:
                click.echo(safe_text(p))
            if len(problems) > 50:
                click.echo(f"... and {len(problems) - 50} more")
            what = f"{len(damaged)} damaged group(s) ({_groups(damaged)})" if damaged else "no damaged record"
            raise click.ClickException(safe_text(f"{file}: FAILED: {what}"
                                             f"{'' if c.indexed else ', needed recovery'}"
                                             f"{', truncated' if c.truncated else ''}"))
        click.echo(safe_text(f"{file}: OK, {r.n_groups} groups x {rows * cols} tiles, {r.n_frames} frames"))


@click.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Repaired .tcs file.")
@click.option("--skip-damaged/--no-skip-damaged", default=True, show_default=True,
              help="Keep going past damaged records (copied as they are, so the repaired file names "
                   "the same damage and 'decode --skip-damaged' decodes every intact group); "
                   "--no-skip-damaged fails on the first.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing output file.")
def recover(file, output, skip_damaged, force):
    """Rewrite the groups of an unfinished (*.partial), truncated or damaged
    file into a valid .tcs file with an index. Records are copied, not
    re-encoded: intact ones as they are, damaged ones byte for byte (their
    checksum still fails), and one a rescan lost as an empty record whose
    checksum fails."""
    import struct

    from tcscodec.format import ContainerReader, ContainerWriter, TcsRecoveryWarning
    from tcscodec.format.records import pack_record

    check_output(output, force)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TcsRecoveryWarning)
        src = ContainerReader(file)
    damaged: dict[int, list[str]] = {}
    with src:
        header = src.header.with_frames(src.n_frames)
        dst = ContainerWriter(output, header)
        try:
            rows, cols = header.grid
            for g in range(src.n_groups):
                n = src.group_frames(g)
                for row in range(rows):
                    for col in range(cols):
                        try:
                            dst.write_record(g, row, col, n, src.read_payload(g, row, col))
                            continue
                        except TcsError as exc:
                            if not skip_damaged:
                                raise TcsError(f"{exc} (--skip-damaged copies the damaged records and "
                                               "keeps every intact group)") from None
                            damaged.setdefault(g, []).append(str(exc))
                        raw = src.raw_record(g, row, col)
                        if not raw:  # lost in a rescan: an empty record whose checksum fails
                            raw = bytearray(pack_record(g, row, col, n, header.codec, b""))
                            struct.pack_into("<I", raw, 20, struct.unpack_from("<I", raw, 20)[0] ^ 0xFFFFFFFF)
                        dst.write_raw_record(g, row, col, n, bytes(raw))
            dst.finish(src.n_frames)
        except BaseException:
            dst.abort()
            raise
    for w in caught:
        click.echo(safe_text(w.message), err=True)
    if damaged:
        click.echo(safe_text(f"warning: damaged group(s) {_groups(damaged)} copied as they are: "
                         + "; ".join(p[0] for p in damaged.values())), err=True)
    click.echo(safe_text(f"{output}: {src.n_frames} frames in {src.n_groups} complete groups"
                     + (f", {len(damaged)} of them damaged" if damaged else "")))
