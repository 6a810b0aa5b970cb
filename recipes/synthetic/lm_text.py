"""Write the training-pool sentences of the synthetic corpus, one per line, as language-model text.

    python recipes/synthetic/lm_text.py out=data/synthetic/lm_train.txt seed=0
    python tools/build_lm.py data/synthetic/lm_train.txt exp/lm

Every sentence that the recipe's split assigns to train for this seed and these split shares is
written, whether or not it was synthesized; no dev or test sentence ever is. The sentences and the
split come from prepare.py's own functions (`read_sentences`, `sentence_pools`) with the same
config (conf/prepare.yaml, the same overrides: `seed=`, `split.*=`, `text.*=`), so they cannot drift.

When the manifests of a corpus exist in `out_dir` (default data/synthetic), the output is checked
against them: a dev or test manifest sentence in the text, or a train manifest sentence missing
from it, means the corpus was made with other settings, and the run fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # prepare.py and its neighbours

from omegaconf import OmegaConf  # noqa: E402

from prepare import CONF_DIR, SPLITS, check_config, read_sentences, sentence_pools  # noqa: E402

from asr.config import UsageError, load_config, run_main, split_args  # noqa: E402
from asr.data import ManifestError, read_manifest  # noqa: E402
from asr.files import write_text_atomic  # noqa: E402

OUT_KEY = "out"
DEFAULT_OUT_NAME = "lm_train.txt"  # in out_dir when out= is not given
TRAIN_POOL = "train"


class CorpusMismatch(Exception):
    """The corpus in out_dir was planned with another split than this run's."""


def check_against_manifests(train_text: set[str], corpus_dir: Path) -> list[str]:
    """The manifests of `corpus_dir` that were checked; raises CorpusMismatch when a held-out manifest
    sentence is in `train_text` or a train manifest sentence is not."""
    checked = []
    for split in SPLITS:
        path = corpus_dir / f"{split}.jsonl"
        if not path.is_file():
            continue
        texts = {e.text for e in read_manifest(path)}
        bad = texts - train_text if split == TRAIN_POOL else texts & train_text
        if bad:
            what = "missing from" if split == TRAIN_POOL else "in"
            raise CorpusMismatch(f"{len(bad)} sentences of {path} are {what} the training pool (e.g. "
                                 f"{sorted(bad)[0]!r}): the corpus was made with other seed/split/text settings; "
                                 "pass the same overrides as to prepare.py")
        checked.append(path.name)
    return checked


def main(argv: list[str]) -> int:
    """Write the training-pool sentences (see the module docstring)."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"unexpected argument(s) {paths}; use key=value overrides, e.g. out=lm_train.txt seed=0")
    ours = {k: v for k, _, v in (o.partition("=") for o in overrides) if k == OUT_KEY}
    cfg = load_config("prepare", [o for o in overrides if o.partition("=")[0] != OUT_KEY], config_dir=CONF_DIR)
    check_config(cfg)
    out = Path(ours.get(OUT_KEY) or Path(cfg.out_dir) / DEFAULT_OUT_NAME)
    sentences, missing = read_sentences(cfg)
    for source, why in missing.items():
        print(f"text source {source} SKIPPED: {why}", file=sys.stderr)
    if not sentences:
        raise UsageError("no sentences: none of the text sources could be read")
    pools = sentence_pools(sentences, OmegaConf.to_container(cfg, resolve=True))
    train = [s.text for s in pools[TRAIN_POOL]]
    checked = check_against_manifests(set(train), Path(cfg.out_dir))
    write_text_atomic(out, "".join(text + "\n" for text in train))
    held_out = ", ".join(f"{len(pools[p])} {p}" for p in sorted(pools) if p != TRAIN_POOL)
    print(f"wrote {len(train)} training-pool sentences ({sum(len(t.split()) for t in train)} words) to {out}; "
          f"held out: {held_out or 'none'}"
          + (f"; consistent with {', '.join(checked)} in {cfg.out_dir}" if checked else ""))
    return 0


if __name__ == "__main__":
    run_main(main, errors=(ManifestError, CorpusMismatch))
