"""Model bundles: one file holding everything needed to transcribe, loaded without unpickling code.

A bundle is `torch.save` of a dict of tensors and plain Python types:
    format_version  int, FORMAT_VERSION when written
    config          {"features": {...}, "model": {...}} resolved constructor arguments
    tokenizer       tokenizer.to_dict() (the vocabulary)
    state_dict      Recognizer state (features.* buffers and model.* weights), fp32 or fp16
    provenance      {"train_manifest", "steps", "epoch", "dev_wer", "seed", "asr_version", ...}
It is read with `torch.load(..., weights_only=True)`, so a file carrying pickled objects is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from asr import ASSETS_DIR
from asr.features import TRAINING_ONLY_KEYS, FeatureExtractor
from asr.files import atomic_path
from asr.model import AcousticModel
from asr.text import Tokenizer, tokenizer_from_dict

FORMAT_VERSION = 1
BUNDLED_MODEL = ASSETS_DIR / "model.pt"  # the pretrained English model shipped in the package


class BundleError(Exception):
    """A file that is not a usable model bundle; the message names the file and the problem."""


class Recognizer(nn.Module):
    """Feature extractor + acoustic model: waveforms in, CTC log-probabilities out."""

    def __init__(self, features: FeatureExtractor, model: AcousticModel) -> None:
        super().__init__()
        self.features = features
        self.model = model

    @property
    def frame_seconds(self) -> float:
        """Seconds of audio per output frame."""
        return self.features.hop_length * self.model.subsampling_factor / self.features.sample_rate

    @property
    def output_frame_rate(self) -> float:
        """Output frames per second of audio."""
        return 1.0 / self.frame_seconds

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waveforms and sample counts → (B, T, V) logits and output lengths."""
        feats, feat_lengths = self.features(waves, lengths)
        return self.model(feats, feat_lengths)


def inference_config(config: dict) -> dict:
    """A bundle's features/model config without its training-only (augmentation) keys: the part that decides
    what the weights mean, which must match to fine-tune from a bundle or to average checkpoints."""
    features = {k: v for k, v in config["features"].items() if k not in TRAINING_ONLY_KEYS}
    return {**config, "features": features}


def build_recognizer(features_cfg: dict, model_cfg: dict, vocab_size: int) -> Recognizer:
    """Construct a Recognizer from the `features` and `model` config groups."""
    features = FeatureExtractor(**features_cfg)
    return Recognizer(features, AcousticModel(input_dim=features.n_mels, vocab_size=vocab_size, **model_cfg))


@dataclass
class Bundle:
    """A loaded model bundle."""

    recognizer: Recognizer
    tokenizer: Tokenizer
    config: dict
    provenance: dict = field(default_factory=dict)
    path: Path | None = None

    @torch.no_grad()
    def log_probs(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probabilities (B, T, V) in float32 for a padded waveform batch."""
        logits, out_lengths = self.recognizer(waves, lengths)
        return logits.float().log_softmax(-1), out_lengths


def save_bundle(
    path: str | os.PathLike,
    recognizer: Recognizer,
    tokenizer: Tokenizer,
    config: dict,
    provenance: dict | None = None,
    half: bool = False,
) -> None:
    """Write a bundle atomically; `half=True` stores floating-point weights as fp16 (loaded back as fp32)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in recognizer.state_dict().items()}
    obj = {
        "format_version": FORMAT_VERSION,
        "config": {"features": dict(config["features"]), "model": dict(config["model"])},
        "tokenizer": tokenizer.to_dict(),
        "state_dict": state,
        "provenance": dict(provenance or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_tensors(path: Path, what: str) -> object:
    """`torch.load(path, weights_only=True)` on the CPU; any failure (a refused pickle, a truncated or non-zip
    file) is a BundleError `PATH: not a loadable WHAT (reason)`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refusals, truncated files, non-zip data all land here
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BundleError(f"{path}: not a loadable {what} ({reason[:200]})") from None


def load_bundle(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle (default: the bundled model) in eval mode on `device`. Raises BundleError."""
    path = Path(path) if path is not None else BUNDLED_MODEL
    if not path.is_file():
        hint = " (no model is bundled with this install; pass model=path/to/model.pt)" if path == BUNDLED_MODEL else ""
        raise BundleError(f"{path}: no such model bundle{hint}")
    obj = load_tensors(path, "model bundle")
    if not isinstance(obj, dict) or "format_version" not in obj:
        raise BundleError(f"{path}: not a model bundle (no format_version)")
    if obj["format_version"] > FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {obj['format_version']} is newer than this asr ({FORMAT_VERSION}); upgrade asr")
    try:
        tokenizer = tokenizer_from_dict(obj["tokenizer"])
        recognizer = build_recognizer(obj["config"]["features"], obj["config"]["model"], len(tokenizer))
        state = {k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
        recognizer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise BundleError(f"{path}: inconsistent model bundle ({str(err).splitlines()[0][:200]})") from None
    recognizer.to(device).eval()
    return Bundle(recognizer, tokenizer, obj["config"], obj.get("provenance", {}), path)
