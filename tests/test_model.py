import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.config import CONF_DIR
from asr.model import AcousticModel, StackedRNN


def preset(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml"))


@pytest.mark.parametrize("name,low,high", [("tiny", 0.1e6, 0.5e6), ("small", 4.0e6, 5.0e6), ("medium", 8.5e6, 9.5e6),
                                            ("large", 80e6, 150e6)])
def test_presets_have_documented_sizes(name, low, high):
    assert low <= AcousticModel(80, 29, **preset(name)).num_parameters() <= high


@pytest.mark.parametrize(
    "options",
    [{}, {"subsampling": "conv"}, {"rnn_type": "gru"}, {"projection_size": 32}, {"attention_heads": 4}],
)
def test_shapes_lengths_and_padding_invariance(options):
    torch.manual_seed(0)
    model = AcousticModel(80, 29, hidden_size=64, num_layers=2, dropout=0.0, **options).eval()
    lengths = torch.tensor([100, 61, 7])
    feats = torch.randn(3, 100, 80)
    feats[torch.arange(100)[None, :] >= lengths[:, None]] = 0.0  # padded frames are zero, as FeatureExtractor makes them
    logits, out_lengths = model(feats, lengths)
    assert out_lengths.tolist() == [34, 21, 3]  # ceil(T / 3)
    assert logits.shape == (3, 34, 29)
    # padding must not change the outputs of a shorter utterance
    alone, _ = model(feats[1:2, :61], lengths[1:2])
    assert torch.allclose(logits[1, :21], alone[0], atol=1e-5)


def test_bad_options():
    with pytest.raises(ValueError, match="model.rnn_type"):
        AcousticModel(80, 29, rnn_type="transformer")
    with pytest.raises(ValueError, match="model.subsampling"):
        AcousticModel(80, 29, subsampling="pool")


@pytest.mark.parametrize("rnn_type,projection_size", [("lstm", 0), ("gru", 0), ("lstm", 16)])
def test_stacked_rnn_is_a_multi_layer_rnn_with_its_own_dropout(rnn_type, projection_size):
    """StackedRNN (dropout outside cuDNN, so resuming on CUDA is exact) computes what a multi-layer nn.LSTM/GRU
    computes, under the same state-dict names: bundles load either way."""
    torch.manual_seed(0)
    extra = {"proj_size": projection_size} if projection_size else {}
    reference = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn_type](40, 32, num_layers=3, batch_first=True, bidirectional=True,
                                                            dropout=0.1, **extra).eval()
    stacked = StackedRNN(rnn_type, 40, 32, 3, 0.1, projection_size).eval()
    stacked.load_state_dict(reference.state_dict())
    assert list(stacked.state_dict()) == list(reference.state_dict())
    packed = pack_padded_sequence(torch.randn(3, 50, 40), torch.tensor([50, 30, 7]), batch_first=True, enforce_sorted=False)
    assert torch.equal(pad_packed_sequence(stacked(packed), batch_first=True)[0],
                       pad_packed_sequence(reference(packed)[0], batch_first=True)[0])
    stacked.train()  # dropout between layers draws from torch's generator: the same seed gives the same masks
    torch.manual_seed(1)
    first = stacked(packed).data
    torch.manual_seed(1)
    assert torch.equal(stacked(packed).data, first) and not torch.equal(first, reference(packed)[0].data)


@pytest.mark.parametrize("rnn_type,projection_size", [("lstm", 0), ("gru", 0), ("lstm", 16)])
def test_the_cpu_padded_path_computes_what_packing_computes(rnn_type, projection_size):
    """forward_padded (each direction on the padded batch, the reverse one on sequences flipped within their lengths)
    gives the packed path's outputs and gradients, whatever the padding holds, and zeros past each length."""
    torch.manual_seed(0)
    stacked = StackedRNN(rnn_type, 40, 32, 3, 0.0, projection_size).train()
    lengths = torch.tensor([30, 50, 7, 1])
    x = torch.randn(4, 50, 40)
    x[torch.arange(50)[None, :] >= lengths[:, None]] = 123.0  # garbage in the padding
    outputs, grads = [], []
    for padded in (False, True):
        stacked.zero_grad()
        if padded:
            y = stacked.forward_padded(x, lengths)
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            y = pad_packed_sequence(stacked(packed), batch_first=True, total_length=50)[0]
        (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
        outputs.append(y.detach())
        grads.append(torch.cat([p.grad.flatten() for p in stacked.parameters()]))
    assert outputs[1].shape == (4, 50, 2 * (projection_size or 32))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5) and torch.allclose(grads[0], grads[1], atol=1e-4)
    assert not outputs[1][torch.arange(50)[None, :] >= lengths[:, None]].any()


def test_the_model_gives_the_same_logits_on_either_path():
    torch.manual_seed(0)
    model = AcousticModel(80, 29, hidden_size=32, num_layers=2, dropout=0.0).eval()
    feats, lengths = torch.randn(3, 60, 80), torch.tensor([60, 41, 5])
    (packed, n1), (padded, n2) = model(feats, lengths, packed=True), model(feats, lengths, packed=False)
    valid = torch.arange(packed.shape[1])[None, :] < n1[:, None]
    assert torch.equal(n1, n2) and torch.allclose(packed[valid], padded[valid], atol=1e-5)
