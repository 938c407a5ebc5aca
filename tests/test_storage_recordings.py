"""Recordings stored by content: a run that dies between storing the file and committing its row,
and runs again, leaves exactly one file; duplicates never delete a file a row points at."""
from __future__ import annotations

import pytest

from storage.recordings import NotAudio, delete_unless_referenced, store_recording
from tests.imap_server import mp3_bytes
from tests.storage_support import both_backends, media_bytes, media_files, quarantined


def stored_files(media) -> list[str]:
    return [path.rsplit("/", 1)[1] for path in media_files(media) if path.startswith("zayvka/zapis/")]


@both_backends
def test_storing_the_same_bytes_again_rewrites_one_file(media):
    data = mp3_bytes(40_000, seed=1)
    first = store_recording([data[:1000], data[1000:]], 10 * 1024 * 1024)
    # The worker died before the row was committed; the redelivered run stores the bytes again.
    again = store_recording([data], 10 * 1024 * 1024)
    assert first.new and again.new and first.relative_path == again.relative_path
    assert first.relative_path == f"zayvka/zapis/{first.sha256}.mp3"
    assert stored_files(media) == [f"{first.sha256}.mp3"]
    assert media_bytes(media, first.relative_path) == data
    assert quarantined(media) == []


def test_bytes_already_recorded_are_not_written(media):
    data = mp3_bytes(20_000, seed=2)
    known = store_recording([data], 10 * 1024 * 1024, stored_at=lambda sha256: "zayvka/zapis/older-name.mp3")
    assert not known.new and known.relative_path == "zayvka/zapis/older-name.mp3"
    assert stored_files(media) == [] and quarantined(media) == []


@both_backends
def test_a_duplicate_keeps_the_file_a_row_points_at(media):
    stored = store_recording([mp3_bytes(20_000, seed=3)], 10 * 1024 * 1024)
    delete_unless_referenced(stored.relative_path, lambda path: path == stored.relative_path)
    assert stored_files(media) == [stored.relative_path.rsplit("/", 1)[1]]
    delete_unless_referenced(stored.relative_path, lambda path: False)
    assert stored_files(media) == []


@both_backends
@pytest.mark.parametrize("chunks, empty", [([], True), ([b"<html>not yet</html>"], False)])
def test_empty_or_not_audio_is_refused_and_nothing_kept(media, chunks, empty):
    with pytest.raises(NotAudio) as refused:
        store_recording(chunks, 10 * 1024 * 1024)
    assert refused.value.empty is empty
    assert stored_files(media) == [] and quarantined(media) == []
