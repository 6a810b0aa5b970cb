import pickle

import pytest
import torch

from asr.bundle import BundleError, build_recognizer, load_bundle, save_bundle
from asr.text import CharTokenizer

FEATURES = {"normalize": "global"}
MODEL = {"hidden_size": 32, "num_layers": 1, "dropout": 0.0}


def make(tmp_path, half=False):
    torch.manual_seed(0)
    tok = CharTokenizer()
    rec = build_recognizer(FEATURES, MODEL, len(tok))
    rec.features.global_mean.fill_(-3.0)
    path = tmp_path / "model.pt"
    save_bundle(path, rec, tok, {"features": FEATURES, "model": MODEL}, {"steps": 7, "dev_wer": 0.5}, half=half)
    return rec, path


def test_round_trip_is_bit_exact(tmp_path):
    rec, path = make(tmp_path)
    bundle = load_bundle(path)
    for (k, a), (k2, b) in zip(rec.state_dict().items(), bundle.recognizer.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert bundle.provenance == {"steps": 7, "dev_wer": 0.5}
    assert bundle.tokenizer.vocab == CharTokenizer().vocab
    waves = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 9000])
    rec.eval()
    assert torch.equal(bundle.log_probs(waves, lengths)[0], rec(waves, lengths)[0].log_softmax(-1))


def test_fp16_bundle_is_half_the_size_and_close(tmp_path):
    rec, path32 = make(tmp_path)
    path16 = tmp_path / "half.pt"
    save_bundle(path16, rec, CharTokenizer(), {"features": FEATURES, "model": MODEL}, half=True)
    assert path16.stat().st_size < 0.6 * path32.stat().st_size
    a = load_bundle(path32).recognizer.state_dict()
    b = load_bundle(path16).recognizer.state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4) for k in a)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": Evil()}, path)
    with pytest.raises(BundleError, match="evil.pt: not a loadable model bundle"):
        load_bundle(path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(BundleError, match="raw.pt"):
        load_bundle(raw)


def test_bad_files(tmp_path):
    with pytest.raises(BundleError, match="no such model bundle"):
        load_bundle(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a bundle")
    with pytest.raises(BundleError, match="junk.pt: not a loadable model bundle"):
        load_bundle(tmp_path / "junk.pt")
    torch.save({"format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(BundleError, match="newer than this asr"):
        load_bundle(tmp_path / "future.pt")
    _, path = make(tmp_path)
    obj = torch.load(path, weights_only=True)
    obj["config"]["model"]["hidden_size"] = 16
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(BundleError, match="inconsistent model bundle"):
        load_bundle(tmp_path / "bad.pt")


def test_bundles_of_released_formats_still_load_and_compute_the_same():
    """tests/data/bundle_v1.pt was written by asr 0.1.0 (format 1); every later version must load it
    and produce the same log-probabilities on the stored input."""
    from pathlib import Path

    data = Path(__file__).parent / "data"
    bundle = load_bundle(data / "bundle_v1.pt")
    expected = torch.load(data / "bundle_v1_expected.pt", weights_only=True)
    log_probs, out_lengths = bundle.log_probs(expected["waves"], expected["lengths"])
    assert torch.equal(out_lengths, expected["out_lengths"])
    assert torch.allclose(log_probs, expected["log_probs"], atol=1e-5)
