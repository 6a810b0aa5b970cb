"""asr.files.atomic_path: the new file appears whole or not at all."""

import pytest

from asr.files import atomic_path, write_text_atomic


def test_a_successful_write_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"  # the folder is created
    write_text_atomic(target, "first\n")
    write_text_atomic(target, "second\n")
    assert target.read_text() == "second\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_keep_suffix_puts_the_extension_last(tmp_path):
    with atomic_path(tmp_path / "a.wav", keep_suffix=True) as tmp:
        assert tmp.suffix == ".wav" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "a.wav").read_bytes() == b"x"
