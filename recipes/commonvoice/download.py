"""Download (or take) a Common Voice release archive, check it, and extract it.

    python recipes/commonvoice/download.py url='https://...signed link...' sha256=<from the dataset page>
    python recipes/commonvoice/download.py archive=~/Downloads/cv-corpus-17.0-2024-03-15-en.tar.gz

Common Voice cannot be fetched anonymously: its dataset page asks for an e-mail address and for
accepting its terms, then gives a signed link to one locale's archive. Pass that link as `url`
(it expires after a while; a new link for the same archive resumes the partial file, HTTP Range
on `<archive>.part`), or download it in a browser and pass the file as `archive`. With `sha256`
the archive is checked before it is extracted; without, its sum is printed to compare by hand.
Extraction refuses paths that would land outside `dl_dir`, and an archive already extracted is
skipped by later runs. Options: conf/download.yaml.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from asr.config import UsageError, load_config, run_main, split_args
from asr.download import DownloadError, extract, fetch, file_digest

CONF_DIR = Path(__file__).resolve().parent / "conf"
DATASETS_PAGE = "https://commonvoice.mozilla.org/datasets"


def extracted_mark(dl_dir: Path, archive: Path) -> Path:
    """The file that says `archive` was extracted completely into `dl_dir`."""
    return dl_dir / f".{archive.name}.extracted"


def locale_folders(root: Path) -> list[Path]:
    """Release locale folders below `root` (`cv-corpus-*/<locale>/` holding `clips/`), sorted."""
    return sorted(p.parent for p in root.glob("*/*/clips") if p.is_dir())


def archive_path(cfg) -> Path:
    """Where the archive is: `archive=`, or the file in `dl_dir` that `url=` downloads to."""
    if cfg.archive:
        return Path(cfg.archive).expanduser()
    if not cfg.url:
        raise UsageError(f"no url= or archive= given: Common Voice needs its terms accepted first; get the "
                         f"download link for your locale from {DATASETS_PAGE} and pass it as url='...' "
                         "(quoted), or download the archive and pass archive=path")
    name = cfg.archive_name or Path(unquote(urlparse(cfg.url).path)).name
    if not name:
        raise UsageError("cannot tell the archive's file name from the url; pass archive_name=...")
    return Path(cfg.dl_dir).expanduser() / name


def download(cfg) -> Path:
    """Download or take the archive, check it and extract it into `dl_dir`; returns the archive's path."""
    dl_dir, archive = Path(cfg.dl_dir).expanduser(), archive_path(cfg)
    sha256 = cfg.sha256.lower() if cfg.sha256 else None
    if extracted_mark(dl_dir, archive).exists():
        print(f"{archive.name}: already extracted in {dl_dir}")
        return archive
    if not cfg.archive:
        fetch(cfg.url, archive, sha256, algorithm="sha256", retries=cfg.retries)  # checks the sum it downloads
    elif not archive.is_file():
        raise UsageError(f"archive {archive}: no such file")
    elif sha256:
        print(f"{archive}: checking SHA-256")
        got = file_digest(archive, "sha256")
        if got != sha256:
            raise DownloadError(f"{archive}: SHA-256 {got} does not match the expected {cfg.sha256}")
    if not sha256:
        print(f"{archive}: SHA-256 {file_digest(archive, 'sha256')} (not checked: no sha256= given)")
    print(f"{archive}: extracting into {dl_dir}")
    extract(archive, dl_dir)
    if not locale_folders(dl_dir):
        raise DownloadError(f"{archive}: did not contain a cv-corpus-*/<locale>/clips/ folder")
    extracted_mark(dl_dir, archive).touch()
    if not cfg.archive and not cfg.keep_archive:
        archive.unlink()
    return archive


def main(argv: list[str]) -> int:
    """Download or take the configured archive and extract it; print the locale folders found."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"unexpected argument(s) {paths}; use key=value overrides, e.g. archive=path/to/archive.tar.gz")
    cfg = load_config("download", overrides, config_dir=CONF_DIR)
    archive = download(cfg)
    for folder in locale_folders(Path(cfg.dl_dir).expanduser()):
        tsvs = ", ".join(sorted(p.name for p in folder.glob("*.tsv")))
        print(f"{folder}: {tsvs}")
    return 0


if __name__ == "__main__":
    run_main(main, errors=(DownloadError, tarfile.TarError))
