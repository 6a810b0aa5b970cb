"""tools/bench_rnn.py: both recurrent paths timed on the tiny preset, and its one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "bench_rnn.py"), *args], capture_output=True, text=True, timeout=300)


def test_times_every_arm_against_packed_fp32():
    result = bench("model=tiny", "batch=3", "seconds=1", "rounds=1", "threads=1")
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^(train step|inference )\s+(packed|padded) (fp32|bf16): +([\d.]+) s per batch, +([\d.]+) audio s/s, +([\d.]+)x",
                      result.stdout, re.M)
    assert [(w.strip(), p, d) for w, p, d, *_ in rows] == [(w, p, d) for w in ("train step", "inference")
                                                            for d in ("fp32", "bf16") for p in ("packed", "padded")]
    assert all(float(t) > 0 and float(rate) > 0 for *_, t, rate, _ in rows)
    assert float(rows[0][5]) == 1.0 and float(rows[4][5]) == 1.0  # the baseline of each table


def test_bad_options_are_one_line_errors():
    for args, message in ((["model=nope"], "no model preset"), (["batches=3"], "unknown option 'batches'"),
                          (["batch=two"], "batch must be a int, got 'two'")):
        result = bench(*args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
