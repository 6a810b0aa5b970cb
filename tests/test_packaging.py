"""The wheel: built from the source tree, it carries the bundled model, language model, lexicon and Hydra
configs, and `python -m asr.transcribe` run from it (not from this checkout) transcribes the sample as the checkout does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

SOURCES = ["pyproject.toml", "README.md", "LICENSE", "asr", "conf"]  # what the build reads


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the checkout is left untouched), unpacked into a folder
    that is used as an installed package: PYTHONPATH puts it before the editable install."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(root / "dist")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr  # needs setuptools>=77 (the dev extra)
    (wheel,) = (root / "dist").glob("asr-*.whl")
    site = root / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


@pytest.mark.slow
def test_the_wheel_carries_the_assets_configs_and_license(installed_wheel):
    assets = installed_wheel / "asr" / "assets"
    for name in ("model.pt", "lm.bin", "lexicon.txt"):
        assert (assets / name).read_bytes() == (ROOT / "asr" / "assets" / name).read_bytes()
    configs = sorted(p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml"))
    assert configs and all((installed_wheel / "asr" / "conf" / c).is_file() for c in configs)
    (dist_info,) = installed_wheel.glob("asr-*.dist-info")
    assert "Apache License" in next(dist_info.rglob("LICENSE")).read_text()
    requires = [line for line in (dist_info / "METADATA").read_text().splitlines() if line.startswith("Requires-Dist:")]
    assert any(line.startswith("Requires-Dist: flashlight-text") and "extra" not in line for line in requires), requires


@pytest.mark.slow
def test_transcribe_runs_from_the_wheel(installed_wheel, tmp_path):
    """Run outside the checkout, so neither its conf/ nor its asr/ can be what is found."""
    env = {**os.environ, "PYTHONPATH": str(installed_wheel)}
    sample = tmp_path / "sample.wav"
    shutil.copy(ROOT / "samples" / "sample.wav", sample)
    where = subprocess.run([sys.executable, "-c", "import asr, asr.config; print(asr.__file__, asr.config.CONF_DIR)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True).stdout.split()
    assert all(Path(p).is_relative_to(installed_wheel) for p in where), where
    command = [sys.executable, "-m", "asr.transcribe", str(sample), "num_threads=1"]  # the README's first command
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    # the wheel's model, LM, lexicon and decoder settings (decoder=auto: beam search with the LM): the same words
    # as the checkout's (tests/test_pretrained.py holds those to the sample's transcript)
    from_checkout = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600, check=True).stdout
    assert result.stdout == from_checkout and len(result.stdout.split()) >= 10, (result.stdout, from_checkout)
