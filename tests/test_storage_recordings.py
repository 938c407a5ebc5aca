"""Recordings stored by content: a run that dies between storing the file and committing its row,
and runs again, leaves exactly one file; duplicates never delete a file a row points at."""
from __future__ import annotations

import pytest

from storage.recordings import NotAudio, delete_unless_referenced, store_recording
from tests.imap_server import mp3_bytes


def stored_files(media) -> list[str]:
    folder = media.media_root / "zayvka" / "zapis"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_storing_the_same_bytes_again_rewrites_one_file(media):
    data = mp3_bytes(40_000, seed=1)
    first = store_recording([data[:1000], data[1000:]], 10 * 1024 * 1024)
    # The worker died before the row was committed; the redelivered run stores the bytes again.
    again = store_recording([data], 10 * 1024 * 1024)
    assert first.new and again.new and first.relative_path == again.relative_path
    assert first.relative_path == f"zayvka/zapis/{first.sha256}.mp3"
    assert stored_files(media) == [f"{first.sha256}.mp3"]
    assert (media.media_root / first.relative_path).read_bytes() == data
    assert list(media.quarantine_root.iterdir()) == []


def test_bytes_already_recorded_are_not_written(media):
    data = mp3_bytes(20_000, seed=2)
    known = store_recording([data], 10 * 1024 * 1024, stored_at=lambda sha256: "zayvka/zapis/older-name.mp3")
    assert not known.new and known.relative_path == "zayvka/zapis/older-name.mp3"
    assert stored_files(media) == [] and list(media.quarantine_root.iterdir()) == []


def test_a_duplicate_keeps_the_file_a_row_points_at(media):
    stored = store_recording([mp3_bytes(20_000, seed=3)], 10 * 1024 * 1024)
    delete_unless_referenced(stored.relative_path, lambda path: path == stored.relative_path)
    assert stored_files(media) == [stored.relative_path.rsplit("/", 1)[1]]
    delete_unless_referenced(stored.relative_path, lambda path: False)
    assert stored_files(media) == []


@pytest.mark.parametrize("chunks, empty", [([], True), ([b"<html>not yet</html>"], False)])
def test_empty_or_not_audio_is_refused_and_nothing_kept(media, chunks, empty):
    with pytest.raises(NotAudio) as refused:
        store_recording(chunks, 10 * 1024 * 1024)
    assert refused.value.empty is empty
    assert stored_files(media) == [] and list(media.quarantine_root.iterdir()) == []
