"""Shared fixtures: real speech synthesized with espeak-ng, written as 16 kHz WAV with a manifest."""

from __future__ import annotations

import http.server
import importlib.util
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest
import torch

from asr.audio import load_audio, save_audio
from asr.data import Utterance, write_manifest

ROOT = Path(__file__).resolve().parent.parent

torch.set_num_threads(1)  # CI has 2 cores; one thread per test process keeps timings stable

SENTENCES = [
    ("the cat sat on the mat", "en-us"),
    ("she sells sea shells by the sea shore", "en"),
    ("a quick brown fox jumps over the lazy dog", "en-us+m3"),
    ("we will meet again tomorrow morning", "en-gb-x-rp"),
    ("open the door and turn on the light", "en-us+f2"),
    ("numbers like seven and twelve are easy", "en"),
]


def load_script(name: str, path: Path) -> ModuleType:
    """Import a script from tools/ or recipes/ as module `name` (registered in sys.modules, where
    dataclasses look their module up); a module already loaded under that name is reused."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def synthesize(text: str, path: Path, voice: str = "en-us", speed: int = 160) -> Path:
    """Speak `text` with espeak-ng and save it as 16 kHz mono WAV at `path`."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng); the tests need real speech")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    save_audio(path, load_audio(raw))
    raw.unlink()
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    """A folder of espeak-ng utterances: `manifest.jsonl` lists the six of them (relative paths);
    `train.jsonl` adds a copy of each with 0.2-0.5 s of extra silence before and after, so that a
    model trained on it does not depend on exactly where its input starts and ends."""
    root = tmp_path_factory.mktemp("speech")
    (root / "wav").mkdir()
    entries, padded = [], []
    for i, (text, voice) in enumerate(SENTENCES):
        wav = synthesize(text, root / "wav" / f"utt{i:02d}.wav", voice)
        audio = load_audio(wav)
        entries.append(Utterance(str(wav), len(audio) / 16000, text, extra={"voice": voice}))
        lead, trail = torch.zeros(int((0.2 + 0.1 * (i % 3)) * 16000)), torch.zeros(int((0.3 + 0.1 * (i % 2)) * 16000))
        save_audio(root / "wav" / f"pad{i:02d}.wav", torch.cat([lead, audio, trail]))
        padded.append(Utterance(str(root / "wav" / f"pad{i:02d}.wav"), (len(lead) + len(audio) + len(trail)) / 16000, text))
    write_manifest(root / "manifest.jsonl", entries)
    write_manifest(root / "train.jsonl", entries + padded)
    return root


@pytest.fixture(scope="session")
def speech_wav(speech_dir) -> Path:
    """One real utterance: 'the cat sat on the mat'."""
    return speech_dir / "wav" / "utt00.wav"


def tiny_train_overrides(manifest: Path, out_dir: Path, **extra) -> list[str]:
    """A tiny, fast, deterministic training configuration over a small manifest (train = dev)."""
    args = {
        "data.train_manifest": manifest, "data.dev_manifest": manifest, "data.num_workers": 0,
        "data.max_batch_seconds": 8, "data.min_duration": 0.1, "model": "tiny", "out_dir": out_dir,
        "features.freq_masks": 0, "features.time_masks": 0, "optim.lr": 3e-3, "optim.warmup_steps": 10,
        "trainer.val_every": 1000, "trainer.save_every": 1000, "trainer.log_every": 5, "trainer.progress": False,
        "trainer.num_threads": 1,
    }
    args.update(extra)
    return [f"{k}={v}" for k, v in args.items()]


@pytest.fixture(scope="session")
def trained_run(speech_dir, tmp_path_factory) -> Path:
    """out_dir of a tiny model trained 400 steps on the fixture utterances (and padded copies) until it has memorized them."""
    from asr import train

    out = tmp_path_factory.mktemp("trained")
    overrides = tiny_train_overrides(speech_dir / "manifest.jsonl", out, **{
        "data.train_manifest": speech_dir / "train.jsonl",
        "trainer.max_steps": 400, "trainer.val_every": 50, "model.hidden_size": 128,
        "features.normalize": "global"})  # global CMVN: padding a segment with silence does not shift its features
    assert train.main(overrides) == 0
    return out


@pytest.fixture(scope="session")
def tiny_model(trained_run) -> Path:
    """A model bundle that transcribes the fixture utterances perfectly (and most of their words in other contexts)."""
    return trained_run / "best.pt"


@pytest.fixture(scope="session")
def tiny_lm(speech_dir, tmp_path_factory) -> Path:
    """A folder with lm.bin and lexicon.txt: a KenLM trigram model of the six fixture transcripts
    (tools/build_lm.py; builds KenLM into its cache on first use)."""
    out = tmp_path_factory.mktemp("tiny_lm")
    (out / "text.txt").write_text("".join(text + "\n" for text, _ in SENTENCES))
    build = subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "tools" / "build_lm.py"),
                            str(out / "text.txt"), str(out), "--order", "3", "--discount_fallback"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return out


# ---------------------------------------------------------------- a local HTTP server for the download tests

class _RangeServer(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    honor_range = True
    cut_after: int | None = None  # close the connection after this many body bytes (once)
    requests: list[tuple[str, str | None]]

    def url(self, path: str) -> str:
        """The address of `path` (which starts with a slash) on this server."""
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _RangeServer

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path.split("?", 1)[0])  # a signed link's query names no other file
        if data is None:
            self.send_error(404)
            return
        start, wanted = 0, self.headers.get("Range")
        if wanted and srv.honor_range:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None:
            body, srv.cut_after = body[: srv.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    """A local HTTP server of `server.files` (path → bytes) with Range support, recording each request."""
    srv = _RangeServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests = {}, []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
