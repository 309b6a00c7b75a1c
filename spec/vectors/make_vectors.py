"""Regenerate the spec's test vectors: ``python spec/vectors/make_vectors.py``.

Each vector ``NAME`` is ``NAME.tcs`` with ``NAME.frames.npy`` (the frames
that were encoded) and ``NAME.measurements.npy`` (G x H x W, the exact Y of
every group, computed from the spec's formulas by ``tcscodec.encoder.encode_group``,
dequantised for quantised files). ``vectors.json`` lists the vectors with
their header fields (and, for version 2 files, ``group_lengths``) and a few
mask words as check values. A second reader passes when it reads each
``.tcs`` to the stored measurements.

The version 1 vectors are made first, from the same random stream as
always, so regenerating leaves their bytes unchanged; the version 2 vectors
(groups of variable length, :data:`VARIABLE_VECTORS`) come after them from
a stream of their own.
"""

import json
from pathlib import Path

import numpy as np

import tcscodec
from tcscodec.encoder import encode_group
from tcscodec.masks import mask_words

HERE = Path(__file__).parent

VECTORS = [
    # name, dtype, (T, H, W), B, tile, codec, quant_step, seed
    ("uint8_B4_short_last_group", "uint8", (10, 20, 30), 4, (8, 16), "shuffle-zstd", 1.0, 1),
    ("uint16_B10_one_tile_zstd", "uint16", (10, 33, 65), 10, (512, 512), "zstd", 1.0, 2**64 - 1),
    ("float32_B3_negative", "float32", (7, 17, 9), 3, (5, 4), "shuffle-zstd", 1.0, 12345),
    ("uint32_B64_extremes", "uint32", (64, 5, 70), 64, (4, 64), "shuffle-zstd", 1.0, 0),
    ("uint16_B8_quantised", "uint16", (16, 24, 24), 8, (16, 16), "shuffle-zstd", 4.0, 99),
    # codec 3 (format 1.1): smooth frames with hot pixels (escapes), edge tiles,
    # a short last group, pixels with mask sum 0 (B = 2), and a float file
    # whose records are all mode 0
    ("uint16_B10_predict_rice_quantised", "uint16", (25, 40, 50), 10, (32, 24), "predict-rice", 7.0, 7),
    ("uint8_B2_predict_rice", "uint8", (5, 19, 37), 2, (19, 37), "predict-rice", 1.0, 3),
    ("uint32_B64_predict_rice_extremes", "uint32", (64, 5, 70), 64, (5, 70), "predict-rice", 1.0, 0),
    ("float32_B4_predict_rice_stored", "float32", (6, 9, 11), 4, (9, 11), "predict-rice", 1.0, 5),
]


#: version 2 (groups of variable length): name, dtype, (T, H, W), B (the
#: longest group), group lengths, tile, codec, quant_step, seed.  Short groups
#: followed by longer ones, a group of one frame, a full group of B, edge tiles.
VARIABLE_VECTORS = [
    ("uint16_Bmax8_variable_predict_rice", "uint16", (23, 20, 37), 8, [3, 5, 1, 8, 2, 4], (8, 16),
     "predict-rice", 1.0, 11),
    ("uint8_Bmax16_variable_quantised", "uint8", (42, 17, 33), 16, [16, 1, 7, 16, 2], (17, 16),
     "shuffle-zstd", 3.0, 2**63 + 5),
]


def smooth_frames(dtype, shape, rng):
    """A drifting smooth pattern with Poisson noise and 3 hot pixels."""
    t, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    top = 200 if dtype == "uint8" else 3000
    lam = top / 2 * (1 + np.sin((x - 0.7 * t) / 4.0) * np.cos(y / 5.0))
    f = np.minimum(rng.poisson(lam), np.iinfo(dtype).max).astype(dtype)
    f[:, 3, [4, 9, 30]] = np.iinfo(dtype).max
    return f


def frames_for(dtype, shape, rng, name=""):
    if "predict_rice" in name and dtype != "float32" and "extremes" not in name:
        return smooth_frames(dtype, shape, rng)
    if dtype == "float32":
        return rng.normal(0, 1000, shape).astype(np.float32)
    info = np.iinfo(dtype)
    f = rng.integers(0, info.max, shape, dtype=dtype, endpoint=True)
    f.reshape(-1)[:7] = info.max  # extremes: no overflow at the largest B
    return f


def main():
    rng = np.random.default_rng(20261124)
    listing = []
    for name, dtype, shape, B, tile, codec, step, seed in VECTORS:
        frames = frames_for(dtype, shape, rng, name)
        path = HERE / f"{name}.tcs"
        tcscodec.write(path, frames, B=B, seed=seed, tile=tile, codec=codec, quant_step=step,
                       metadata={"vector": name, "pixel_size_A": 1.5})
        ys = []
        for g in range(-(-shape[0] // B)):
            y = encode_group(frames[g * B:(g + 1) * B], seed, B)
            ys.append(y if step == 1 else np.floor(y / step + 0.5) * step)
        np.save(HERE / f"{name}.frames.npy", frames)
        np.save(HERE / f"{name}.measurements.npy", np.stack(ys))
        listing.append({"name": name, "dtype": dtype, "shape": shape, "B": B, "tile": tile,
                        "codec": codec, "quant_step": step, "mask_seed": seed,
                        "file_bytes": path.stat().st_size})
    # A writer killed mid-movie: the first vector cut inside its last record.
    full = (HERE / "uint8_B4_short_last_group.tcs").read_bytes()
    # Its header says n_frames = 0, as a writer leaves it until it finishes.
    with tcscodec.open(HERE / "uint8_B4_short_last_group.tcs") as r:
        last = max(e.offset for e in r._container.records.values())
        header = r.header.with_frames(0).to_bytes()
    (HERE / "killed_writer.tcs.partial").write_bytes(header + full[len(header): last + 30])
    rng = np.random.default_rng(20260301)
    for name, dtype, shape, B, lengths, tile, codec, step, seed in VARIABLE_VECTORS:
        assert sum(lengths) == shape[0]
        frames = smooth_frames(dtype, shape, rng)
        path = HERE / f"{name}.tcs"
        tcscodec.write(path, frames, B=B, group_lengths=lengths, seed=seed, tile=tile, codec=codec,
                       quant_step=step, metadata={"vector": name, "pixel_size_A": 1.5})
        starts = np.cumsum([0, *lengths])
        ys = []
        for g in range(len(lengths)):
            y = encode_group(frames[starts[g]:starts[g + 1]], seed, B)
            ys.append(y if step == 1 else np.floor(y / step + 0.5) * step)
        np.save(HERE / f"{name}.frames.npy", frames)
        np.save(HERE / f"{name}.measurements.npy", np.stack(ys))
        listing.append({"name": name, "dtype": dtype, "shape": shape, "B": B, "group_lengths": lengths,
                        "tile": tile, "codec": codec, "quant_step": step, "mask_seed": seed,
                        "version": [2, 0], "file_bytes": path.stat().st_size})
    # A version 2 writer killed in its fourth group: the first variable vector
    # cut inside a record of group 3 (the rescan keeps groups 0..2, 9 frames).
    name = VARIABLE_VECTORS[0][0]
    full = (HERE / f"{name}.tcs").read_bytes()
    with tcscodec.open(HERE / f"{name}.tcs") as r:
        cut = max(e.offset for k, e in r._container.records.items() if k[0] == 3)
        header = r.header.with_frames(0).to_bytes()
    (HERE / "killed_writer_variable.tcs.partial").write_bytes(header + full[len(header): cut + 30])
    checks = [{"seed": s, "b": b, "y": y, "word_col": w,
               "word": "0x%016x" % int(mask_words(s, [b], [y], [w])[0, 0, 0])}
              for s, b, y, w in [(0, 0, 0, 0), (1, 0, 0, 0), (1, 3, 17, 2), (2**64 - 1, 63, 2**24 - 1, 2**24 - 1)]]
    (HERE / "vectors.json").write_text(json.dumps({"vectors": listing, "mask_words": checks,
                                                   "killed_writer": {"file": "killed_writer.tcs.partial",
                                                                     "complete_frames": 8},
                                                   "killed_writer_variable": {
                                                       "file": "killed_writer_variable.tcs.partial",
                                                       "of": name, "complete_frames": 9,
                                                       "group_lengths": [3, 5, 1]}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
