"""Recordings announced by events/record/added, downloaded through a local server speaking the Mango API."""
from __future__ import annotations

import hashlib
import json
import time

import pytest
from sqlalchemy import select

from models import Call, MangoEvent, Recording, Request
from tests.factories import make_campaign
from tests.mango_api import running
from tests.storage_support import both_backends, media_bytes, media_files, quarantined
from tests.support import wait_for
from tests.telephony_support import (
    KEY,
    LINE,
    SALT,
    form,
    incoming_answered,
    overridden,
    path_of,
    record_added,
)

pytestmark = pytest.mark.worker

AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40  # an MP3-looking body
OTHER_AUDIO = b"RIFF\x24\x10\x00\x00WAVEfmt " + bytes(range(255, -1, -1)) * 16  # a WAV-looking one


@pytest.fixture()
def mango_api():
    with running({"MToxMDIzNDU2Nzo0NDE4MjAzOTU3OjA=": AUDIO, "second-recording": OTHER_AUDIO}) as server:
        yield server


@pytest.fixture()
def configured(mango_api, media):
    with overridden(MANGO_API_KEY=KEY, MANGO_API_SALT=SALT, MANGO_API_URL=mango_api.base_url):
        yield media


def deliver(client, deliveries) -> None:
    for event_type, payload in deliveries:
        assert client.post(path_of(event_type), data=form(payload)).status_code == 200


def stored_recordings(session) -> list[Recording]:
    session.expire_all()
    rows = session.scalars(select(Recording).order_by(Recording.id)).all()
    session.rollback()
    return rows


@both_backends
def test_recording_is_downloaded_and_linked_to_call_and_request(app, committed, celery_worker_thread, configured,
                                                                mango_api):
    make_campaign(LINE)
    client = app.test_client()
    entry = "rec-after-summary"
    deliver(client, incoming_answered(entry, t0=int(time.time()) - 300))
    deliver(client, [record_added(entry, "MToxMDIzNDU2Nzo0NDE4MjAzOTU3OjA=")])
    [recording] = wait_for(lambda: stored_recordings(committed), timeout=60)

    call = committed.scalars(select(Call).where(Call.entry_id == entry)).one()
    request = committed.scalars(select(Request)).one()
    assert (recording.source, recording.mango_recording_id) == ("mango", "MToxMDIzNDU2Nzo0NDE4MjAzOTU3OjA=")
    assert (recording.call_id, recording.request_id, recording.match_status) == (call.id, request.id, "matched")
    assert (recording.size_bytes, recording.sha256) == (len(AUDIO), hashlib.sha256(AUDIO).hexdigest())
    assert recording.mime_type == "audio/mpeg"
    assert (recording.from_phone, recording.to_phone) == (call.client_phone, call.line_number)
    assert recording.storage_path.startswith("zayvka/zapis/") and recording.storage_path.endswith(".mp3")
    assert media_bytes(configured, recording.storage_path) == AUDIO
    assert media_files(configured) == [recording.storage_path]  # no partial file left
    assert quarantined(configured) == []  # nor anything in quarantine
    assert mango_api.log == [("POST", "/vpbx/queries/recording/post", 302), ("GET", "/files/<token>", 200)]
    statuses = set(committed.scalars(select(MangoEvent.status)).all())
    assert statuses == {"processed"}

    # The same announcement again (a repeated or replayed delivery) downloads nothing.
    from tasks.recordings import download_mango

    event_id = committed.scalar(select(MangoEvent.id).where(MangoEvent.event_type == "record/added"))
    assert download_mango.run(event_id) == "already stored"
    assert len(mango_api.log) == 2


def test_recording_announced_before_the_call_joins_its_request_later(app, committed, celery_worker_thread,
                                                                     configured, mango_api):
    make_campaign(LINE)
    client = app.test_client()
    entry = "rec-before-call"
    deliver(client, [record_added(entry, "second-recording")])
    [recording] = wait_for(lambda: stored_recordings(committed), timeout=60)
    assert recording.call_id is not None and recording.request_id is None
    assert recording.match_status == "unmatched"

    deliver(client, incoming_answered(entry, t0=int(time.time()) - 300))
    wait_for(lambda: stored_recordings(committed)[0].request_id is not None, timeout=60)
    request = committed.scalars(select(Request)).one()
    [recording] = stored_recordings(committed)
    assert (recording.request_id, recording.match_status) == (request.id, "matched")
    assert media_bytes(configured, recording.storage_path) == OTHER_AUDIO
    assert recording.storage_path.endswith(".wav") and recording.mime_type == "audio/wav"


def test_without_api_key_nothing_is_downloaded(app, committed, celery_worker_thread, mango_api, tmp_path):
    with overridden(MANGO_API_KEY=None, MANGO_API_SALT=None, MANGO_API_URL=mango_api.base_url):
        _, payload = record_added("rec-unconfigured", "MToxMDIzNDU2Nzo0NDE4MjAzOTU3OjA=")
        response = app.test_client().post(path_of("record/added"), data={"json": json.dumps(payload)})
        assert response.status_code == 200

        def processed():
            committed.expire_all()
            status = committed.scalar(select(MangoEvent.status))
            committed.rollback()
            return status == "processed"

        wait_for(processed, timeout=30)
    assert stored_recordings(committed) == [] and mango_api.log == []


def test_mango_api_answers_are_classified(configured, mango_api):
    from tasks.recordings import MangoApiError, _open_recording

    with pytest.raises(MangoApiError) as missing:
        _open_recording("not-there-yet")
    assert missing.value.retry is True  # lags after record/added: try again later
    with overridden(MANGO_API_SALT="wrong-salt"):
        with pytest.raises(MangoApiError) as refused:
            _open_recording("second-recording")
    assert refused.value.retry is True and "401" in str(refused.value)  # Mango's 2-minute lock
    response = _open_recording("second-recording")
    assert response.status_code == 200 and response.content == OTHER_AUDIO
    assert [entry[2] for entry in mango_api.log] == [404, 401, 302, 200]


def test_recording_refused_for_good_marks_its_event_failed(committed, configured, mango_api):
    """A permanent refusal is not retried: the announcement shows among the failed events, for replay."""
    from models.telephony import rules
    from tasks.recordings import download_mango

    _, payload = record_added("rec-refused", "deleted-in-the-cabinet")
    committed.execute(MangoEvent.__table__.insert().values(
        dedupe_key=rules.dedupe_key("record/added", payload, ""), event_type="record/added", entry_id="rec-refused",
        payload=payload, status="processed"))
    committed.commit()
    event_id = committed.scalar(select(MangoEvent.id))
    assert download_mango.run(event_id) == "failed"
    committed.expire_all()
    event = committed.get(MangoEvent, event_id)
    assert event.status == "failed" and "HTTP 403" in event.last_error
    assert stored_recordings(committed) == []


@both_backends
def test_an_answer_that_is_not_audio_is_not_stored(committed, configured, mango_api):
    """A 200 with an error page instead of the file: nothing is kept, the download is tried again later."""
    from tasks.recordings import MangoApiError, _open_recording, _store

    mango_api.recordings["an-error-page"] = b"<html>Service unavailable</html>"
    with pytest.raises(MangoApiError) as refused:
        _store(_open_recording("an-error-page"))
    assert refused.value.retry is True
    assert media_files(configured) == [] and quarantined(configured) == []
