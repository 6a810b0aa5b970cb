import math

import librosa
import numpy as np
import torch

from asr.audio import load_audio
from asr.features import FeatureExtractor


def test_log_mel_matches_librosa(speech_wav):
    """Our front end equals librosa's mel spectrogram on real speech: max |difference| of log-mel < 1e-3
    on bins above -60 dB (below that float32 rounding of near-zero energies dominates)."""
    wav = load_audio(speech_wav)
    fe = FeatureExtractor(normalize="none").eval()
    ours = fe.log_mel(wav[None])[0].numpy()
    ref = librosa.feature.melspectrogram(
        y=wav.numpy().astype(np.float64), sr=16000, n_fft=512, win_length=400, hop_length=160,
        n_mels=80, center=True, pad_mode="reflect", power=2.0, htk=False, norm="slaney",
    ).T
    ref_log = np.log(ref + 1e-6)
    assert ours.shape == ref_log.shape
    loud = ref > ref.max() * 1e-6
    assert np.abs(ours - ref_log)[loud].max() < 1e-3


def test_batch_with_padding_equals_single(speech_dir):
    waves = [load_audio(p) for p in sorted((speech_dir / "wav").glob("*.wav"))[:3]]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    fe = FeatureExtractor().eval()
    feats, flen = fe(batch, lengths)
    assert feats.shape == (3, int(flen.max()), 80)
    for i, w in enumerate(waves):
        single, slen = fe(w[None], lengths[i : i + 1])
        assert slen.item() == flen[i].item() == 1 + len(w) // 160
        assert torch.allclose(feats[i, : flen[i]], single[0], atol=1e-4)
        assert (feats[i, flen[i] :] == 0).all()
        # per-utterance normalization: zero mean, unit variance over real frames
        assert single[0].mean(0).abs().max() < 1e-3 and (single[0].std(0, unbiased=False) - 1).abs().max() < 1e-2


def test_global_cmvn(speech_dir):
    waves = [load_audio(p) for p in sorted((speech_dir / "wav").glob("*.wav"))]
    fe = FeatureExtractor(normalize="global").eval()
    frames = fe.fit_global_stats(waves)
    assert frames == sum(1 + len(w) // 160 for w in waves)
    feats = torch.cat([fe(w[None], torch.tensor([len(w)]))[0][0] for w in waves])
    assert feats.mean(0).abs().max() < 1e-3
    restored = FeatureExtractor(normalize="global")
    restored.load_state_dict(fe.state_dict())
    assert torch.equal(restored.global_mean, fe.global_mean)


def test_spec_augment_only_in_training(speech_wav):
    wav = load_audio(speech_wav)[None]
    lengths = torch.tensor([wav.shape[1]])
    fe = FeatureExtractor(freq_masks=2, freq_mask_width=20, time_masks=2, time_mask_width=30, time_mask_ratio=0.2)
    fe.eval()
    a, _ = fe(wav, lengths)
    b, _ = fe(wav, lengths)
    assert torch.equal(a, b)
    fe.train()
    torch.manual_seed(0)
    c, _ = fe(wav, lengths)
    assert not torch.equal(a, c)
    masked = c == 0
    assert masked.any() and (c[~masked] == a[~masked]).all()  # only masking, no other change


def tone(hz: float, seconds: float = 0.5) -> torch.Tensor:
    return 0.5 * torch.sin(2 * math.pi * hz * torch.arange(int(16000 * seconds)) / 16000)[None]


def test_vtlp_reads_the_spectrum_as_a_speaker_with_scaled_formants():
    """Through a filterbank warped by α, a tone at f looks like a plain tone at α·f below the boundary, and at the
    point of the line from (boundary·min(α, 1), same) to Nyquist above it; α = 1 is the plain front end."""
    fe = FeatureExtractor(vtlp_max_warp=0.2, vtlp_boundary_hz=4800.0)
    peak = lambda wave, warp=None: int(fe.log_mel(wave, warp)[0].mean(0).argmax())
    # (tone Hz, α, where the warped filterbank sees it): above the knee, 8000 - (8000 - 4800) / (8000 - 4000) * 2000
    # for α = 1.2 (knee 4800 / 1.2) and 8000 - (8000 - 3840) / (8000 - 4800) * 2000 for α = 0.8 (knee 4800)
    for hz, warp, seen_as in [(1000, 1.1, 1100), (1000, 0.9, 900), (2500, 1.15, 2875), (6000, 1.2, 6400), (6000, 0.8, 5400)]:
        assert peak(tone(hz), torch.tensor([warp])) == peak(tone(seen_as)) != peak(tone(hz)), (hz, warp)
    speech = tone(300) + tone(1700) + tone(5200)
    assert torch.allclose(fe.log_mel(speech, torch.tensor([1.0])), fe.log_mel(speech), atol=1e-3)


def test_vtlp_only_in_training_and_per_utterance(speech_wav):
    wav = load_audio(speech_wav)[None]
    batch, lengths = wav.repeat(2, 1), torch.tensor([wav.shape[1]] * 2)
    fe = FeatureExtractor(vtlp_max_warp=0.1).eval()
    assert torch.equal(fe(batch, lengths)[0], FeatureExtractor().eval()(batch, lengths)[0])  # inference: no warp
    fe.train()
    torch.manual_seed(0)
    feats, _ = fe(batch, lengths)
    assert not torch.allclose(feats[0], feats[1], atol=1e-2)  # one factor per utterance, not per batch
    assert FeatureExtractor(vtlp_max_warp=0.1).state_dict().keys() == FeatureExtractor().state_dict().keys()


def test_cli_prints_shape_and_writes_a_plot(speech_wav, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    wav = tmp_path / "x.wav"
    shutil.copy(speech_wav, wav)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "asr.features", str(wav), "features.n_mels=40"], capture_output=True, text=True, env=env)
    frames = 1 + len(load_audio(wav)) // 160
    assert result.returncode == 0 and f"{frames} frames x 40 log-mel bands" in result.stdout
    assert (tmp_path / "x.logmel.png").stat().st_size > 10_000
    bad = subprocess.run([sys.executable, "-m", "asr.features", str(tmp_path / "nope.wav")], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "nope.wav: no such file" in bad.stderr and "Traceback" not in bad.stderr
