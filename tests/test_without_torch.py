"""Encoding needs no torch; decoding without it says how to install it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys

    class NoTorch:  # as if torch were not installed
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("No module named 'torch'")

    sys.meta_path.insert(0, NoTorch())
    import numpy as np
    import tcscodec
    from click.testing import CliRunner
    from tcscodec.cli.main import main

    frames = np.random.default_rng(0).poisson(20, (6, 16, 16)).astype(np.uint16)
    path = sys.argv[1] + "/m.tcs"
    tcscodec.write(path, frames, B=3, quant_step="auto")
    with tcscodec.open(path) as r:
        assert r.shape == (6, 16, 16) and r.measurements(1).shape == (16, 16)
        try:
            r.read(0)
        except tcscodec.TcsDependencyError as exc:
            assert isinstance(exc, ImportError) and "tcscodec[decode]" in str(exc), exc
        else:
            raise AssertionError("decoding without torch did not raise")
    res = CliRunner().invoke(main, ["decode", path, "-o", sys.argv[1] + "/d.npy"])
    assert res.exit_code == 1 and "needs PyTorch" in res.output and "Traceback" not in res.output, res.output
    assert "torch" not in sys.modules
    print("ok")
""")


def test_encode_without_torch_and_a_clear_error_for_decoding(tmp_path):
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr
