"""Feature extraction: waveform batch → normalized log-mel frames (+ SpecAugment while training).

`FeatureExtractor` is an `nn.Module`, so it lives on the model's device and its global
normalization statistics travel inside the model bundle's state_dict.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
import torchaudio
import torchaudio.functional as AF

NORMALIZE_MODES = ("utterance", "global", "none")
# Keys of conf/features/ that change only training (augmentation): a fine-tuning run (init_from) may set them
# differently from the bundle it starts from, since the model computes the same features at inference.
TRAINING_ONLY_KEYS = ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width", "time_mask_ratio",
                      "vtlp_max_warp", "vtlp_boundary_hz")


class FeatureExtractor(nn.Module):
    """Log-mel filterbank features for a padded waveform batch.

    Args (all in conf/features/):
        sample_rate: input rate in Hz.
        n_mels: number of mel bands.
        win_ms, hop_ms: analysis window and hop in milliseconds.
        n_fft: FFT size (≥ the window in samples).
        log_offset: added before the log so silence stays finite.
        normalize: "utterance" (mean/variance over each utterance's own frames), "global" (fixed
            statistics from `fit_global_stats`), or "none".
        freq_masks, freq_mask_width: SpecAugment frequency masks and their maximum width in bands.
        time_masks, time_mask_width, time_mask_ratio: SpecAugment time masks, maximum width in frames,
            and maximum fraction of the batch's frames one mask may cover.
        vtlp_max_warp, vtlp_boundary_hz: vocal tract length perturbation (Jaitly & Hinton 2013) while
            training: each utterance's frequency axis is scaled by a factor drawn uniformly from
            [1 - vtlp_max_warp, 1 + vtlp_max_warp] up to the boundary, then linearly so that Nyquist stays
            in place (0: off).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int = 512,
        log_offset: float = 1e-6,
        normalize: str = "utterance",
        freq_masks: int = 0,
        freq_mask_width: int = 0,
        time_masks: int = 0,
        time_mask_width: int = 0,
        time_mask_ratio: float = 0.05,
        vtlp_max_warp: float = 0.0,
        vtlp_boundary_hz: float = 4800.0,
    ) -> None:
        super().__init__()
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"features.normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.win_length = int(round(sample_rate * win_ms / 1000))
        self.hop_length = int(round(sample_rate * hop_ms / 1000))
        if n_fft < self.win_length:
            raise ValueError(f"features.n_fft={n_fft} is shorter than the {self.win_length}-sample window")
        self.log_offset = log_offset
        self.normalize = normalize
        self.freq_masks, self.freq_mask_width = freq_masks, freq_mask_width
        self.time_masks, self.time_mask_width, self.time_mask_ratio = time_masks, time_mask_width, time_mask_ratio
        if not 0.0 <= vtlp_max_warp < 1.0:
            raise ValueError(f"features.vtlp_max_warp must be in [0, 1), got {vtlp_max_warp}")
        if not 0.0 < vtlp_boundary_hz < sample_rate / 2:
            raise ValueError(f"features.vtlp_boundary_hz must be between 0 and {sample_rate / 2:g} Hz, got {vtlp_boundary_hz}")
        self.vtlp_max_warp, self.vtlp_boundary_hz = vtlp_max_warp, vtlp_boundary_hz
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=self.win_length, hop_length=self.hop_length,
            n_mels=n_mels, center=True, pad_mode="reflect", power=2.0, norm="slaney", mel_scale="slaney",
        )
        if vtlp_max_warp:  # FFT bin and mel filter edge frequencies, for filters at warped ones (not saved in bundles)
            import librosa  # the same Slaney mel scale as torchaudio's (tests/test_features.py)

            edges = librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=sample_rate / 2, htk=False)
            self.register_buffer("vtlp_edges_hz", torch.tensor(edges, dtype=torch.float32), persistent=False)
            self.register_buffer("vtlp_bins_hz", torch.linspace(0, sample_rate / 2, n_fft // 2 + 1), persistent=False)
        self.register_buffer("global_mean", torch.zeros(n_mels))
        self.register_buffer("global_std", torch.ones(n_mels))

    @property
    def frames_per_second(self) -> float:
        """Feature frames per second of audio."""
        return self.sample_rate / self.hop_length

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames produced for waveforms of `num_samples` samples (centred STFT)."""
        return torch.div(num_samples, self.hop_length, rounding_mode="floor") + 1

    def log_mel(self, waves: torch.Tensor, warps: torch.Tensor | None = None) -> torch.Tensor:
        """Un-normalized log-mel of a (B, S) batch → (B, T, n_mels), always computed in float32.

        `warps`: one VTLP frequency-warp factor per utterance (B,), or None for the plain filterbank.
        """
        with torch.autocast(device_type=waves.device.type, enabled=False):
            if warps is None:
                mel = self.mel(waves.float())
            else:
                power = self.mel.spectrogram(waves.float())  # (B, n_fft/2 + 1, T)
                mel = torch.bmm(self.warped_filterbanks(warps).transpose(1, 2), power)
            return torch.log(mel + self.log_offset).transpose(1, 2)

    def warp_frequencies(self, freqs: torch.Tensor, warps: torch.Tensor) -> torch.Tensor:
        """VTLP's piecewise-linear warp of `freqs` (Hz, (F,)) by each factor of `warps` (B,) → (B, F).

        f → α·f below f₀ = boundary·min(α, 1)/α, then the straight line from (f₀, α·f₀) to (Nyquist, Nyquist).
        """
        nyquist = self.sample_rate / 2
        alpha = warps[:, None]
        knee = self.vtlp_boundary_hz * alpha.clamp(max=1.0) / alpha
        upper = nyquist - (nyquist - alpha * knee) / (nyquist - knee) * (nyquist - freqs)
        return torch.where(freqs <= knee, alpha * freqs, upper)

    def warped_filterbanks(self, warps: torch.Tensor) -> torch.Tensor:
        """(B, n_fft/2 + 1, n_mels) Slaney-normalized triangular mel filters evaluated at each FFT bin's warped
        frequency: a spectrum seen through one is that of a speaker whose formants sit `warps` times higher."""
        edges = self.vtlp_edges_hz
        f = self.warp_frequencies(self.vtlp_bins_hz, warps.float().to(edges.device)).unsqueeze(-1)  # (B, F, 1)
        low, centre, high = edges[:-2], edges[1:-1], edges[2:]
        rising, falling = (f - low) / (centre - low), (high - f) / (high - centre)
        return torch.minimum(rising, falling).clamp(min=0) * (2.0 / (high - low))

    def draw_warps(self, batch_size: int, device: torch.device) -> torch.Tensor | None:
        """One VTLP factor per utterance, uniform in [1 - vtlp_max_warp, 1 + vtlp_max_warp]; None when off."""
        if not self.vtlp_max_warp:
            return None
        return 1 + self.vtlp_max_warp * (2 * torch.rand(batch_size) - 1).to(device)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) padded waveforms and their lengths in samples → (B, T, n_mels) features and frame counts."""
        feats = self.log_mel(waves, self.draw_warps(waves.shape[0], waves.device) if self.training else None)
        frame_lengths = self.output_lengths(lengths).clamp(max=feats.shape[1])
        mask = (torch.arange(feats.shape[1], device=feats.device)[None, :] < frame_lengths[:, None]).unsqueeze(-1)
        if self.normalize == "utterance":
            count = frame_lengths.clamp(min=1).to(feats.dtype)[:, None, None]
            mean = (feats * mask).sum(1, keepdim=True) / count
            var = (((feats - mean) * mask) ** 2).sum(1, keepdim=True) / count
            feats = (feats - mean) / (var.sqrt() + 1e-5)
        elif self.normalize == "global":
            feats = (feats - self.global_mean) / self.global_std
        feats = feats * mask  # padding frames are exactly zero
        if self.training:
            feats = self.spec_augment(feats)
        return feats, frame_lengths

    def spec_augment(self, feats: torch.Tensor) -> torch.Tensor:
        """SpecAugment (Park et al. 2019): independent frequency and time masks for each utterance."""
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T) as torchaudio expects
        for _ in range(self.freq_masks):
            x = AF.mask_along_axis_iid(x, self.freq_mask_width, 0.0, axis=2)
        for _ in range(self.time_masks):
            x = AF.mask_along_axis_iid(x, self.time_mask_width, 0.0, axis=3, p=self.time_mask_ratio)
        return x.squeeze(1).transpose(1, 2)

    @torch.no_grad()
    def fit_global_stats(self, waves: Iterable[torch.Tensor]) -> int:
        """Set the global mean/std from 1-D waveforms (e.g. a sample of the training set); returns frames seen."""
        total = torch.zeros(self.n_mels, dtype=torch.float64)
        total_sq = torch.zeros(self.n_mels, dtype=torch.float64)
        frames = 0
        for wave in waves:
            f = self.log_mel(wave.to(self.global_mean.device)[None])[0].double().cpu()
            total += f.sum(0)
            total_sq += (f**2).sum(0)
            frames += f.shape[0]
        if frames == 0:
            raise ValueError("no audio to compute global normalization statistics from")
        mean = total / frames
        std = (total_sq / frames - mean**2).clamp(min=1e-10).sqrt()
        self.global_mean.copy_(mean.float())
        self.global_std.copy_(std.float())
        return frames


def plot_features(feats: torch.Tensor, path: str, title: str) -> None:
    """Save a (T, n_mels) feature matrix as a spectrogram image."""
    from asr.plotting import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(10, 3.2), dpi=100)
    im = ax.imshow(feats.T.numpy(), origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    ax.set(title=title, xlabel="frame (10 ms)", ylabel="mel band")
    fig.colorbar(im, ax=ax, pad=0.01)
    save_figure(fig, path)


def main(argv: list[str]) -> int:
    """`python -m asr.features FILE... [features overrides]`: log-mel features of audio files, with a plot each."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from asr.audio import load_audio
    from asr.config import UsageError, load_config, split_args

    paths, overrides = split_args(argv)
    if not paths:
        raise UsageError("no input: python -m asr.features FILE... [features.n_mels=80 ...]")
    cfg = load_config("train", overrides)
    fe = FeatureExtractor(**OmegaConf.to_container(cfg.features, resolve=True)).eval()
    for p in map(Path, paths):
        wave = load_audio(p, fe.sample_rate)
        with torch.no_grad():
            feats, _ = fe(wave[None], torch.tensor([len(wave)]))
        png = p.with_suffix(".logmel.png")
        plot_features(feats[0], str(png), f"{p.name}: {fe.n_mels}-band log-mel, {fe.normalize} normalization")
        print(f"{p}: {len(wave) / fe.sample_rate:.2f} s -> {feats.shape[1]} frames x {feats.shape[2]} log-mel bands "
              f"(mean {feats.mean():.3f}, std {feats.std():.3f}); plot: {png}")
    return 0


if __name__ == "__main__":
    from asr.audio import AudioError
    from asr.config import run_main

    run_main(main, errors=(AudioError,))
