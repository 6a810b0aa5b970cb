"""tools/perturb_voices.py: WORLD-vocoder speaker augmentation of real espeak-ng speech."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import pyworld  # the `augment` extra; tools/install.sh dev installs it

from asr.audio import load_audio
from asr.data import read_manifest, write_manifest
from conftest import load_script

perturb_voices = load_script("perturb_voices", Path(__file__).resolve().parent.parent / "tools" / "perturb_voices.py")


def median_f0(wave: np.ndarray) -> float:
    x = wave.astype(np.float64)
    f0, _ = pyworld.harvest(x, 16000)
    return float(np.median(f0[f0 > 0]))


def test_f0_moves_by_the_factor_and_tempo_does_not(speech_wav):
    wave = load_audio(speech_wav).numpy()
    higher = perturb_voices.perturb_voice(wave, 1.5, 1.0)
    assert len(higher) == len(wave) and np.isfinite(higher).all() and np.abs(higher).max() <= 1.0
    assert median_f0(higher) / median_f0(wave) == pytest.approx(1.5, rel=0.08)
    lower = perturb_voices.perturb_voice(wave, 0.8, 1.15)
    assert median_f0(lower) / median_f0(wave) == pytest.approx(0.8, rel=0.08)


def test_formant_warp_moves_spectral_peaks():
    bins = np.arange(257)
    spectrum = np.exp(-0.5 * ((bins - 60) / 4.0) ** 2)[None, :] + 1e-6  # one "formant" at bin 60
    assert int(perturb_voices.warp_frequency(spectrum, 1.2).argmax()) == 72
    assert int(perturb_voices.warp_frequency(spectrum, 0.9).argmax()) == 54
    assert np.allclose(perturb_voices.warp_frequency(spectrum, 1.0), spectrum)


def test_cli_writes_seeded_copies_and_keeps_finished_ones(speech_dir, tmp_path, capsys):
    out = tmp_path / "vc"
    assert perturb_voices.main([str(speech_dir / "manifest.jsonl"), "-o", str(out), "--fraction", "0.5", "--jobs", "1"]) == 0
    entries = read_manifest(out / "manifest.jsonl", check_files=True)
    sources = {e.audio_filepath: e for e in read_manifest(speech_dir / "manifest.jsonl")}
    assert len(entries) == 3
    for e in entries:
        source = sources[e.extra["vc_source"]]
        assert e.text == source.text and e.extra["voice"] == source.extra["voice"] + "+vc"
        assert 0.7 <= e.extra["vc_f0"] <= 1.8 and 0.9 <= e.extra["vc_formant"] <= 1.2
        assert e.duration == pytest.approx(source.duration, abs=0.01)
    first = (out / "manifest.jsonl").read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "wav").iterdir()}
    assert perturb_voices.main([str(speech_dir / "manifest.jsonl"), "-o", str(out), "--fraction", "0.5", "--jobs", "1"]) == 0
    assert (out / "manifest.jsonl").read_text() == first  # same seed: same entries and factors
    assert {p: p.stat().st_mtime_ns for p in (out / "wav").iterdir()} == mtimes  # finished files are kept
    assert perturb_voices.main([str(speech_dir / "manifest.jsonl"), "-o", str(out), "--fraction", "0.5", "--jobs", "1",
                                "--seed", "1"]) == 0  # other factors: new files, none of the old ones reused
    written = {e.audio_filepath for e in read_manifest(out / "manifest.jsonl", check_files=True)}
    assert len(written) == 3 and not written & {str(p) for p in mtimes}


def test_exclude_copies_only_recordings_no_earlier_set_copied(speech_dir, tmp_path, capsys):
    source = speech_dir / "manifest.jsonl"
    assert perturb_voices.main([str(source), "-o", str(tmp_path / "set1"), "--fraction", "0.5", "--jobs", "1"]) == 0
    set1 = str(tmp_path / "set1" / "manifest.jsonl")
    first = {e.extra["vc_source"] for e in read_manifest(set1)}
    assert perturb_voices.main([str(source), "-o", str(tmp_path / "set2"), "--exclude", set1,
                                "--fraction", "0.67", "--seed", "1", "--jobs", "1"]) == 0
    second = read_manifest(tmp_path / "set2" / "manifest.jsonl")
    assert len(second) == 2 and not first & {e.extra["vc_source"] for e in second}
    # the draw is the one over a manifest of the remaining entries, so a set made that way is reproduced
    write_manifest(tmp_path / "rest.jsonl", [e for e in read_manifest(source) if e.audio_filepath not in first])
    assert perturb_voices.main([str(tmp_path / "rest.jsonl"), "-o", str(tmp_path / "rest"), "--fraction", "0.67",
                                "--seed", "1", "--jobs", "1"]) == 0
    names = [sorted(p.name for p in (tmp_path / name / "wav").iterdir()) for name in ("rest", "set2")]
    assert names[0] == names[1]  # same indices, recordings and factors
    capsys.readouterr()
    both = [set1, str(tmp_path / "set2" / "manifest.jsonl")]
    not_copies = "manifest.jsonl: no entry has a vc_source: not a manifest written by perturb_voices"
    for exclude, message in [([str(source)], not_copies),
                             ([str(tmp_path / "none.jsonl")], "none.jsonl: no such manifest file")]:
        with pytest.raises(SystemExit) as stop:
            perturb_voices.main([str(source), "-o", str(tmp_path / "x"), "--exclude", *exclude, "--jobs", "1"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 1 and len(lines) == 1 and message in lines[0], lines
    # a third set over what is left (one recording), then nothing is left
    assert perturb_voices.main([str(source), "-o", str(tmp_path / "set3"), "--exclude", *both, "--jobs", "1"]) == 0
    assert len(read_manifest(tmp_path / "set3" / "manifest.jsonl")) == 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        perturb_voices.main([str(source), "-o", str(tmp_path / "x"), "--jobs", "1", "--exclude", *both,
                             str(tmp_path / "set3" / "manifest.jsonl")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 1 and len(lines) == 1 and "every entry was already copied by" in lines[0], lines
    assert not (tmp_path / "x").exists()


def test_bad_inputs_are_one_line_errors_and_bad_files_are_skipped(speech_dir, tmp_path, capsys):
    entries = read_manifest(speech_dir / "manifest.jsonl")[:2]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all" * 50)
    entries[1].audio_filepath = str(broken)
    write_manifest(tmp_path / "m.jsonl", entries)
    assert perturb_voices.main([str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "vc"), "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {broken}: not a readable audio file" in err
    assert len(read_manifest(tmp_path / "vc" / "manifest.jsonl")) == 1
    for argv, message in [([str(tmp_path / "none.jsonl")], "none.jsonl: no such manifest file"),
                          ([str(tmp_path / "m.jsonl"), "--fraction", "0"], "--fraction must be in (0, 1]"),
                          ([str(tmp_path / "m.jsonl"), "--f0-range", "2", "1"], "--f0-range: expected 0 < LOW <= HIGH")]:
        with pytest.raises(SystemExit) as stop:
            perturb_voices.main([*argv, "-o", str(tmp_path / "x")])
        assert stop.value.code == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines


def test_without_pyworld_the_tool_says_how_to_get_it(speech_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyworld", None)  # import pyworld raises ImportError
    with pytest.raises(SystemExit) as stop:
        perturb_voices.main([str(speech_dir / "manifest.jsonl"), "-o", str(tmp_path / "vc")])
    assert stop.value.code == 1 and "pyworld is not installed: pip install pyworld" in capsys.readouterr().err
    assert not (tmp_path / "vc").exists()
