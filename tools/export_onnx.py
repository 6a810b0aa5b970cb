#!/usr/bin/env python3
"""Export a model bundle to ONNX (features included) and check it against PyTorch on real speech.

    python tools/export_onnx.py -o exp/onnx                                  # the bundled model
    python tools/export_onnx.py --model exp/medium/best.pt -o exp/onnx --check data/synthetic/test.jsonl

Needs the `export` extra (`pip install 'asr[export]'`: onnx, onnxruntime). Writes, in the output folder:

    model.onnx   input "audio": float32 (1, samples), one 16 kHz mono utterance in [-1, 1]
                 output "log_probs": float32 (1, frames, vocabulary), CTC log-probabilities
    model.json   what a decoder needs besides: vocabulary (id order), blank id, sample rate,
                 seconds per output frame, and the bundle's provenance

The graph holds the whole recognizer: log-mel, normalization, frame stacking or convolutions,
the BiLSTM (or BiGRU) stack and the CTC head, with a dynamic number of samples. Models with LSTM
projections or the optional self-attention layer (no preset has them) are refused with the reason.
ONNX has no complex STFT, so the power spectrum is computed as a real DFT by convolution (the same
window, hop and padding as torchaudio's, `ConvMelSpectrogram` below). The recurrent stack runs the utterance unpacked, which is
exact for one utterance, so the graph takes one at a time (split long recordings first, as
`asr.transcribe` does). Exported with torch's TorchScript-based exporter: the torch.export-based one
cannot trace nn.LSTM in torch 2.11.

`--check MANIFEST` runs the first `--num-files` utterances through PyTorch and onnxruntime in the same
run and prints the largest log-probability difference, how many greedy transcripts are identical,
both WERs and both real-time factors (model only, one utterance at a time, `--threads` threads each).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from asr.audio import SAMPLE_RATE, AudioError, load_audio  # noqa: E402
from asr.bundle import BundleError, Bundle, load_bundle  # noqa: E402
from asr.config import fail  # noqa: E402
from asr.data import ManifestError, read_manifest  # noqa: E402
from asr.decoding import GreedyDecoder  # noqa: E402
from asr.files import atomic_path, write_text_atomic  # noqa: E402
from asr.metrics import error_rates  # noqa: E402
from asr.text import BLANK_ID  # noqa: E402

OPSET = 17  # every op of the graph (LSTM, Conv, reflect Pad, MatMul) is in opset 17, which onnxruntime runs
ONNX_NAME, META_NAME = "model.onnx", "model.json"


class ExportError(Exception):
    """A model this exporter cannot write as ONNX; the message says which part."""


class ConvMelSpectrogram(nn.Module):
    """torchaudio's MelSpectrogram (power 2, centered frames, reflect padding) as real operations only: the DFT
    of each windowed frame is a strided conv1d with cosine and sine kernels. Same numbers, exportable."""

    def __init__(self, mel: nn.Module) -> None:
        super().__init__()
        spec = mel.spectrogram
        if spec.power != 2.0 or spec.normalized or spec.pad or not spec.center or not spec.onesided:
            raise ValueError("only power-2, unnormalized, unpadded, centered, one-sided spectrograms are supported")
        n_fft, win = spec.n_fft, spec.win_length
        window = torch.zeros(n_fft)
        left = (n_fft - win) // 2  # torch.stft centers a shorter window in the frame
        window[left:left + win] = spec.window.float()
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * torch.pi * k * n / n_fft
        self.register_buffer("cos", (torch.cos(angle) * window).float()[:, None, :])  # (F, 1, n_fft)
        self.register_buffer("sin", (torch.sin(angle) * window).float()[:, None, :])
        self.register_buffer("filterbank", mel.mel_scale.fb.float())  # (F, n_mels)
        self.n_fft, self.hop, self.pad_mode = n_fft, spec.hop_length, spec.pad_mode

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, S) → (B, n_mels, frames) mel power, as MelSpectrogram returns it."""
        x = nn.functional.pad(waves[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode=self.pad_mode)
        real = nn.functional.conv1d(x, self.cos, stride=self.hop)
        imag = nn.functional.conv1d(x, self.sin, stride=self.hop)
        power = real * real + imag * imag  # (B, F, frames)
        return torch.matmul(self.filterbank.T, power)


class OneUtterance(nn.Module):
    """The recognizer for one unpadded utterance: (1, samples) audio → (1, frames, vocabulary) log-probabilities."""

    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self.recognizer = bundle.recognizer

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        lengths = torch.ones(audio.shape[0], dtype=torch.long) * audio.shape[1]
        feats, _ = self.recognizer.features(audio, lengths)
        return self.recognizer.model.forward_unpadded(feats).float().log_softmax(-1)


def export(bundle: Bundle, out_dir: Path, example: torch.Tensor) -> tuple[Path, Path]:
    """Write model.onnx and model.json for `bundle` into `out_dir`; `example` is a (1, samples) utterance to trace."""
    model = bundle.config["model"]
    if model.get("projection_size"):
        raise ExportError("LSTM output projections (model.projection_size > 0) cannot be exported: torch's ONNX "
                          "exporter has no LSTM with projections")
    if model.get("attention_heads"):
        raise ExportError("self-attention (model.attention_heads > 0) cannot be exported: torch's exporter traces "
                          "nn.MultiheadAttention with the example's length fixed in its reshapes")
    bundle.recognizer.float().eval()
    bundle.recognizer.features.mel = ConvMelSpectrogram(bundle.recognizer.features.mel)
    module = OneUtterance(bundle).eval()
    onnx_path = out_dir / ONNX_NAME
    with atomic_path(onnx_path, keep_suffix=True) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes; check() measures the result
        torch.onnx.export(module, (example,), str(tmp), input_names=["audio"], output_names=["log_probs"],
                          dynamic_axes={"audio": {1: "samples"}, "log_probs": {1: "frames"}}, opset_version=OPSET,
                          dynamo=False)
    meta = {"vocabulary": bundle.tokenizer.vocab, "blank_id": BLANK_ID, "sample_rate": SAMPLE_RATE,
            "frame_seconds": bundle.recognizer.frame_seconds, "tokenizer": bundle.tokenizer.kind,
            "opset": OPSET, "provenance": bundle.provenance}
    meta_path = out_dir / META_NAME
    write_text_atomic(meta_path, json.dumps(meta, indent=1, default=str) + "\n")
    return onnx_path, meta_path


def check(reference: Bundle, onnx_path: Path, manifest: Path, num_files: int, threads: int) -> dict:
    """PyTorch (`reference`, the unexported bundle) against onnxruntime on the first `num_files` utterances."""
    import onnxruntime as ort

    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    decoder = GreedyDecoder(reference.tokenizer, reference.recognizer.frame_seconds)
    entries = read_manifest(manifest)[:num_files]
    refs, hyps_torch, hyps_onnx = [], [], []
    seconds = {"audio": 0.0, "torch": 0.0, "onnx": 0.0}
    max_diff, same = 0.0, 0
    for entry in entries:
        audio = load_audio(entry.audio_filepath, offset=entry.offset, duration=entry.duration)[None]
        start = time.perf_counter()
        lp_torch, lengths = reference.log_probs(audio, torch.tensor([audio.shape[1]]))
        seconds["torch"] += time.perf_counter() - start
        start = time.perf_counter()
        lp_onnx = torch.from_numpy(session.run(None, {"audio": audio.numpy()})[0])
        seconds["onnx"] += time.perf_counter() - start
        seconds["audio"] += audio.shape[1] / SAMPLE_RATE
        max_diff = max(max_diff, (lp_torch - lp_onnx).abs().max().item())  # shapes differ: an error
        text_torch = decoder.decode(lp_torch, lengths)[0].text
        text_onnx = decoder.decode(lp_onnx, torch.tensor([lp_onnx.shape[1]]))[0].text
        same += text_torch == text_onnx
        refs.append(entry.text)
        hyps_torch.append(text_torch)
        hyps_onnx.append(text_onnx)
    return {"files": len(entries), "audio_seconds": round(seconds["audio"], 2), "max_abs_log_prob_diff": max_diff,
            "identical_transcripts": same, "wer_torch": error_rates(refs, hyps_torch).wer,
            "wer_onnx": error_rates(refs, hyps_onnx).wer, "rtf_torch": seconds["torch"] / seconds["audio"],
            "rtf_onnx": seconds["onnx"] / seconds["audio"], "threads": threads}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model bundle (default: the bundled model)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder for model.onnx and model.json")
    parser.add_argument("--check", type=Path, metavar="MANIFEST", help="compare with PyTorch on these utterances")
    parser.add_argument("--num-files", type=int, default=50, help="utterances --check uses (default 50)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for --check, each runtime (default 2)")
    args = parser.parse_args(argv)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        fail("ONNX export needs the export extra: pip install 'asr[export]' (onnx, onnxruntime)")
    try:
        bundle = load_bundle(args.model)
        reference = copy.deepcopy(bundle)  # export() swaps the front end of `bundle`; --check compares with this
        example = torch.zeros(1, SAMPLE_RATE)  # one second; the samples axis is dynamic
        onnx_path, meta_path = export(bundle, args.out, example)
        print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB) and {meta_path}")
        if args.check:
            result = check(reference, onnx_path, args.check, args.num_files, args.threads)
            print(json.dumps(result, indent=1))
    except (BundleError, ExportError, ManifestError, AudioError, OSError) as err:
        fail(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
