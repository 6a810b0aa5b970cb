"""tools/package_model.py: its refusals, each one line naming the file (the success path runs in
tests/test_recipes.py::test_run_sh_makes_packages_and_evaluates_a_model)."""

from __future__ import annotations

import json

from conftest import ROOT, load_script

package_model = load_script("package_model", ROOT / "tools" / "package_model.py")


def _lm_dir(tmp_path, lm_bytes: int = 10):
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "lm.bin").write_bytes(b"\0" * lm_bytes)
    (lm / "lexicon.txt").write_text("a a |\n")
    return lm


def _corpus(tmp_path, summary: bool = True, name: str = "corpus", train_hours: float = 1.5):
    corpus = tmp_path / name
    corpus.mkdir()
    if summary:
        (corpus / "summary.json").write_text(json.dumps(
            {"seed": 3, "splits": {"train": {"hours": train_hours, "voices": 4}, "dev": {"hours": 0.1, "voices": 2}}}))
    return corpus


def main(capsys, *args) -> tuple[int, str]:
    code = package_model.main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def test_refusals_are_one_line(tiny_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    lm, corpus = _lm_dir(tmp_path), _corpus(tmp_path)
    (lm / "lexicon.txt").unlink()
    code, err = main(capsys, tiny_model, "--corpus", corpus, "--lm", lm, "--out", out)
    assert code == 1 and err.startswith(f"error: {lm / 'lexicon.txt'}: no such file") and err.count("\n") == 1

    (lm / "lexicon.txt").write_text("a a |\n")
    monkeypatch.setattr(package_model, "MAX_LM_BYTES", 5)
    code, err = main(capsys, tiny_model, "--corpus", corpus, "--lm", lm, "--out", out)
    assert code == 1 and "lm.bin: 0.0 MB is over the 0 MB limit" in err and err.count("\n") == 1
    monkeypatch.undo()

    code, err = main(capsys, tiny_model, "--corpus", tmp_path / "lm", "--lm", lm, "--out", out)
    assert code == 1 and f"{tmp_path / 'lm' / 'summary.json'}: no such file" in err

    monkeypatch.setattr(package_model, "MAX_MODEL_BYTES", 1000)
    code, err = main(capsys, tiny_model, "--corpus", corpus, "--lm", lm, "--out", out)
    assert code == 1 and "over the 0 MB limit" in err and not (out / "model.pt").exists()
    assert not list(out.glob("*"))  # nothing half-written is left


def test_provenance_from_the_corpus_and_lm(tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    code, _ = main(capsys, tiny_model, "--corpus", _corpus(tmp_path), "--lm", _lm_dir(tmp_path), "--out", out, "--fp32")
    assert code == 0 and sorted(p.name for p in out.iterdir()) == ["lexicon.txt", "lm.bin", "model.pt"]
    from asr.bundle import load_bundle

    provenance = load_bundle(out / "model.pt").provenance
    assert provenance["corpus"] == {"path": str(tmp_path / "corpus"), "recipe": "recipes/synthetic", "seed": 3,
                                    "hours": {"train": 1.5, "dev": 0.1}, "voices": {"train": 4, "dev": 2}}
    assert provenance["weights"] == "fp32" and provenance["lm"]["lexicon_words"] == 1
    assert provenance["train_wall_hours"] is not None  # the tiny run logged to TensorBoard

    more = _corpus(tmp_path, name="more_voices", train_hours=0.5)  # trained on two corpora: both are recorded
    code, _ = main(capsys, tiny_model, "--corpus", tmp_path / "corpus", more, "--lm", _lm_dir(tmp_path / "more_voices"),
                   "--out", out)
    corpora = load_bundle(out / "model.pt").provenance["corpus"]
    assert code == 0 and [(c["path"], c["hours"]["train"]) for c in corpora] == [(str(tmp_path / "corpus"), 1.5),
                                                                                  (str(more), 0.5)]


def test_a_fine_tuned_run_counts_its_starting_bundles_training_time(tiny_model, tmp_path, capsys):
    from asr.bundle import load_bundle, save_bundle

    run = tmp_path / "finetuned"
    run.mkdir()
    (run / "tb").symlink_to(tiny_model.parent / "tb")  # this run's TensorBoard events: the tiny run's
    bundle = load_bundle(tiny_model)
    save_bundle(run / "best.pt", bundle.recognizer, bundle.tokenizer, bundle.config,
                {**bundle.provenance, "init_from": {"bundle": "asr/assets/model.pt", "train_wall_hours": 7.5}})
    own = package_model.train_wall_hours(tiny_model.parent)
    code, _ = main(capsys, run / "best.pt", "--corpus", _corpus(tmp_path), "--lm", _lm_dir(tmp_path), "--out", tmp_path / "out")
    assert code == 0
    assert load_bundle(tmp_path / "out" / "model.pt").provenance["train_wall_hours"] == round(own + 7.5, 2)
    # started from a run's best.pt (no train_wall_hours in its provenance): that run's TensorBoard events count
    save_bundle(run / "best.pt", bundle.recognizer, bundle.tokenizer, bundle.config,
                {**bundle.provenance, "init_from": {"bundle": str(tiny_model)}})
    assert package_model.total_wall_hours(run, load_bundle(run / "best.pt").provenance["init_from"]) == round(own + own, 2)
    # a chain (best.pt fine-tuned from a best.pt fine-tuned from a run): every run's events count once
    second = tmp_path / "second"
    second.mkdir()
    (second / "tb").symlink_to(tiny_model.parent / "tb")
    lineage = {"bundle": str(run / "best.pt"), **load_bundle(run / "best.pt").provenance}
    assert package_model.total_wall_hours(second, lineage) == round(3 * own, 2)
    # started from a copy of an average away from its run (no events beside it): the copy's own record counts
    copy = tmp_path / "checkpoints" / "round1.pt"
    copy.parent.mkdir()
    save_bundle(copy, bundle.recognizer, bundle.tokenizer, bundle.config, {**bundle.provenance, "train_wall_hours": 2.25})
    started = {"bundle": str(copy), **{k: v for k, v in bundle.provenance.items() if k != "train_wall_hours"}}
    assert package_model.total_wall_hours(second, started) == round(own + 2.25, 2)
    # ... but not when another model has been written to that path since: no number rather than a wrong one
    assert package_model.total_wall_hours(second, {**started, "created": "2020-01-01T00:00:00+00:00"}) is None
