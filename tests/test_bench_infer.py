"""tools/bench_infer.py: stage timings, RTF and WER on the tiny model (and pocketsphinx when installed)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr.config import UsageError
from asr.data import read_manifest
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
bench_infer = load_script("bench_infer", ROOT / "tools" / "bench_infer.py")


def bench(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "bench_infer.py"), *map(str, args), "threads=1",
                           "device=cpu"], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["num_files=0"], "num_files must be a positive integer"),
    (["threads=0"], "threads must be a positive integer"),
    (["lm=x.bin", "lexicon=null"], "needs both lm= and lexicon=, or neither"),
    (["decoder=beam"], "drop decoder="),
    (["test.jsonl"], "takes key=value overrides only"),
])
def test_bad_options(args, message):
    with pytest.raises(UsageError, match=message):
        bench_infer.main(args)


@pytest.mark.slow
def test_stages_rtf_and_wer(tiny_model, speech_dir, tiny_lm, tmp_path):
    with_ps = importlib.util.find_spec("pocketsphinx") is not None
    result = bench(f"manifest={speech_dir / 'manifest.jsonl'}", "num_files=5", f"model={tiny_model}",
                   f"lm={tiny_lm / 'lm.bin'}", f"lexicon={tiny_lm / 'lexicon.txt'}", "batch_seconds=6",
                   f"pocketsphinx={str(with_ps).lower()}", f"report={tmp_path / 'bench.json'}")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    entries = read_manifest(speech_dir / "manifest.jsonl")[:5]
    assert report["num_files"] == 5 and report["audio_seconds"] == pytest.approx(sum(e.duration for e in entries))
    systems = {s["system"]: s for s in report["systems"]}
    assert list(systems)[:2] == ["asr greedy", "asr beam+LM"] and ("pocketsphinx" in systems) == with_ps
    greedy, beam = systems["asr greedy"], systems["asr beam+LM"]
    for s in (greedy, beam):
        assert set(s["stage_seconds"]) == set(bench_infer.ASR_STAGES) and min(s["stage_seconds"].values()) > 0
        assert s["rtf"] == pytest.approx(sum(s["stage_seconds"].values()) / report["audio_seconds"])
        assert s["wer"] == 0.0  # the tiny model memorized these utterances
    # the shared stages are the same measurements; the beam decoder's load includes the model's
    for stage in ("read", "features", "model"):
        assert greedy["stage_seconds"][stage] == beam["stage_seconds"][stage]
    assert beam["stage_seconds"]["load"] > greedy["stage_seconds"]["load"]
    assert f"asr greedy {greedy['rtf']:10.4f}".split() == result.stdout.split("\n")[2].split()[:3]
    if with_ps:
        ps = systems["pocketsphinx"]
        assert set(ps["stage_seconds"]) == {"load", "read", "decode"} and ps["wer"] < 1.0
        assert f"RTF ratio asr greedy / pocketsphinx: {greedy['rtf'] / ps['rtf']:.3f}" in result.stdout
