"""Acoustic model: subsampling front end → stacked bidirectional LSTM (or GRU) → linear CTC head.

Input is a padded batch of feature frames with lengths; output is per-frame logits over the
tokenizer's vocabulary (blank = 0) at 1/`subsampling_factor` of the feature frame rate.
Padding costs (almost) nothing and never changes a real frame's output. On CUDA the recurrent stack runs on
packed sequences (cuDNN). On the CPU, PyTorch's packed-sequence LSTM falls back to a slow step-by-step kernel
(a training step of `medium` 2-5x slower than on the padded batch: tools/bench_rnn.py), so there each
direction runs on the padded batch, the reverse one on every sequence flipped within its own length: padding
then always comes after a sequence's real frames, and the outputs equal the packed ones
(`StackedRNN.forward_padded`; tests/test_model.py).
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

SUBSAMPLING_KINDS = ("stack", "conv")
RNN_KINDS = {"lstm": nn.LSTM, "gru": nn.GRU}


class FrameStacking(nn.Module):
    """Concatenate every `factor` consecutive frames: (B, T, F) → (B, ceil(T/factor), F·factor)."""

    def __init__(self, input_dim: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.output_dim = input_dim * factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, f = x.shape
        pad = (-t) % self.factor
        if pad:
            x = nn.functional.pad(x, (0, 0, 0, pad))
        return x.reshape(b, (t + pad) // self.factor, f * self.factor)


class ConvSubsampling(nn.Module):
    """A 3×3 convolution (stride `factor` in time, 2 in frequency) then a 1×3 one (stride 2 in frequency), ReLU.

    Only the first layer looks across time, so padding after an utterance never leaks into its frames.
    """

    def __init__(self, input_dim: int, factor: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=(factor, 2), padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, (1, 3), stride=(1, 2), padding=(0, 1)), nn.ReLU(),
        )
        freq = (((input_dim - 1) // 2 + 1) - 1) // 2 + 1
        self.output_dim = channels * freq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        return y.permute(0, 2, 1, 3).flatten(2)


class StackedRNN(nn.Module):
    """Bidirectional LSTM (or GRU) layers on packed sequences, with dropout between layers applied here.

    A multi-layer nn.LSTM on CUDA draws its inter-layer dropout masks inside cuDNN, from a random state
    that no checkpoint can save, so a run resumed on the GPU would go on with other masks than an
    uninterrupted one. One single-layer RNN per layer and nn.Dropout between them draw from torch's
    generators, which the checkpoint saves. Parameters keep nn.LSTM's names (`weight_ih_l1_reverse`, ...)
    in the state dict, so bundles are the same as those of a multi-layer nn.LSTM.
    """

    def __init__(self, rnn_type: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 projection_size: int = 0) -> None:
        super().__init__()
        extra = {"proj_size": projection_size} if projection_size else {}
        out_size = 2 * (projection_size or hidden_size)
        self.layers = nn.ModuleList(
            RNN_KINDS[rnn_type](input_size if k == 0 else out_size, hidden_size, batch_first=True, bidirectional=True, **extra)
            for k in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.register_state_dict_post_hook(_layer_keys_to_stacked)
        self.register_load_state_dict_pre_hook(_stacked_keys_to_layers)

    def forward_padded(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Padded (B, T, input_size) with `lengths` → (B, T, 2 × hidden or projection size), zero past each length:
        what the packed path computes, without packing (much faster on the CPU, where oneDNN's kernels run)."""
        t = torch.arange(x.shape[1], device=x.device)[None, :]
        valid = t < lengths.to(x.device)[:, None]
        flip = torch.where(valid, lengths.to(x.device)[:, None] - 1 - t, t)[:, :, None]  # reverses each sequence in place

        def reverse(y: torch.Tensor) -> torch.Tensor:
            return y.gather(1, flip.expand(-1, -1, y.shape[2]))

        for k, layer in enumerate(self.layers):
            if k:
                x = self.dropout(x)
            x = torch.cat([_one_direction(layer, x, ""), reverse(_one_direction(layer, reverse(x), "_reverse"))], dim=-1)
        return x * valid[:, :, None]

    def forward(self, x: PackedSequence | torch.Tensor) -> PackedSequence | torch.Tensor:
        """Packed (B, T, input_size) → packed (B, T, 2 × hidden or projection size); a plain tensor in gives a
        plain tensor out (every sequence then runs all T steps)."""
        for k, layer in enumerate(self.layers):
            if k:
                x = x._replace(data=self.dropout(x.data)) if isinstance(x, PackedSequence) else self.dropout(x)
            x, _ = layer(x)
        return x


def _one_direction(layer: nn.LSTM | nn.GRU, x: torch.Tensor, suffix: str) -> torch.Tensor:
    """One direction of a single-layer bidirectional `layer` (`suffix` "" or "_reverse": whose weights) run forward
    in time over the batch-first `x`, from a zero state: the ATen op nn.LSTM/nn.GRU call, given one direction's weights."""
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] + (["weight_hr"] if getattr(layer, "proj_size", 0) else [])
    weights = [getattr(layer, f"{name}_l0{suffix}") for name in names]
    h0 = x.new_zeros(1, x.shape[0], getattr(layer, "proj_size", 0) or layer.hidden_size)
    # (input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    if isinstance(layer, nn.LSTM):
        return torch.lstm(x, (h0, x.new_zeros(1, x.shape[0], layer.hidden_size)), weights, True, 1, 0.0, layer.training, False, True)[0]
    return torch.gru(x, h0, weights, True, 1, 0.0, layer.training, False, True)[0]


_LAYER_KEY = re.compile(r"layers\.(\d+)\.(\w+?)_l0(_reverse)?$")
_STACKED_KEY = re.compile(r"(weight|bias)_(\w+?)_l(\d+)(_reverse)?$")


def _layer_keys_to_stacked(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """state_dict hook: `layers.2.weight_ih_l0` → nn.LSTM's `weight_ih_l2`."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        m = _LAYER_KEY.fullmatch(key[len(prefix):])
        if m:
            state_dict[f"{prefix}{m[2]}_l{m[1]}{m[3] or ''}"] = state_dict.pop(key)


def _stacked_keys_to_layers(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: nn.LSTM's `weight_ih_l2` → `layers.2.weight_ih_l0`."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        m = _STACKED_KEY.fullmatch(key[len(prefix):])
        if m:
            state_dict[f"{prefix}layers.{m[3]}.{m[1]}_{m[2]}_l0{m[4] or ''}"] = state_dict.pop(key)


class AcousticModel(nn.Module):
    """BiLSTM-CTC acoustic model. Arguments are the keys of a `conf/model/` preset.

    Args:
        input_dim: feature dimension (n_mels).
        vocab_size: output classes including the blank.
        subsampling: "stack" (frame stacking) or "conv" (2-D convolutions).
        subsampling_factor: time reduction (3 turns 100 frames/s into 33.3).
        conv_channels: channels of the conv front end.
        rnn_type: "lstm" or "gru".
        hidden_size: units per direction.
        num_layers: stacked bidirectional layers.
        dropout: dropout between recurrent layers and before the head.
        projection_size: LSTM output projection per direction (0: none; LSTM only).
        attention_heads: >0 adds one multi-head self-attention layer (residual + LayerNorm) after the stack.
    """

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        subsampling: str = "stack",
        subsampling_factor: int = 3,
        conv_channels: int = 32,
        rnn_type: str = "lstm",
        hidden_size: int = 256,
        num_layers: int = 3,
        dropout: float = 0.1,
        projection_size: int = 0,
        attention_heads: int = 0,
    ) -> None:
        super().__init__()
        if subsampling not in SUBSAMPLING_KINDS:
            raise ValueError(f"model.subsampling must be one of {SUBSAMPLING_KINDS}, got {subsampling!r}")
        if rnn_type not in RNN_KINDS:
            raise ValueError(f"model.rnn_type must be one of {tuple(RNN_KINDS)}, got {rnn_type!r}")
        if projection_size and rnn_type != "lstm":
            raise ValueError("model.projection_size needs rnn_type=lstm")
        self.subsampling_factor = subsampling_factor
        self.frontend = (
            FrameStacking(input_dim, subsampling_factor)
            if subsampling == "stack"
            else ConvSubsampling(input_dim, subsampling_factor, conv_channels)
        )
        self.rnn = StackedRNN(rnn_type, self.frontend.output_dim, hidden_size, num_layers, dropout, projection_size)
        out_dim = 2 * (projection_size or hidden_size)
        self.attention = nn.MultiheadAttention(out_dim, attention_heads, dropout=dropout, batch_first=True) if attention_heads else None
        self.attention_norm = nn.LayerNorm(out_dim) if attention_heads else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(out_dim, vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for inputs of `lengths` feature frames."""
        return torch.div(lengths + self.subsampling_factor - 1, self.subsampling_factor, rounding_mode="floor")

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, packed: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) features and lengths → (B, T', V) logits and output lengths. `packed`: run the recurrent stack on
        packed sequences (True) or the padded batch (False); None picks packed on CUDA, padded elsewhere."""
        x = self.frontend(feats)
        out_lengths = self.output_lengths(lengths).clamp(max=x.shape[1])
        if x.is_cuda if packed is None else packed:
            seq = pack_padded_sequence(x, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = pad_packed_sequence(self.rnn(seq), batch_first=True, total_length=x.shape[1])
        else:
            y = self.rnn.forward_padded(x, out_lengths)
        return self._top(y, out_lengths), out_lengths

    def forward_unpadded(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, F) features of utterances that all fill the T frames → (B, T', V) logits: `forward` without
        packing, in operations that an exporter can trace (tools/export_onnx.py runs it one utterance at a time)."""
        return self._top(self.rnn(self.frontend(feats)), None)

    def _top(self, y: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Optional self-attention over the recurrent outputs (frames past `lengths` masked), then the CTC head."""
        if self.attention is not None:
            pad_mask = None if lengths is None else torch.arange(y.shape[1], device=y.device)[None, :] >= lengths[:, None]
            a, _ = self.attention(y, y, y, key_padding_mask=pad_mask, need_weights=False)
            y = self.attention_norm(y + self.dropout(a))
        return self.head(self.dropout(y))

    def num_parameters(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
