"""tools/plot_training.py: the curves of a real (tiny) training run, and its one-line errors."""

from __future__ import annotations

import json

from conftest import ROOT, load_script

plot_training = load_script("plot_training", ROOT / "tools" / "plot_training.py")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_a_training_run(trained_run, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert plot_training.main([str(trained_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 20_000
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind

    scalars = plot_training.read_scalars(trained_run)
    assert sorted(scalars["train/loss"]) == list(range(5, 401, 5))  # trainer.log_every=5, 400 steps
    validations = plot_training.read_validations(trained_run)
    assert [m["step"] for m in validations] == list(range(50, 401, 50))


def test_a_resumed_run_keeps_the_later_values(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    # Two starts of one run: the second resumed from step 20's checkpoint and logged steps 30..40 again.
    for start, steps, loss in ((1795000000, (10, 20, 30, 40), 2.0), (1795000900, (30, 40, 50), 1.0)):
        writer = SummaryWriter(str(tmp_path / str(start)))
        for step in steps:
            writer.add_scalar("train/loss", loss, step)
        writer.close()
        # SummaryWriter names a file by the current time; give each the time of its start.
        (tmp_path / "tb").mkdir(exist_ok=True)
        (event_file,) = (tmp_path / str(start)).iterdir()
        event_file.rename(tmp_path / "tb" / f"events.out.tfevents.{start}.host.1.0")
    assert plot_training.read_scalars(tmp_path)["train/loss"] == {10: 2.0, 20: 2.0, 30: 1.0, 40: 1.0, 50: 1.0}


def test_compares_runs_by_step_and_wall_time(trained_run, tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    # A run stopped after step 20 and resumed an hour later from step 20: 0.5 h + 0.25 h of training.
    other = tmp_path / "other"
    for start, steps in ((1795000000, (10, 20)), (1795005400, (30, 40))):
        writer = SummaryWriter(str(tmp_path / str(start)))
        for i, step in enumerate(steps):
            writer.add_scalar("train/loss", 1.0, step, walltime=start + i * (1800 if start == 1795000000 else 900))
        writer.close()
        (other / "tb").mkdir(parents=True, exist_ok=True)
        (event_file,) = (tmp_path / str(start)).iterdir()
        event_file.rename(other / "tb" / f"events.out.tfevents.{start}.host.1.0")
    assert plot_training.wall_hours(other) == {10: 0.0, 20: 0.5, 30: 0.5, 40: 0.75}
    (other / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "dev_wer": w}) + "\n" for s, w in ((20, 0.9), (40, 0.5))))

    assert plot_training.main([str(other), str(trained_run)]) == 0
    out = other / "compare.png"  # the default: in the first run's folder
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 20_000
    assert plot_training.main([str(other), str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing/metrics.jsonl: no such file" in err


def test_errors_are_one_line(tmp_path, capsys):
    assert plot_training.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.jsonl: no such file" in err

    (tmp_path / "metrics.jsonl").write_text("")
    assert plot_training.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.jsonl: no validation yet" in err

    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 50}) + "\n{broken\n")
    assert plot_training.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.jsonl:2: not JSON" in err
