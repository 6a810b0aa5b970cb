"""Training: real (tiny) models on real espeak-ng speech."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from asr import train
from asr.bundle import load_bundle
from asr.data import read_manifest, write_manifest
from conftest import tiny_train_overrides


def overrides(speech_dir, out_dir, **extra):
    return tiny_train_overrides(speech_dir / "manifest.jsonl", out_dir, **extra)


def metrics(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_model_overfits_a_handful_of_utterances(trained_run):
    lines = metrics(trained_run)
    assert [line["step"] for line in lines] == list(range(50, 401, 50))
    assert lines[-1]["train_loss"] < 0.25 * lines[0]["train_loss"]  # CTC loss falls clearly
    best = min(line["dev_cer"] for line in lines)
    assert best < 0.05, lines  # memorized: near-zero greedy CER on the training utterances
    bundle = load_bundle(trained_run / "best.pt")
    assert bundle.provenance["dev_cer"] == best and bundle.provenance["steps"] in [line["step"] for line in lines]
    assert (trained_run / "last.pt").is_file() and any((trained_run / "tb").iterdir())


def test_resume_is_exact(speech_dir, tmp_path, capsys):
    """2N steps straight == N steps, stop, resume, N more (same seed, every random augmentation on): identical
    weights, on the CPU and on CUDA (where the recurrent dropout must not be cuDNN's: its random state is not in
    the checkpoint)."""
    common = {"optim.min_lr_ratio": 1.0, "trainer.save_every": 6, "data.max_batch_seconds": 5,
              "features.freq_masks": 2, "features.freq_mask_width": 10, "features.vtlp_max_warp": 0.1,
              "model.dropout": 0.2,  # RNG in use
              "data.speed_factors": "[0.9,1.0,1.1]"}
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main(overrides(speech_dir, straight, **common, **{"trainer.max_steps": 12})) == 0
    logged = [line for line in capsys.readouterr().out.splitlines() if "train loss" in line]  # progress=false
    assert [line.split(":")[0] for line in logged] == ["step 5/12", "step 10/12"]  # every log_every steps
    assert all(math.isfinite(float(line.split("train loss ")[1].split()[0])) for line in logged)
    assert train.main(overrides(speech_dir, split, **common, **{"trainer.max_steps": 6})) == 0
    assert train.main(overrides(speech_dir, split, **common, **{"trainer.max_steps": 12, "resume": "true"})) == 0
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(split / "last.pt", weights_only=True)
    # the split run validated once more (when it stopped at step 6): only that counter may differ
    same = {k: v for k, v in a["state"].items() if k != "stale_validations"}
    assert same == {k: v for k, v in b["state"].items() if k != "stale_validations"}
    assert a["state"]["step"] == 12 and a["state"]["epoch"] >= 1  # crossed an epoch boundary
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [m["step"] for m in metrics(split)] == [6, 12]
    # the speed perturbation is in effect: without it the same 12 steps end elsewhere
    plain = tmp_path / "plain"
    assert train.main(overrides(speech_dir, plain, **{**common, "data.speed_factors": "[1.0]", "trainer.max_steps": 12})) == 0
    c = torch.load(plain / "last.pt", weights_only=True)
    assert any(not torch.equal(a["model"][key], c["model"][key]) for key in a["model"])
    assert load_bundle(straight / "best.pt").provenance["speed_factors"] == [0.9, 1.0, 1.1]  # --info shows it
    assert "speed_factors" not in load_bundle(plain / "best.pt").provenance
    # a fresh run must not overwrite an existing one
    result = run_cli(*overrides(speech_dir, split, **common, **{"trainer.max_steps": 12}))
    assert result.returncode == 2 and "last.pt exists: pass resume=true" in result.stderr


def test_nonfinite_batches_are_skipped_and_counted(speech_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train.ctc_loss

    def poisoned(logits, out_lengths, batch):
        calls["n"] += 1
        loss, tokens = real(logits, out_lengths, batch)
        return (loss * float("nan"), tokens) if calls["n"] == 3 else (loss, tokens)

    monkeypatch.setattr(train, "ctc_loss", poisoned)
    out = tmp_path / "nan"
    assert train.main(overrides(speech_dir, out, **{"trainer.max_steps": 5})) == 0
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["state"]["nonfinite_skipped"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def run_cli(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "asr.train", *args], capture_output=True, text=True, env=env, **kwargs)


@pytest.mark.parametrize(
    "args,message",
    [
        (["data.train_manifest=/nonexistent/train.jsonl"], "/nonexistent/train.jsonl: no such manifest file"),
        (["model=enormous"], "Could not find 'model/enormous'"),
        (["some/path.wav"], "asr.train takes only key=value overrides"),
        (["trainer.precision=fp16", "trainer.device=cpu"], "trainer.precision=fp16 needs a CUDA device"),
        (["data.speed_factors=[0.9,-1]"], "data.speed_factors must be positive numbers"),
        (["trainer.snapshot_every=100", "trainer.keep_snapshots=0"], "trainer.keep_snapshots must be at least 1"),
    ],
)
def test_bad_configs_give_one_line_errors(tmp_path, args, message):
    result = run_cli(*args, f"out_dir={tmp_path}")
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_more_processes_than_gpus_is_a_usage_error(monkeypatch):
    """torchrun --nproc_per_node=2 on a one-GPU machine: process 1 says why instead of a CUDA traceback."""
    from asr.config import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(train.UsageError, match=r"process 1 of this node needs cuda:1, but 1 CUDA device\(s\) are visible"):
        pick_device("auto", 1)


def test_speed_factors_accept_a_list_or_one_number():
    from omegaconf import OmegaConf

    assert train.speed_factor_list(OmegaConf.create([0.9, 1, 1.1])) == [0.9, 1.0, 1.1]
    assert train.speed_factor_list(1.1) == [1.1]
    for bad in (OmegaConf.create([]), OmegaConf.create([1.0, "fast"]), True, 0):
        with pytest.raises(train.UsageError, match="data.speed_factors must be positive numbers"):
            train.speed_factor_list(bad)


def test_empty_and_unusable_manifests(speech_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = run_cli(*overrides(speech_dir, tmp_path / "o", **{"data.train_manifest": empty}))
    assert result.returncode == 1 and f"{empty}: manifest is empty" in result.stderr and "Traceback" not in result.stderr
    entries = read_manifest(speech_dir / "manifest.jsonl")
    for e in entries:
        e.text = "x" * 500  # far more letters than frames
    write_manifest(speech_dir / "impossible.jsonl", entries)
    result = run_cli(*overrides(speech_dir, tmp_path / "o", **{"data.train_manifest": speech_dir / "impossible.jsonl"}))
    assert result.returncode == 1 and "no usable utterances after filtering" in result.stderr
    assert "6 transcript too long for its frames" in result.stderr


@pytest.mark.slow
def test_sigterm_saves_and_resume_continues(speech_dir, tmp_path):
    """SIGTERM to the whole process group (as a terminal's Ctrl-C or Slurm's scancel does), data workers
    included: the step finishes, last.pt is saved, and resume=true continues from it."""
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = overrides(speech_dir, out, **{"trainer.max_steps": 100000, "data.num_workers": 1})
    proc = subprocess.Popen([sys.executable, "-m", "asr.train", *args], stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    deadline = time.time() + 60
    while not (out / "tb").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    step = torch.load(out / "last.pt", weights_only=True)["state"]["step"]
    assert step > 0 and "stopped by SIGTERM" in err
    result = run_cli(*overrides(speech_dir, out, **{"trainer.max_steps": step + 5, "resume": "true"}))
    assert result.returncode == 0, result.stderr
    assert f"resumed from {out / 'last.pt'} at step {step}" in result.stderr
    assert torch.load(out / "last.pt", weights_only=True)["state"]["step"] == step + 5


SIGNAL_AT_WORKER_START = """
import os, signal, sys
from torch.utils.data import DataLoader
from asr import train

def signalled_init(worker_id):  # the group's signal lands in the worker at a fixed moment: after torch's worker set-up
    os.killpg(0, signal.SIGTERM)  # (whose SIGTERM handler kills it) and before the trainer's worker_init_fn
    train.ignore_stop_signals(worker_id)

stopper = train.StopSignal()
loader = DataLoader(list(range(8)), batch_size=2, num_workers=1, worker_init_fn=signalled_init)
batches = train.start_batches(loader) if sys.argv[1] == "held" else iter(loader)
print(sum(len(b) for b in batches), stopper.signum == signal.SIGTERM)
"""


def test_a_stop_signal_while_workers_start_does_not_kill_them():
    """SIGTERM to the process group in the moment between a DataLoader worker's fork and its worker_init_fn:
    with the signals held back while forking (start_batches) the worker lives and the main process gets it."""
    def run(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", SIGNAL_AT_WORKER_START, mode], capture_output=True, text=True, timeout=60,
                              start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    held = run("held")
    assert held.returncode == 0 and held.stdout.split() == ["8", "True"], held.stderr[-2000:]
    plain = run("plain")  # what the trainer did before: the worker dies of the signal
    assert plain.returncode != 0 and "exited unexpectedly" in plain.stderr, plain.stdout


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(speech_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "asr.train", *overrides(speech_dir, out, **{"trainer.max_steps": 8, "trainer.val_every": 4, "data.max_batch_seconds": 4,
                                                "trainer.device": "cpu"})]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world 2" in result.stderr
    assert [m["step"] for m in metrics(out)] == [4, 8]  # rank 0 alone writes
    assert torch.load(out / "last.pt", weights_only=True)["state"]["step"] == 8
    load_bundle(out / "best.pt")


def test_bpe_tokenizer_trains_and_is_bundled(speech_dir, tmp_path):
    bad = run_cli(*overrides(speech_dir, tmp_path / "w", tokenizer="words"))
    assert bad.returncode == 2 and "tokenizer must be char or bpe" in bad.stderr and "Traceback" not in bad.stderr
    out = tmp_path / "bpe"
    assert train.main(overrides(speech_dir, out, **{"tokenizer": "bpe", "bpe_vocab_size": 40,
                                                    "trainer.max_steps": 4, "trainer.val_every": 4})) == 0
    bundle = load_bundle(out / "best.pt")
    assert bundle.tokenizer.kind == "sentencepiece" and len(bundle.tokenizer) == 41  # 40 pieces + blank
    assert bundle.tokenizer.decode(bundle.tokenizer.encode("the cat sat")) == "the cat sat"


@pytest.mark.slow
def test_fine_tuning_starts_from_a_bundle(speech_dir, trained_run, tmp_path):
    """init_from: the memorized tiny model's weights, tokenizer and CMVN start a new run, so its first validation
    is already near-perfect (a fresh model's is not); manifests given as a list are read as one, a manifest listed
    twice counted twice (how a small set is up-weighted); the bundle written names where it started."""
    source = load_bundle(trained_run / "best.pt")
    manifests = f"[{speech_dir / 'manifest.jsonl'},{speech_dir / 'train.jsonl'},{speech_dir / 'train.jsonl'}]"
    common = {"model.hidden_size": 128, "features.normalize": "global", "data.train_manifest": manifests,
              "optim.lr": 1e-5, "trainer.max_steps": 1, "trainer.val_every": 1}
    out = tmp_path / "ft"
    assert train.main(overrides(speech_dir, out, init_from=trained_run / "best.pt", **common)) == 0
    (line,) = metrics(out)
    assert line["dev_cer"] < 0.05, line
    tuned = load_bundle(out / "best.pt")
    assert tuned.provenance["init_from"]["bundle"] == str(trained_run / "best.pt")
    assert tuned.provenance["init_from"]["steps"] == source.provenance["steps"]
    assert tuned.provenance["train_manifest"] == " + ".join(
        str(speech_dir / m) for m in ("manifest.jsonl", "train.jsonl", "train.jsonl"))
    assert tuned.provenance["train_hours"] == pytest.approx(
        sum(e.duration for m in ("manifest.jsonl", "train.jsonl", "train.jsonl")
            for e in read_manifest(speech_dir / m)) / 3600, abs=6e-4)  # rounded to 3 places; train.jsonl is 0.01 h
    # a resumed fine-tuning still knows where it started (last.pt carries it to the best.pt it writes next)
    resumed = {**common, "trainer.max_steps": 3, "resume": "true"}
    assert train.main(overrides(speech_dir, out, init_from=trained_run / "best.pt", **resumed)) == 0
    assert torch.load(out / "last.pt", weights_only=True)["init_from"]["steps"] == source.provenance["steps"]
    # fine-tuning the fine-tuned model: the chain of starts is kept, and --info shows all of it, latest first
    assert train.main(overrides(speech_dir, tmp_path / "ft2", init_from=out / "best.pt", **common)) == 0
    info = subprocess.run([sys.executable, "-m", "asr.transcribe", "--info", f"model={tmp_path / 'ft2' / 'best.pt'}"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    tuned = load_bundle(out / "best.pt")
    when = [b.provenance["created"][:16].replace("T", " ") for b in (tuned, source)]
    assert (f"init_from: {out / 'best.pt'} of {when[0]} ({tuned.provenance['steps']} steps, " in info.stdout
            and f" <- {trained_run / 'best.pt'} of {when[1]} ({source.provenance['steps']} steps, " in info.stdout), info.stdout
    assert train.main(overrides(speech_dir, tmp_path / "fresh", **common)) == 0
    assert metrics(tmp_path / "fresh")[0]["dev_cer"] > 0.5


@pytest.mark.slow
def test_a_new_tokenizer_keeps_the_bundles_encoder(speech_dir, trained_run, tmp_path):
    """init_tokenizer=new: the memorized char model's encoder under a new BPE output layer learns the utterances in
    120 steps, where the same steps from random weights do not; the bundle has the new units and says so."""
    common = {"model.hidden_size": 128, "features.normalize": "global", "tokenizer": "bpe", "bpe_vocab_size": 40,
              "trainer.max_steps": 120, "trainer.val_every": 40}
    out, fresh = tmp_path / "bpe_on_char", tmp_path / "bpe_fresh"
    assert train.main(overrides(speech_dir, out, init_from=trained_run / "best.pt", init_tokenizer="new", **common)) == 0
    assert train.main(overrides(speech_dir, fresh, **common)) == 0
    tuned = load_bundle(out / "best.pt")
    assert tuned.tokenizer.kind == "sentencepiece" and len(tuned.tokenizer) == 41
    assert tuned.recognizer.model.head.out_features == 41
    assert tuned.provenance["init_from"]["new_tokenizer"] == "sentencepiece"
    info = subprocess.run([sys.executable, "-m", "asr.transcribe", "--info", f"model={out / 'best.pt'}"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "; a new sentencepiece output layer on it)" in info.stdout and "tokenizer: sentencepiece (41 units)" in info.stdout
    transferred, scratch = metrics(out)[-1]["dev_cer"], metrics(fresh)[-1]["dev_cer"]
    assert transferred < 0.5 * scratch, (transferred, scratch)
    bad = run_cli(*overrides(speech_dir, tmp_path / "bad", init_tokenizer="keep"))
    assert bad.returncode == 2 and "init_tokenizer must be bundle or new, got 'keep'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    alone = run_cli(*overrides(speech_dir, tmp_path / "alone", init_tokenizer="new"))
    assert alone.returncode == 2 and "init_tokenizer=new needs init_from" in alone.stderr
    assert len(alone.stderr.strip().splitlines()) == 1


def test_fine_tuning_the_bundled_model_records_its_path_in_the_package(speech_dir, tmp_path):
    """init_from=bundled: the lineage names asr/assets/model.pt, not the absolute path of the machine that trained.
    Augmentation (VTLP, SpecAugment) may differ from the bundle's: the new bundle records this run's."""
    args = [a for a in overrides(speech_dir, tmp_path / "ft", init_from="bundled", **{"trainer.max_steps": 1, "trainer.val_every": 1})
            if not a.startswith(("features.", "model="))]  # conf/train.yaml's defaults are the bundled model's
    assert train.main(args + ["features.vtlp_max_warp=0.1", "features.freq_masks=1"]) == 0
    tuned = load_bundle(tmp_path / "ft" / "best.pt")
    start = tuned.provenance["init_from"]
    assert start["bundle"] == "asr/assets/model.pt" and start["steps"] == load_bundle().provenance["steps"]
    assert tuned.config["features"]["vtlp_max_warp"] == 0.1 and tuned.config["features"]["freq_masks"] == 1


def test_bad_model_options_are_one_line_errors(speech_dir, tmp_path):
    for key, value, message in [("features.vtlp_max_warp", 1.5, "features.vtlp_max_warp must be in [0, 1), got 1.5"),
                                ("features.vtlp_boundary_hz", 9000, "features.vtlp_boundary_hz must be between 0 and 8000 Hz"),
                                ("model.rnn_type", "foo", "model.rnn_type must be one of")]:
        result = run_cli(*overrides(speech_dir, tmp_path / key, **{key: value}))
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_fine_tuning_needs_the_bundles_architecture(speech_dir, trained_run, tmp_path):
    mismatch = run_cli(*overrides(speech_dir, tmp_path / "a", init_from=trained_run / "best.pt", **{"model.hidden_size": 64}))
    assert mismatch.returncode == 2 and "Traceback" not in mismatch.stderr
    assert "init_from needs this run's features/model config to be the bundle's" in mismatch.stderr
    assert "model.hidden_size (128 vs 64)" in mismatch.stderr and "features.normalize (global vs utterance)" in mismatch.stderr
    missing = run_cli(*overrides(speech_dir, tmp_path / "b", init_from=tmp_path / "nope.pt"))
    assert missing.returncode == 1 and f"{tmp_path / 'nope.pt'}: no such model bundle" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
