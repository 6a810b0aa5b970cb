"""tools/export_onnx.py: the exported graph (features included) gives PyTorch's log-probabilities in onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT, load_script

from asr.audio import load_audio
from asr.bundle import build_recognizer, load_bundle, save_bundle
from asr.text import CharTokenizer

ort = pytest.importorskip("onnxruntime", reason="the export extra (pip install 'asr[export]')")
export_onnx = load_script("export_onnx", ROOT / "tools" / "export_onnx.py")


def test_the_bundled_model_exports_and_transcribes_like_pytorch(speech_dir, tmp_path, capsys):
    assert export_onnx.main(["-o", str(tmp_path), "--check", str(speech_dir / "manifest.jsonl"), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("{"):])
    assert result["files"] == 6 and result["identical_transcripts"] == 6
    assert result["max_abs_log_prob_diff"] < 1e-3 and result["wer_onnx"] == result["wer_torch"]
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["vocabulary"][0] == "<blank>" and meta["sample_rate"] == 16000 and meta["frame_seconds"] == 0.04
    corpus = meta["provenance"]["corpus"]  # one corpus, or a list when the model was trained on several
    assert all(c["recipe"] == "recipes/synthetic" for c in (corpus if isinstance(corpus, list) else [corpus]))


@pytest.mark.parametrize("variant", [
    {"model": {"subsampling": "conv", "conv_channels": 8, "rnn_type": "gru"}, "normalize": "global"},
    {"model": {"subsampling": "conv", "conv_channels": 8, "num_layers": 2}, "normalize": "utterance"},
])
def test_other_front_ends_and_layers_export_exactly(variant, speech_dir, tmp_path):
    """Conv subsampling, GRU, global CMVN, two LSTM layers: onnxruntime on two utterance lengths."""
    torch.manual_seed(0)
    features = {"normalize": variant["normalize"]}
    model = {"hidden_size": 32, "num_layers": 1, "dropout": 0.0, **variant["model"]}
    tokenizer = CharTokenizer()
    recognizer = build_recognizer(features, model, len(tokenizer))
    if variant["normalize"] == "global":
        recognizer.features.global_mean.fill_(-3.0)
        recognizer.features.global_std.fill_(2.0)
    save_bundle(tmp_path / "m.pt", recognizer, tokenizer, {"features": features, "model": model})
    export_onnx.export(load_bundle(tmp_path / "m.pt"), tmp_path, torch.zeros(1, 16000))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    reference = load_bundle(tmp_path / "m.pt")
    for wav in sorted((speech_dir / "wav").glob("utt0[01].wav")):
        audio = load_audio(wav)[None]
        expected, _ = reference.log_probs(audio, torch.tensor([audio.shape[1]]))
        got = session.run(None, {"audio": audio.numpy()})[0]
        assert got.shape == tuple(expected.shape)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def test_conv_mel_spectrogram_equals_torchaudio():
    recognizer = build_recognizer({}, {"hidden_size": 8, "num_layers": 1}, 29)
    mel = recognizer.features.mel
    waves = torch.randn(2, 12345) * 0.1
    expected = mel(waves)
    got = export_onnx.ConvMelSpectrogram(mel)(waves)
    assert got.shape == expected.shape
    torch.testing.assert_close(torch.log(got + 1e-6), torch.log(expected + 1e-6), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("option,what", [("projection_size", "LSTM output projections"),
                                         ("attention_heads", "self-attention")])
def test_what_cannot_be_exported_is_refused_in_one_line(option, what, tmp_path, capsys):
    model = {"hidden_size": 32, "num_layers": 1, option: 16}
    save_bundle(tmp_path / "m.pt", build_recognizer({}, model, 29), CharTokenizer(), {"features": {}, "model": model})
    with pytest.raises(SystemExit) as exit_info:
        export_onnx.main(["--model", str(tmp_path / "m.pt"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith(f"error: {what}") and err.count("\n") == 1
    assert not (tmp_path / "out" / "model.onnx").exists()
