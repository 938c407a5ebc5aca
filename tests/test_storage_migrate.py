"""`flask --app api storage-migrate --to s3`: every media file (those rows name and the others) copied
into the bucket and verified by sha256; a second run copies nothing; a run after a partial or damaged
copy copies only what is missing or wrong; a source that no longer matches its row is reported."""
from __future__ import annotations

import hashlib

import pytest

from models import Recording
from models.files.tables import File
from tests.factories import make_city, make_request
from tests.file_samples import jpeg_bytes, pdf_bytes
from tests.imap_server import mp3_bytes
from tests.storage_support import S3_TEST_CREDENTIALS, media_bytes, media_files, put_media
from tests.telephony_support import overridden

DOCUMENT = "zayvka/bso/" + "a" * 32 + ".jpg"
RECEIPT = "gorod/rashod/" + "b" * 32 + ".pdf"
ORPHAN = "zayvka/rashod/" + "c" * 32 + ".jpg"  # on disk, named by no row: copied all the same


@pytest.fixture()
def bucket(s3_server, tmp_path):
    return s3_server.storage(tmp_path / "s3-scratch")


@pytest.fixture()
def stored(committed, media):
    request = make_request(make_city().id)
    audio = mp3_bytes(30_000, 77)
    recording = f"zayvka/zapis/{hashlib.sha256(audio).hexdigest()}.mp3"
    contents = {DOCUMENT: jpeg_bytes(), RECEIPT: pdf_bytes(), ORPHAN: jpeg_bytes(20, 20), recording: audio}
    for path, data in contents.items():
        put_media(media, path, data)
    for path, kind in ((DOCUMENT, "bso"), (RECEIPT, "expense")):
        committed.add(File(kind=kind, request_id=request.id, original_name="x." + path.rsplit(".", 1)[1],
                           size_bytes=len(contents[path]), sha256=hashlib.sha256(contents[path]).hexdigest(),
                           status="ready", storage_path=path, sniffed_type="image/jpeg"))
    committed.add(Recording(source="imap", sha256=hashlib.sha256(audio).hexdigest(), storage_path=recording,
                            size_bytes=len(audio), mime_type="audio/mpeg"))
    committed.commit()
    return contents


def migrate_to_s3(app, bucket):
    with overridden(STORAGE_BACKEND="local", S3_BUCKET=bucket.bucket, S3_ENDPOINT_URL=bucket.endpoint_url,
                    S3_ACCESS_KEY_ID=S3_TEST_CREDENTIALS["access_key_id"],
                    S3_SECRET_ACCESS_KEY=S3_TEST_CREDENTIALS["secret_access_key"]):
        return app.test_cli_runner().invoke(args=["storage-migrate", "--to", "s3"])


def test_everything_is_copied_verified_and_a_rerun_copies_nothing(app, media, bucket, stored):
    first = migrate_to_s3(app, bucket)
    assert first.exit_code == 0, first.output
    assert "4 copied, 0 already there (verified), 0 missing from the source, 0 failed" in first.output
    assert media_files(bucket) == sorted(stored)
    assert all(media_bytes(bucket, path) == data for path, data in stored.items())

    again = migrate_to_s3(app, bucket)
    assert again.exit_code == 0 and "0 copied, 4 already there (verified)" in again.output


def test_a_stopped_or_damaged_copy_is_completed_by_running_again(app, media, bucket, stored):
    assert migrate_to_s3(app, bucket).exit_code == 0
    bucket.delete_media(RECEIPT)  # as if the first run had stopped before it
    put_media(bucket, DOCUMENT, b"damaged in transit")

    resumed = migrate_to_s3(app, bucket)

    assert resumed.exit_code == 0, resumed.output
    assert "2 copied, 2 already there (verified)" in resumed.output
    assert media_bytes(bucket, RECEIPT) == stored[RECEIPT] and media_bytes(bucket, DOCUMENT) == stored[DOCUMENT]


def test_a_source_that_no_longer_matches_its_row_or_is_gone_is_reported(app, media, bucket, stored):
    put_media(media, DOCUMENT, b"not what was validated")
    media.delete_media(RECEIPT)

    result = migrate_to_s3(app, bucket)

    assert result.exit_code == 1
    assert f"source_differs {DOCUMENT}" in result.output and f"missing        {RECEIPT}" in result.output
    assert "2 copied, 0 already there (verified), 1 missing from the source, 1 failed" in result.output
    assert not bucket.media_exists(DOCUMENT) and not bucket.media_exists(RECEIPT)


def test_the_current_backend_is_refused_as_a_target(app, media):
    result = app.test_cli_runner().invoke(args=["storage-migrate", "--to", "local"])
    assert result.exit_code != 0 and "nothing to move" in result.output
