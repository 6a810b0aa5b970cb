"""Download and extract LibriSpeech (and Mini LibriSpeech) from OpenSLR.

    python recipes/librispeech/download.py dl_dir=data/librispeech/download
    python recipes/librispeech/download.py subsets=[dev-clean,test-clean] mirror=https://us.openslr.org/resources

Interrupted downloads resume where they stopped (HTTP Range requests on `<archive>.part`), a
dropped connection is retried, and every archive is checked against OpenSLR's MD5 sum before
it is extracted. A subset that is already extracted is skipped. Options: conf/download.yaml.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from asr.config import UsageError, load_config, run_main, split_args
from asr.download import DownloadError, extract, fetch

CONF_DIR = Path(__file__).resolve().parent / "conf"
# subset → (OpenSLR resource number, MD5 of <subset>.tar.gz from the resource's md5sum.txt)
SUBSETS = {
    "dev-clean": ("12", "42e2234ba48799c1f50f24a7926300a1"),
    "dev-other": ("12", "c8d0bcc9cca99d4f8b62fcc847357931"),
    "test-clean": ("12", "32fa31d27d2e1cad72775fee3f4849a9"),
    "test-other": ("12", "fb5a50374b501bb3bac4815ee91d3135"),
    "train-clean-100": ("12", "2a93770f6d5c6c964bc36631d331a522"),
    "train-clean-360": ("12", "c0e676e450a7ff2f54aeade5171606fa"),
    "train-other-500": ("12", "d1a0fd59409feb2c614ce4d30c387708"),
    "dev-clean-2": ("31", "6d7ab67ac6a1d2c993d050e16d61080d"),  # Mini LibriSpeech, same layout
    "train-clean-5": ("31", "5df7d4e78065366204ca6845bb08f490"),
}
EXTRACTED_MARK = ".extracted"  # written into LibriSpeech/<subset>/ once extraction finished


def download_subset(subset: str, dl_dir: Path, mirror: str, keep_archive: bool, retries: int) -> Path:
    """Download, check and extract one subset; returns its folder `dl_dir`/LibriSpeech/`subset`."""
    resource, md5 = SUBSETS[subset]
    folder = dl_dir / "LibriSpeech" / subset
    if (folder / EXTRACTED_MARK).exists():
        print(f"{subset}: already extracted in {folder}")
        return folder
    archive = fetch(f"{mirror.rstrip('/')}/{resource}/{subset}.tar.gz", dl_dir / f"{subset}.tar.gz", md5,
                    retries=retries)
    print(f"{subset}: checksum ok, extracting")
    extract(archive, dl_dir)
    if not folder.is_dir():
        raise DownloadError(f"{archive}: did not contain LibriSpeech/{subset}/")
    (folder / EXTRACTED_MARK).touch()
    if not keep_archive:
        archive.unlink()
    return folder


def main(argv: list[str]) -> int:
    """Download every configured subset."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"unexpected argument(s) {paths}; use key=value overrides, e.g. subsets=[dev-clean]")
    cfg = load_config("download", overrides, config_dir=CONF_DIR)
    unknown = [s for s in cfg.subsets if s not in SUBSETS]
    if unknown:
        raise UsageError(f"unknown subset(s) {unknown}; known: {', '.join(SUBSETS)}")
    for subset in cfg.subsets:
        download_subset(subset, Path(cfg.dl_dir), cfg.mirror, cfg.keep_archives, cfg.retries)
    return 0


if __name__ == "__main__":
    run_main(main, errors=(DownloadError, tarfile.TarError))
