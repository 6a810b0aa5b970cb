"""tools/average_checkpoints.py and the trainer's weight snapshots it averages."""

import re
import subprocess
import sys
from pathlib import Path

import torch

from asr import train
from asr.bundle import load_bundle
from conftest import ROOT, load_script, tiny_train_overrides

TOOL = Path(__file__).resolve().parent.parent / "tools" / "average_checkpoints.py"
package_model = load_script("package_model", ROOT / "tools" / "package_model.py")


def average(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


def test_snapshots_average_into_a_bundle_with_the_mean_weights(speech_dir, tmp_path):
    manifest = speech_dir / "manifest.jsonl"
    run = tmp_path / "run"
    assert train.main(tiny_train_overrides(manifest, run, **{
        "trainer.max_steps": 9, "trainer.val_every": 9, "trainer.snapshot_every": 3, "trainer.keep_snapshots": 2})) == 0
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step-6.pt", "step-9.pt"]  # step-3 deleted
    a, b = (load_bundle(run / "snapshots" / f"step-{n}.pt") for n in (6, 9))
    assert (a.provenance["steps"], b.provenance["steps"]) == (6, 9)

    result = average(run / "snapshots" / "step-6.pt", run / "snapshots" / "step-9.pt", "-o", tmp_path / "avg.pt")
    assert result.returncode == 0, result.stderr
    avg = load_bundle(tmp_path / "avg.pt")
    sa, sb, s = a.recognizer.state_dict(), b.recognizer.state_dict(), avg.recognizer.state_dict()
    moved = [k for k in s if s[k].is_floating_point() and not torch.equal(sa[k], sb[k])]
    assert moved  # the two snapshots differ, so the mean is a third model
    for key in s:
        expected = (sa[key].double() + sb[key].double()) / 2 if s[key].is_floating_point() else sb[key]
        assert torch.allclose(s[key].double(), expected, atol=1e-7), key
    assert avg.provenance["averaged"] == [6, 9] and "dev_wer" not in avg.provenance  # no number that is not its own
    # the run's training time so far travels with the average (a copy of it elsewhere still knows it)
    assert avg.provenance["train_wall_hours"] == package_model.train_wall_hours(run) is not None

    # --fp16: the same mean, stored in half precision (as the bundled model), loaded back as fp32
    result = average(run / "snapshots" / "step-6.pt", run / "snapshots" / "step-9.pt", "-o", tmp_path / "avg16.pt", "--fp16")
    assert result.returncode == 0, result.stderr
    stored = torch.load(tmp_path / "avg16.pt", weights_only=True)["state_dict"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    for key, value in load_bundle(tmp_path / "avg16.pt").recognizer.state_dict().items():
        assert torch.equal(value, s[key].half().float() if value.is_floating_point() else s[key]), key

    # best.pt (validated at step 9) averaged with last.pt (the same weights, as a training checkpoint):
    # --dev re-measures exactly what the trainer measured
    result = average(run / "best.pt", run / "last.pt", "-o", tmp_path / "same.pt", "--dev", manifest)
    assert result.returncode == 0, result.stderr
    same = load_bundle(tmp_path / "same.pt").provenance
    best = load_bundle(run / "best.pt").provenance
    assert same["averaged"] == [9, 9] and same["dev_wer"] == best["dev_wer"] and same["dev_cer"] == best["dev_cer"]

    # one input: a converted copy of it (the N = 1 candidate), its dev numbers its own
    result = average(run / "snapshots" / "step-9.pt", "-o", tmp_path / "one.pt", "--dev", manifest)
    assert result.returncode == 0, result.stderr
    one = load_bundle(tmp_path / "one.pt")
    assert one.provenance["averaged"] == [9] and one.provenance["dev_wer"] == best["dev_wer"]
    assert all(torch.equal(v, sb[k]) for k, v in one.recognizer.state_dict().items())


def candidate_lines(stdout: str) -> dict[str, float]:
    """{'last N': dev WER} from the tool's `candidate: last N (...): dev WER x% CER y%` lines."""
    found = re.findall(r"^candidate: (last \d+) \(steps .*\): dev WER ([\d.]+)%", stdout, re.M)
    return {name: float(wer) for name, wer in found}


def test_candidates_are_chosen_on_dev(speech_dir, tmp_path, monkeypatch):
    """--candidates 3,1 writes whichever of (the last three averaged, the last alone) has the lower dev WER,
    the longer average on a tie, and records both WERs."""
    manifest = speech_dir / "manifest.jsonl"
    run = tmp_path / "run"
    assert train.main(tiny_train_overrides(manifest, run, **{
        "trainer.max_steps": 30, "trainer.val_every": 30, "trainer.snapshot_every": 10, "trainer.keep_snapshots": 3})) == 0
    snaps = [run / "snapshots" / f"step-{n}.pt" for n in (10, 20, 30)]
    result = average(*snaps, "-o", tmp_path / "chosen.pt", "--candidates", "3,1", "--dev", manifest)
    assert result.returncode == 0, result.stderr
    scores = candidate_lines(result.stdout)
    assert list(scores) == ["last 3", "last 1"]
    chosen = load_bundle(tmp_path / "chosen.pt").provenance
    assert {k: round(v * 100, 2) for k, v in chosen["dev_candidates"].items()} == scores
    # each candidate measured on its own gives the number printed for it, and the lower one (ties: the longer) was kept
    for name, inputs in (("last 3", snaps), ("last 1", snaps[-1:])):
        alone = average(*inputs, "-o", tmp_path / "alone.pt", "--dev", manifest)
        assert alone.returncode == 0, alone.stderr
        assert load_bundle(tmp_path / "alone.pt").provenance["dev_wer"] == chosen["dev_candidates"][name]
    assert chosen["averaged"] == ([10, 20, 30] if scores["last 3"] <= scores["last 1"] else [30])

    # the same choice with given WERs (measured longest first), both ways round and tied
    tool = load_script("average_checkpoints", TOOL)
    for wers, kept in (((0.5, 0.4), [30]), ((0.4, 0.5), [10, 20, 30]), ((0.4, 0.4), [10, 20, 30])):
        answers = iter(wers)
        monkeypatch.setattr(tool, "measure_dev", lambda *_, answers=answers: {
            "dev_manifest": "given", "dev_wer": next(answers), "dev_cer": 0.1})
        assert tool.main([*map(str, snaps), "-o", str(tmp_path / "given.pt"), "--candidates", "1,3", "--dev", str(manifest)]) == 0
        given = load_bundle(tmp_path / "given.pt").provenance
        assert given["averaged"] == kept and given["dev_candidates"] == {"last 3": wers[0], "last 1": wers[1]}


def test_fine_tunings_with_other_augmentation_average(speech_dir, tmp_path):
    """A model soup: the run's best.pt and a fine-tuning of it with VTLP and no SpecAugment differ only in
    training-only keys, so they average; the result records the last input's settings."""
    manifest = speech_dir / "manifest.jsonl"
    run, tuned = tmp_path / "run", tmp_path / "tuned"
    assert train.main(tiny_train_overrides(manifest, run, **{"trainer.max_steps": 2, "trainer.val_every": 2})) == 0
    assert train.main(tiny_train_overrides(manifest, tuned, **{
        "trainer.max_steps": 2, "trainer.val_every": 2, "init_from": run / "best.pt",
        "features.vtlp_max_warp": 0.1, "features.freq_masks": 0, "features.time_masks": 0})) == 0
    result = average(run / "best.pt", tuned / "best.pt", "-o", tmp_path / "soup.pt")
    assert result.returncode == 0, result.stderr
    soup, a, b = (load_bundle(p) for p in (tmp_path / "soup.pt", run / "best.pt", tuned / "best.pt"))
    assert soup.config["features"] == b.config["features"] != a.config["features"]
    assert soup.config["features"]["vtlp_max_warp"] == 0.1 and soup.config["features"]["freq_masks"] == 0
    sa, sb = a.recognizer.state_dict(), b.recognizer.state_dict()
    for key, value in soup.recognizer.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value.double(), (sa[key].double() + sb[key].double()) / 2, atol=1e-7), key


def test_bad_inputs_get_a_one_line_error(speech_dir, tmp_path):
    manifest = speech_dir / "manifest.jsonl"
    small, wide = tmp_path / "small", tmp_path / "wide"
    assert train.main(tiny_train_overrides(manifest, small, **{"trainer.max_steps": 2, "trainer.val_every": 2})) == 0
    assert train.main(tiny_train_overrides(manifest, wide, **{"trainer.max_steps": 2, "trainer.val_every": 2,
                                                              "model.hidden_size": 48})) == 0
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    cases = {
        (small / "best.pt", wide / "best.pt"): "another features/model config or vocabulary",
        (small / "best.pt", tmp_path / "missing.pt"): "missing.pt: no such file",
        (small / "best.pt", tmp_path / "notes.pt"): "notes.pt: not a loadable bundle or checkpoint",
        (small / "best.pt", tmp_path / "other.pt"): "other.pt: neither a model bundle nor a training checkpoint",
        (small / "best.pt", small / "last.pt", "--candidates", "2,1"): "--candidates needs --dev",
        (small / "best.pt", small / "last.pt", "--candidates", "3,1", "--dev", manifest): "between 1 and the 2 inputs",
        (small / "best.pt", small / "last.pt", "--candidates", "two", "--dev", manifest): "separated by commas",
        (small / "best.pt", small / "last.pt", "--candidates", "1,1", "--dev", manifest): "each count must be distinct",
        (small / "best.pt", small / "last.pt", "--candidates", "0", "--dev", manifest): "between 1 and the 2 inputs",
        (wide / "best.pt", small / "best.pt", small / "last.pt", "--candidates", "1", "--dev", manifest):
            "another features/model config",  # inputs outside every candidate are checked too
        (small / "best.pt", small / "last.pt", "--dev", tmp_path / "nodev.jsonl"): "nodev.jsonl",
        (small / "best.pt", small / "last.pt", "--dev", manifest, "--data", "nosuch"): "Could not find 'data/nosuch'",
    }
    for inputs, message in cases.items():
        result = average(*inputs, "-o", tmp_path / "out.pt")
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out.pt").exists()
