"""The recordings API with a real worker: manual run (202 + job), status, the inbox of unmatched
recordings, manual links, the recordings of a request, and retries when requests appear later."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from models import Recording, Request
from models.core.business_time import business_tz
from models.directories.tables import RequestType
from tests.factories import create_user, make_campaign
from tests.imap_server import imap_server_fixture, mailbox_settings, mango_mail, mp3_bytes, recording_name
from tests.storage_support import both_backends
from tests.support import bearer, login, wait_for

imap_server = imap_server_fixture()

LINE = "74951000002"


@pytest.fixture()
def mailbox(imap_server, committed, media):
    folder = f"Api-{uuid.uuid4().hex[:8]}"
    imap_server.append([], folder=folder)
    with mailbox_settings(imap_server, folder):
        yield folder


def local_now(minutes_ago: int = 0) -> datetime:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).astimezone(business_tz()).replace(
        microsecond=0)


class Api:
    """A test client signed in with a bearer token (unsafe methods by cookie need an allowed Origin)."""

    def __init__(self, app, user):
        self.client = app.test_client()
        self.headers = bearer(login(self.client, user).json["access_token"])

    def get(self, path, **kwargs):
        return self.client.get(path, headers=self.headers, **kwargs)

    def post(self, path, **kwargs):
        return self.client.post(path, headers=self.headers, **kwargs)


def signed_in(app, role: str, **kwargs) -> Api:
    return Api(app, create_user(role, **kwargs))


def rows(session) -> list[Recording]:
    session.expire_all()
    found = session.scalars(select(Recording).order_by(Recording.id)).all()
    session.rollback()
    return found


@both_backends
def test_manual_run_inbox_link_and_request_recordings(app, mailbox, imap_server, committed, celery_worker_thread):
    city_id = make_campaign(LINE).city_id
    audio = mp3_bytes(12_000, 700)
    imap_server.append([mango_mail([(recording_name(local_now(10), "79167770001", LINE), audio)])], folder=mailbox)
    admin = signed_in(app, "admin")

    accepted = admin.post("/api/recordings/download", json={"days_back": 3})
    assert accepted.status_code == 202, accepted.json
    job_id = accepted.json["job_id"]
    job = wait_for(lambda: (lambda j: j if j["status"] in ("succeeded", "failed") else None)(
        admin.get(f"/api/jobs/{job_id}").json), timeout=60)
    assert job["status"] == "succeeded", job
    assert (job["result"]["imported"], job["result"]["unmatched"]) == (1, 1)

    status = admin.get("/api/recordings/status").json
    assert status["last_run"]["job_id"] == job_id and status["last_run"]["trigger"] == "manual"
    assert status["last_run"]["days_back"] == 3 and status["last_run"]["counts"]["imported"] == 1
    assert status["totals"] == {"matched": 0, "unmatched": 1, "ambiguous": 0, "total": 1}
    assert status["last_error"] is None and status["running"] is False and status["configured"] is True
    assert imap_server.password not in str(status)

    inbox = admin.get("/api/recordings/?status=unmatched").json
    assert [r["from_phone"] for r in inbox] == ["79167770001"]
    assert admin.get("/api/recordings?status=matched").json == []
    recording_id = inbox[0]["id"]
    heard_first = admin.get(f"/api/recordings/{recording_id}/audio")  # listened to before it is linked
    assert heard_first.status_code == 200 and heard_first.data == audio
    assert heard_first.headers["Content-Type"].startswith("audio/mpeg")
    assert signed_in(app, "director", city_id=city_id).get(f"/api/recordings/{recording_id}/audio").status_code == 403

    # Linked by hand to a request of another phone (the caller used a second number).
    request_type = committed.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    master = create_user("master", city_id=city_id)
    request = Request(city_id=city_id, request_type_id=request_type, client_phone="79160000000", master_id=master.id)
    committed.add(request)
    committed.commit()
    linked = admin.post(f"/api/recordings/{recording_id}/link", json={"request_id": request.id})
    assert linked.status_code == 200, linked.json
    assert (linked.json["match_status"], linked.json["request_id"]) == ("matched", request.id)

    own = admin.get(f"/api/requests/{request.id}/recordings").json
    assert [r["id"] for r in own] == [recording_id]
    detail = admin.get(f"/api/requests/{request.id}/").json
    assert detail["recording_file_path"] == own[0]["file_path"]
    history = admin.get(f"/api/requests/{request.id}/history/").json
    assert any(event.get("field") == "recording_file_path" for event in history)

    # The master of the request hears it; another master does not even see the request's recordings.
    master_client = Api(app, master)
    assert [r["id"] for r in master_client.get(f"/api/requests/{request.id}/recordings").json] == [recording_id]
    heard = master_client.get(f"/api/secure-files/view/{own[0]['file_path']}")
    assert heard.status_code == 200 and heard.data == audio
    stranger = signed_in(app, "master", city_id=city_id)
    assert stranger.get(f"/api/requests/{request.id}/recordings").status_code == 404
    assert stranger.get(f"/api/secure-files/view/{own[0]['file_path']}").status_code == 404
    assert stranger.get("/api/recordings/?status=unmatched").status_code == 403


def test_a_recording_whose_request_comes_later_is_linked_by_the_retry(
        app, mailbox, imap_server, committed, celery_worker_thread):
    from tasks.recordings import run_import

    city_id = make_campaign(LINE).city_id
    imap_server.append([mango_mail([(recording_name(local_now(5), "79168880001", LINE), mp3_bytes(9000, 800))])],
                       folder=mailbox)
    assert run_import()["unmatched"] == 1

    operator = signed_in(app, "callcentr")
    body = {"client_phone": "+7 (916) 888-00-01", "client_name": "Иван", "city_id": city_id}
    created = operator.post("/api/requests/", json=body)
    assert created.status_code == 201, created.json

    [recording] = wait_for(lambda: [r for r in rows(committed) if r.match_status == "matched"], timeout=60)
    assert recording.request_id == created.json["id"]
    admin = signed_in(app, "admin")
    assert admin.get(f"/api/requests/{created.json['id']}/").json["recording_file_path"] == recording.storage_path


def test_download_refusals(app, mailbox, committed):
    from models.recordings.mailbox import import_lock
    from tests.telephony_support import overridden

    admin = signed_in(app, "admin")
    for bad in ({"days_back": 0}, {"days_back": 1000}, {"days_back": "много"}, {"days_back": 1, "extra": 1}):
        answer = admin.post("/api/recordings/download", json=bad)
        assert answer.status_code == 422, (bad, answer.json)
        assert answer.json["detail"].startswith("Ошибка в данных запроса")
    for role in ("director", "callcentr", "avitolog", "master"):
        assert signed_in(app, role).post("/api/recordings/download", json={}).status_code == 403, role

    held = import_lock()
    assert held.acquire()
    try:
        busy = admin.post("/api/recordings/download", json={"days_back": 1})
        assert (busy.status_code, busy.json["code"]) == (409, "import_running")
        assert "уже выполняется" in busy.json["detail"]
        assert admin.get("/api/recordings/status").json["running"] is True
    finally:
        held.release()
    with overridden(IMAP_HOST=None):
        off = admin.post("/api/recordings/download", json={"days_back": 1})
        assert (off.status_code, off.json["code"]) == (409, "imap_not_configured")
        assert admin.get("/api/recordings/status").json["configured"] is False


def test_link_refusals(app, db):
    admin = signed_in(app, "admin")
    recording = Recording(source="imap", sha256="a" * 64, storage_path="zayvka/zapis/x.mp3", size_bytes=10,
                          from_phone="79160000001", to_phone=LINE)
    db.add(recording)
    db.commit()
    assert admin.post(f"/api/recordings/{recording.id}/link", json={"request_id": 2_000_000}).status_code == 404
    assert admin.post("/api/recordings/999999/link", json={"request_id": 1}).status_code == 404
    missing = admin.post(f"/api/recordings/{recording.id}/link", json={})
    assert missing.status_code == 422 and "Заявка" in missing.json["detail"]
    assert admin.get("/api/recordings/?status=lost").status_code == 422


def test_a_recording_whose_call_comes_later_is_linked_to_the_call_and_its_request(
        app, mailbox, imap_server, committed, celery_worker_thread):
    """The mail is read before Mango's webhooks are folded: the folded call (and the request it
    creates) asks for the retry, which links the recording to both."""
    from tasks.recordings import run_import
    from tests.telephony_support import form, incoming_answered, path_of, signing

    line, client_phone = "74951239999", "79169990001"
    make_campaign(line)
    started = local_now(3)
    imap_server.append([mango_mail([(recording_name(started, client_phone, line), mp3_bytes(9000, 900))])],
                       folder=mailbox)
    assert run_import()["unmatched"] == 1

    webhook = app.test_client()
    with signing():
        for event_type, payload in incoming_answered("late-call", client=client_phone, line=line,
                                                     t0=int(started.timestamp())):
            assert webhook.post(path_of(event_type), data=form(payload)).status_code == 200
        [recording] = wait_for(lambda: [r for r in rows(committed) if r.match_status == "matched"], timeout=60)
    call_request = committed.scalar(select(Request.id).where(Request.client_phone == client_phone))
    assert recording.request_id == call_request and recording.call_id is not None
