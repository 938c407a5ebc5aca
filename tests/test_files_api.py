"""Uploads through the API: 202 at once, streamed under a hard cap, validated (here by calling the
task's body inside the test transaction), promoted, linked; attacks refused with their reason; who
may upload what; the housekeeping tasks. Worker processes are exercised in test_files_worker.py."""
from __future__ import annotations

import io
import os
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from models.files.tables import File
from models.ops.tables import Job
from models.requests.tables import RequestEvent
from storage.rejections import REASONS
from tasks import files as file_tasks
from tests.factories import create_user, make_city, make_request, make_transaction
from tests.file_samples import attack_corpus, jpeg_bytes, mp3_bytes, pdf_bytes, png_bytes, valid_samples
from tests.storage_support import both_backends, media_bytes, media_files, quarantined
from tests.support import BOUNDARY, SPA, bearer, login, multipart

# Refused by the API itself, before a file row exists (422): the name, the extension, an empty body.
API_LEVEL_CODES = {"name_missing", "name_too_long", "name_path", "name_control", "name_unicode", "name_chars",
                   "name_trailing", "name_double_extension", "name_no_extension", "extension", "empty"}
UPLOAD_PATHS = {"bso": "upload-bso", "expense": "upload-expense", "recording": "upload-recording"}


# ---- fixtures and helpers ---------------------------------------------------------------------------------

@pytest.fixture()
def queued(monkeypatch):
    """Validations the API queued, recorded instead of sent (the test runs them itself)."""
    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(file_tasks.validate, "apply_async", lambda args, **_options: calls.append(tuple(args)))
    return calls


def upload(client, path: str, filename, data: bytes, *, headers=None, fields=()):
    body, content_type = multipart(filename, data, fields=fields)
    return client.post(path, data=body, content_type=content_type, headers={**SPA, **(headers or {})})


def validate_now(db, body: dict) -> File:
    file_tasks.run_validation(body["file_id"], body["job_id"])
    return db.get(File, body["file_id"], populate_existing=True)


@pytest.fixture()
def world(db, media, queued):
    city = make_city()
    master = create_user("master", city_id=city.id)
    return {"city": city, "master": master, "request": make_request(city.id, master_id=master.id),
            "transaction": make_transaction(city.id), "db": db}


# ---- the happy path -------------------------------------------------------------------------------------

@both_backends
def test_upload_is_accepted_at_once_then_validated_promoted_and_linked(client, world, media, queued, db):
    request_id = world["request"].id
    login(client, world["master"])
    data = jpeg_bytes()

    accepted = upload(client, f"/api/requests/{request_id}/upload-bso/", "фото БСО.jpg", data)

    assert accepted.status_code == 202, accepted.json
    body = accepted.json
    assert body["status"] == "pending" and body["file_path"] is None
    assert queued == [(body["file_id"], body["job_id"])]
    pending = db.get(File, body["file_id"])
    assert pending.status == "pending" and pending.kind == "bso" and pending.request_id == request_id
    with media.local_quarantine_file(pending.quarantine_path) as quarantined_copy:
        assert quarantined_copy.read_bytes() == data
    assert client.get(f"/api/files/{body['file_id']}").json["status"] == "pending"

    ready = validate_now(db, body)

    assert ready.status == "ready"
    assert ready.storage_path == f"zayvka/bso/{pending.quarantine_path}.jpg"
    assert media_bytes(media, ready.storage_path) == data
    assert quarantined(media) == []
    assert ready.sniffed_type == "image/jpeg" and len(ready.sha256) == 64 and ready.size_bytes == len(data)
    state = client.get(f"/api/files/{body['file_id']}").json
    assert state["status"] == "ready" and state["file_path"] == ready.storage_path and state["reject_reason"] is None
    detail = client.get(f"/api/requests/{request_id}/").json
    assert detail["bso_file_path"] == ready.storage_path
    assert [f["id"] for f in detail["files"]] == [body["file_id"]]
    job = client.get(f"/api/jobs/{body['job_id']}").json
    assert job["status"] == "succeeded" and job["result"]["status"] == "ready" and job["attempts"] == 1
    history = client.get(f"/api/requests/{request_id}/history/").json
    assert any(e["field"] == "bso_file_path" and e["new_value"] == ready.storage_path for e in history)
    # the SPA's URL: the stored path as <rel>, cookie only
    view = client.get(f"/api/secure-files/view/{ready.storage_path}")
    assert view.status_code == 200 and view.data == data and view.headers["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("name, data, kind", valid_samples(), ids=[s[0] for s in valid_samples()])
def test_every_allowed_type_is_accepted_promoted_and_linked(client, world, db, name, data, kind):
    login(client, create_user("admin"))
    if kind == "transaction":
        path = f"/api/transactions/{world['transaction'].id}/upload-file/"
    else:
        path = f"/api/requests/{world['request'].id}/{UPLOAD_PATHS[kind]}/"
    accepted = upload(client, path, name, data)
    assert accepted.status_code == 202, accepted.json

    row = validate_now(db, accepted.json)

    assert row.status == "ready", row.reject_reason
    directory = {"bso": "zayvka/bso", "expense": "zayvka/rashod", "recording": "zayvka/zapis",
                 "transaction": "gorod/rashod"}[kind]
    assert row.storage_path.startswith(directory + "/")
    if kind == "transaction":
        assert client.get(f"/api/transactions/{world['transaction'].id}").json["file_path"] == row.storage_path
        listed = {t["id"]: t for t in client.get("/api/transactions/").json}
        assert listed[world["transaction"].id]["file_path"] == row.storage_path
        paged = {t["id"]: t for t in client.get("/api/transactions/?page=1&page_size=1000").json}
        assert paged[world["transaction"].id] == listed[world["transaction"].id]
    else:
        detail = client.get(f"/api/requests/{world['request'].id}/").json
        assert detail[f"{kind}_file_path"] == row.storage_path
    downloaded = client.get(f"/api/secure-files/download/{row.storage_path}")
    assert downloaded.status_code == 200 and downloaded.data == data


def test_generic_upload_endpoint_takes_owner_and_kind(client, world, db):
    login(client, create_user("manager"))
    request_id = world["request"].id
    by_query = upload(client, f"/api/files?owner_type=request&owner_id={request_id}&kind=expense", "чек.png",
                      png_bytes())
    assert by_query.status_code == 202, by_query.json
    by_fields = upload(client, "/api/files/", "акт.pdf", pdf_bytes(),
                       fields=(("owner_type", "transaction"), ("owner_id", str(world["transaction"].id))))
    assert by_fields.status_code == 202, by_fields.json
    assert validate_now(db, by_query.json).kind == "expense"
    tx_file = validate_now(db, by_fields.json)
    assert tx_file.kind == "transaction" and tx_file.transaction_id == world["transaction"].id

    wrong_kind = upload(client, f"/api/files?owner_type=transaction&owner_id={world['transaction'].id}&kind=bso",
                        "a.pdf", pdf_bytes())
    assert wrong_kind.status_code == 422 and wrong_kind.json["code"] == "validation_error"
    no_owner = upload(client, "/api/files", "a.pdf", pdf_bytes())
    assert no_owner.status_code == 422 and no_owner.json["detail"]
    unknown = upload(client, "/api/files?owner_type=request&owner_id=999999&kind=bso", "a.pdf", pdf_bytes())
    assert unknown.status_code == 404


# ---- attacks through the API -------------------------------------------------------------------------------

CORPUS = attack_corpus()


@pytest.mark.parametrize("case, name, data, kind, code", CORPUS, ids=[c[0] for c in CORPUS])
def test_attack_corpus_through_the_api(client, world, db, media, case, name, data, kind, code):
    login(client, create_user("admin"))
    if kind == "transaction":
        path = f"/api/transactions/{world['transaction'].id}/upload-file"
    else:
        path = f"/api/requests/{world['request'].id}/{UPLOAD_PATHS[kind]}"

    response = upload(client, path, name, data)

    if code in API_LEVEL_CODES:
        assert response.status_code == 422, (case, response.json)
        assert response.json["code"] == code and response.json["detail"].startswith(REASONS[code])
        assert db.scalar(select(File.id)) is None
    else:
        assert response.status_code == 202, (case, response.json)
        row = validate_now(db, response.json)
        assert row.status == "rejected", case
        assert row.reject_reason.startswith(REASONS[code]), (case, row.reject_reason)
        state = client.get(f"/api/files/{row.id}").json
        assert state["status"] == "rejected" and state["reject_reason"] == row.reject_reason
        assert state["file_path"] is None
        job = db.get(Job, uuid.UUID(response.json["job_id"]))
        assert job.status == "succeeded" and job.result["code"] == code
        detail = client.get(f"/api/requests/{world['request'].id}/").json
        assert all(detail[f] is None for f in ("bso_file_path", "expense_file_path", "recording_file_path"))
    assert quarantined(media) == [] and media_files(media) == []


def test_names_the_browser_encodes_are_checked_too(client, world):
    login(client, create_user("admin"))
    path = f"/api/requests/{world['request'].id}/upload-bso"
    body, content_type = multipart("x.jpg", jpeg_bytes())
    encoded = body.replace(b'filename="x.jpg"', b"filename*=UTF-8''photo%00.jpg")
    response = client.post(path, data=encoded, content_type=content_type, headers=SPA)
    assert response.status_code == 422 and response.json["code"] == "name_control"
    undecodable = upload(client, path, b"\xff\xfe.jpg", jpeg_bytes())
    assert undecodable.status_code == 400 and undecodable.json["detail"]


@pytest.mark.parametrize("path, fields", [
    ("/api/requests/{request}/upload-bso", (("description", "скан\x1b[31m"),)),
    ("/api/requests/{request}/upload-expense", (("comment", "чек\x00"),)),
    ("/api/files", (("owner_type", "request"), ("owner_id", "{request}"), ("kind", "bso"), ("note", "a\x85b"))),
])
def test_a_control_character_in_a_form_field_of_an_upload_is_422_and_nothing_kept(client, world, media, queued,
                                                                                  db, path, fields):
    login(client, create_user("admin"))
    request_id = world["request"].id
    fields = tuple((name, value.format(request=request_id)) for name, value in fields)
    response = upload(client, path.format(request=request_id), "scan.jpg", jpeg_bytes(), fields=fields)
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error" and "недопустимый символ" in response.json["detail"]
    assert list(response.json["errors"]) == [fields[-1][0]]
    assert db.scalars(select(File)).all() == [] and queued == []
    assert quarantined(media) == []


@pytest.mark.parametrize("body, content_type, status", [
    (b"", "multipart/form-data; boundary=abc", 400),
    (b"--abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\nxx", "multipart/form-data; "
     "boundary=abc", 400),  # cut off before the closing boundary
    (b'{"file": "x"}', "application/json", 415),
    (b"--abc--\r\n", "multipart/form-data; boundary=abc", 400),  # no file part
    (b"x" * 100, "multipart/form-data", 400),  # no boundary
    (b"--abc\r\n" + b"X-Long: " + b"a" * 40_000 + b"\r\n\r\n", "multipart/form-data; boundary=abc", 400),
])
def test_malformed_bodies_are_a_clean_4xx(client, world, media, body, content_type, status):
    login(client, create_user("admin"))
    response = client.post(f"/api/requests/{world['request'].id}/upload-bso", data=body, content_type=content_type,
                           headers=SPA)
    assert response.status_code == status, response.json
    assert response.json["detail"] and response.json["code"]
    assert quarantined(media) == []


# ---- the hard cap, while streaming ----------------------------------------------------------------------------

class StreamedBody(io.RawIOBase):
    """A multipart body of `total` bytes produced on demand: it never exists in memory."""

    def __init__(self, total: int, filename: str = "big.jpg"):
        head, _ = multipart(filename, b"")
        self.prefix = head[: head.index(b"\r\n\r\n", head.index(b"filename")) + 4] + b"\xff\xd8\xff"
        self.total = total
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.total - self.position
        if remaining <= 0:
            return 0
        n = min(len(buffer), remaining)
        if self.position < len(self.prefix):
            chunk = self.prefix[self.position:self.position + n]
            n = len(chunk)
            buffer[:n] = chunk
        else:
            buffer[:n] = bytes(n)
        self.position += n
        return n


def _streamed_post(client, path: str, stream: StreamedBody, *, content_length: int | None):
    """POST `stream` as the WSGI input, with the Content-Length given (or none: chunked, as gunicorn
    presents it with wsgi.input_terminated)."""
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request as WsgiRequest

    environ = EnvironBuilder(path=path, method="POST", headers=SPA).get_environ()
    environ["CONTENT_TYPE"] = f"multipart/form-data; boundary={BOUNDARY}"
    environ["wsgi.input"] = stream
    environ.pop("CONTENT_LENGTH", None)
    environ.pop("HTTP_CONTENT_LENGTH", None)
    if content_length is None:
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(content_length)
    return client.open(WsgiRequest(environ))


@both_backends
def test_oversized_body_is_refused_while_streaming_with_bounded_memory(client, world, media):
    """200 MB sent with no Content-Length (chunked): the API stops at the 10 MB cap with a 413, having
    read little more than the cap, and its memory does not grow with the body."""
    login(client, create_user("admin"))
    stream = StreamedBody(200 * 1024 * 1024)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        response = _streamed_post(client, f"/api/requests/{world['request'].id}/upload-bso", stream,
                                  content_length=None)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    assert response.status_code == 413, (response.json, stream.position)
    assert response.json["code"] == "file_too_large" and "10 МБ" in response.json["detail"]
    cap = 10 * 1024 * 1024
    assert cap < stream.position <= cap + 256 * 1024  # stopped right after the cap, not at 200 MB
    assert peak < 4 * 1024 * 1024, f"peak Python memory grew by {peak / 1e6:.1f} MB"
    assert quarantined(media) == []  # the partial upload is gone


def test_declared_oversize_is_refused_before_reading(client, world, media):
    login(client, create_user("admin"))
    stream = StreamedBody(200 * 1024 * 1024)
    response = _streamed_post(client, f"/api/requests/{world['request'].id}/upload-bso", stream,
                              content_length=200 * 1024 * 1024)
    assert response.status_code == 413 and stream.position == 0


def test_lying_content_length_cannot_smuggle_more_bytes(client, world, media):
    """A Content-Length smaller than the body: only the declared bytes are read (a truncated body: 400)."""
    login(client, create_user("admin"))
    stream = StreamedBody(50 * 1024 * 1024)
    response = _streamed_post(client, f"/api/requests/{world['request'].id}/upload-bso", stream,
                              content_length=4096)
    assert response.status_code == 400 and stream.position <= 64 * 1024
    assert quarantined(media) == []


def test_recordings_have_their_own_cap(client, world, media):
    login(client, create_user("admin"))
    under = _streamed_post(client, f"/api/requests/{world['request'].id}/upload-recording",
                           StreamedBody(12 * 1024 * 1024, "call.mp3"), content_length=None)
    assert under.status_code == 400  # over the 10 MB of documents, under the 50 MB of recordings: read to the end
    over = _streamed_post(client, f"/api/requests/{world['request'].id}/upload-recording",
                          StreamedBody(55 * 1024 * 1024, "call.mp3"), content_length=None)
    assert over.status_code == 413 and "50 МБ" in over.json["detail"]


# ---- replacing keeps the history -------------------------------------------------------------------------------

@both_backends
def test_replacing_a_file_keeps_the_old_one_in_history(client, world, db, media):
    login(client, world["master"])
    request_id = world["request"].id
    first = upload(client, f"/api/requests/{request_id}/upload-expense", "чек 1.jpg", jpeg_bytes()).json
    second = upload(client, f"/api/requests/{request_id}/upload-expense", "чек 2.png", png_bytes()).json
    old, new = validate_now(db, first), validate_now(db, second)

    db.refresh(old)
    assert old.status == new.status == "ready"
    assert old.replaced_by_id == new.id and new.replaced_by_id is None
    detail = client.get(f"/api/requests/{request_id}").json
    assert detail["expense_file_path"] == new.storage_path
    history_view = client.get(f"/api/secure-files/view/{old.storage_path}")
    assert history_view.status_code == 200 and history_view.data == jpeg_bytes()  # history stays readable
    assert client.get(f"/api/secure-files/view/{new.storage_path}").data == png_bytes()
    events = db.scalars(select(RequestEvent).where(RequestEvent.request_id == request_id,
                                                   RequestEvent.field == "expense_file_path")
                        .order_by(RequestEvent.id)).all()
    assert [(e.old_value, e.new_value) for e in events] == [
        (None, old.storage_path), (old.storage_path, new.storage_path),
    ]


def test_the_newest_upload_wins_whatever_order_the_workers_finish(client, world, db):
    login(client, create_user("callcentr"))
    request_id = world["request"].id
    first = upload(client, f"/api/requests/{request_id}/upload-bso", "a.jpg", jpeg_bytes()).json
    second = upload(client, f"/api/requests/{request_id}/upload-bso", "b.jpg", jpeg_bytes(30, 30)).json
    new = validate_now(db, second)
    old = validate_now(db, first)
    assert old.replaced_by_id == new.id and new.replaced_by_id is None
    assert client.get(f"/api/requests/{request_id}").json["bso_file_path"] == new.storage_path


# ---- idempotency ---------------------------------------------------------------------------------------------

@both_backends
def test_a_redelivered_validation_changes_nothing(client, world, db, media):
    login(client, create_user("admin"))
    body = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "a.jpg", jpeg_bytes()).json
    first = validate_now(db, body)
    snapshot = (first.status, first.storage_path, first.sha256, first.validated_at)
    assert file_tasks.run_validation(body["file_id"], body["job_id"]) == "ready"
    again = db.get(File, body["file_id"], populate_existing=True)
    assert (again.status, again.storage_path, again.sha256, again.validated_at) == snapshot
    assert media_files(media) == [first.storage_path]
    assert db.scalar(select(Job.status).where(Job.id == uuid.UUID(body["job_id"]))) == "succeeded"


def test_a_message_for_another_job_is_ignored(client, world, db, media):
    login(client, create_user("admin"))
    body = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "a.jpg", jpeg_bytes()).json
    assert file_tasks.run_validation(body["file_id"], str(uuid.uuid4())) == "ignored"
    assert db.get(File, body["file_id"]).status == "pending"


@both_backends
def test_lost_quarantine_bytes_reject_the_file(client, world, db, media):
    login(client, create_user("admin"))
    body = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "a.jpg", jpeg_bytes()).json
    for token in quarantined(media):
        media.delete_quarantined(token)
    row = validate_now(db, body)
    assert row.status == "rejected" and row.reject_reason == REASONS["missing"]


# ---- who may upload -------------------------------------------------------------------------------------------

@pytest.fixture()
def two_cities(db, media, queued):
    a, b = make_city("Город А"), make_city("Город Б")
    users = {role: create_user(role, city_id=a.id if role in ("director", "master") else None)
             for role in ("admin", "manager", "director", "callcentr", "avitolog", "master")}
    other_master = create_user("master", city_id=a.id)
    return {
        "users": users,
        "own": make_request(a.id, master_id=users["master"].id),
        "other_master": make_request(a.id, master_id=other_master.id),
        "other_city": make_request(b.id),
        "final": make_request(a.id, master_id=users["master"].id, status="Готово"),
        "tx_a": make_transaction(a.id),
        "tx_b": make_transaction(b.id),
    }


ALL = {"admin", "manager", "director", "callcentr", "avitolog", "master"}
UPLOAD_MATRIX = [
    ("own request", "own", ALL - {"avitolog"}),
    ("same city, other master", "other_master", ALL - {"avitolog", "master"}),
    ("other city", "other_city", {"admin", "manager", "callcentr"}),
    ("final status", "final", ALL - {"avitolog", "director"}),
    ("transaction own city", "tx_a", {"admin", "manager", "director"}),
    ("transaction other city", "tx_b", {"admin", "manager"}),
]


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("name, owner, allowed", UPLOAD_MATRIX, ids=[m[0] for m in UPLOAD_MATRIX])
def test_upload_rights_follow_the_owner_rights(app, client, two_cities, role, name, owner, allowed):
    with app.app_context():
        from api.security import issue_token

        token = issue_token(two_cities["users"][role])
    target = two_cities[owner]
    path = (f"/api/transactions/{target.id}/upload-file" if owner.startswith("tx")
            else f"/api/requests/{target.id}/upload-bso")
    response = upload(client, path, "a.jpg", jpeg_bytes(), headers=bearer(token))
    if role in allowed:
        assert response.status_code == 202, (role, name, response.json)
    else:
        assert response.status_code in (403, 404), (role, name, response.status_code)
        assert response.json["detail"]


def test_anonymous_and_foreign_origin_uploads_are_refused(client, world, media):
    path = f"/api/requests/{world['request'].id}/upload-bso"
    assert upload(client, path, "a.jpg", jpeg_bytes()).status_code == 401
    login(client, create_user("admin"))
    body, content_type = multipart("a.jpg", jpeg_bytes())
    foreign = client.post(path, data=body, content_type=content_type, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and foreign.json["code"] == "origin_forbidden"
    assert quarantined(media) == []


def test_file_state_is_visible_only_to_those_who_see_the_owner(client, two_cities, db):
    users = two_cities["users"]
    login(client, users["admin"])
    body = upload(client, f"/api/requests/{two_cities['other_city'].id}/upload-bso", "a.jpg", jpeg_bytes()).json
    for role, status in (("admin", 200), ("manager", 200), ("callcentr", 200), ("avitolog", 200),
                         ("director", 404), ("master", 404)):
        client.post("/api/auth/logout", headers=SPA)
        login(client, users[role])
        assert client.get(f"/api/files/{body['file_id']}").status_code == status, role


# ---- housekeeping ---------------------------------------------------------------------------------------------

def _age(path, hours: float) -> None:
    past = time.time() - hours * 3600
    os.utime(path, (past, past))


def test_cleanup_removes_leftovers_expired_uploads_and_files_of_deleted_owners(client, world, db, media):
    login(client, create_user("admin"))
    request_id = world["request"].id
    kept = upload(client, f"/api/requests/{request_id}/upload-bso", "kept.jpg", jpeg_bytes()).json
    validate_now(db, kept)
    stale = upload(client, f"/api/requests/{request_id}/upload-expense", "stale.jpg", jpeg_bytes()).json
    db.execute(File.__table__.update().where(File.id == stale["file_id"])
               .values(created_at=datetime.now(timezone.utc) - timedelta(hours=25)))
    db.commit()
    fresh = upload(client, f"/api/requests/{request_id}/upload-recording", "call.mp3", mp3_bytes()).json
    leftover_old, leftover_young = media.quarantine_root / ("a" * 32), media.quarantine_root / ("b" * 32 + ".part")
    leftover_old.write_bytes(b"x")
    leftover_young.write_bytes(b"y")
    _age(leftover_old, 30)
    media.media_root.joinpath("zayvka/bso").mkdir(parents=True, exist_ok=True)
    temporary = media.media_root / "zayvka/bso/.abc.jpg.1.tmp"
    temporary.write_bytes(b"t")
    _age(temporary, 2)

    counts = file_tasks.run_cleanup()

    assert counts["expired"] == 1 and counts["quarantine_removed"] == 1 and counts["temporaries_removed"] == 1
    assert db.get(File, stale["file_id"], populate_existing=True).reject_reason == REASONS["expired"]
    assert db.get(File, fresh["file_id"], populate_existing=True).status == "pending"
    assert not leftover_old.exists() and leftover_young.exists() and not temporary.exists()
    kept_row = db.get(File, kept["file_id"], populate_existing=True)
    assert kept_row.owner_deleted_at is None and media.media_exists(kept_row.storage_path)

    # the request goes: its files stay for the retention period, then go with their bytes
    client.delete(f"/api/requests/{request_id}", headers=SPA)
    file_tasks.run_cleanup()
    kept_row = db.get(File, kept["file_id"], populate_existing=True)
    assert kept_row.request_id is None and kept_row.owner_deleted_at is not None
    assert media.media_exists(kept_row.storage_path)
    path = kept_row.storage_path
    counts = file_tasks.run_cleanup(datetime.now(timezone.utc) + timedelta(days=31))
    assert counts["purged"] >= 1
    assert db.get(File, kept["file_id"], populate_existing=True) is None
    assert not media.media_exists(path)


@pytest.mark.parametrize("media", ["s3"], indirect=True)
def test_cleanup_on_s3_removes_leftovers_unfinished_uploads_and_files_of_deleted_owners(client, world, db, media):
    """The bucket's leftovers: a quarantined object and a multipart upload nobody finished (a cut-off
    upload), a multipart upload left open in media/ and a scratch copy a killed worker left on its host."""
    login(client, create_user("admin"))
    request_id = world["request"].id
    kept = upload(client, f"/api/requests/{request_id}/upload-bso", "kept.jpg", jpeg_bytes()).json
    kept_row = validate_now(db, kept)
    leftover = media.quarantine_writer(100)
    leftover.write(b"x")
    leftover.commit()
    cut_off = media.client.create_multipart_upload(Bucket=media.bucket, Key="quarantine/" + "c" * 32)
    media.client.create_multipart_upload(Bucket=media.bucket, Key="media/zayvka/bso/" + "d" * 32 + ".jpg")
    media.scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = media.scratch_root / (".%s.x1.validating" % ("e" * 32))
    scratch.write_bytes(b"s")
    _age(scratch, 2)
    assert sorted(quarantined(media)) == sorted([leftover.token, "c" * 32])

    # A day later (moto dates every multipart upload in the past: only finished objects tell the age).
    counts = file_tasks.run_cleanup(datetime.now(timezone.utc) + timedelta(hours=25))

    assert counts["quarantine_removed"] == 2 and counts["temporaries_removed"] == 2
    assert quarantined(media) == [] and not scratch.exists()
    assert media.client.list_multipart_uploads(Bucket=media.bucket).get("Uploads", []) == []
    assert cut_off["UploadId"]
    assert media_files(media) == [kept_row.storage_path]

    client.delete(f"/api/requests/{request_id}", headers=SPA)
    file_tasks.run_cleanup()
    assert media.media_exists(kept_row.storage_path)
    counts = file_tasks.run_cleanup(datetime.now(timezone.utc) + timedelta(days=31))
    assert counts["purged"] >= 1 and media_files(media) == []
    assert client.get(f"/api/secure-files/view/{kept_row.storage_path}").status_code == 404


def test_sweep_queues_again_uploads_whose_message_was_lost(client, world, db, queued):
    login(client, create_user("admin"))
    body = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "a.jpg", jpeg_bytes()).json
    queued.clear()
    assert file_tasks.sweep.run() == 0  # too young to be lost
    db.execute(File.__table__.update().where(File.id == body["file_id"])
               .values(created_at=datetime.now(timezone.utc) - timedelta(minutes=15)))
    db.commit()
    assert file_tasks.sweep.run() == 1
    assert queued == [(body["file_id"], body["job_id"])]
    assert file_tasks.sweep.run() == 0  # guarded: not queued again while the first may still run


def test_upload_still_accepted_when_the_broker_is_down(client, world, db, media, monkeypatch):
    def broker_down(*_args, **_kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(file_tasks.validate, "apply_async", broker_down)
    login(client, create_user("admin"))
    response = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "a.jpg", jpeg_bytes())
    assert response.status_code == 202
    assert db.get(File, response.json["file_id"]).status == "pending"  # files.sweep will queue it


def test_an_upload_the_broker_could_not_take_is_sent_by_the_next_sweep(client, world, media, monkeypatch, queued):
    """Not ten minutes later: the job says its message was never sent, so the sweep after the broker is
    back (every 30 s) sends it, once."""
    def broker_down(*_args, **_kwargs):
        raise ConnectionError("redis is down")

    login(client, create_user("admin"))
    with monkeypatch.context() as down:
        down.setattr(file_tasks.validate, "apply_async", broker_down)
        body = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "a.jpg", jpeg_bytes()).json
    assert queued == []
    assert file_tasks.sweep.run() == 1  # at once, though the upload is seconds old
    assert queued == [(body["file_id"], body["job_id"])]
    assert file_tasks.sweep.run() == 0  # sent: not again


@both_backends
def test_an_unreachable_s3_server_is_a_503_and_nothing_is_recorded(client, world, db, tmp_path):
    from embedded import free_port
    from storage import backend
    from storage.s3 import S3Storage

    down = S3Storage("leadline", endpoint_url=f"http://127.0.0.1:{free_port()}", scratch_root=tmp_path / "scratch",
                     access_key_id="leadline-test-key", secret_access_key="leadline-test-secret-value")
    previous = backend.configure(down)
    try:
        login(client, create_user("admin"))
        response = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "a.jpg", jpeg_bytes())
    finally:
        backend.configure(previous)
    assert response.status_code == 503 and response.json["code"] == "storage_unavailable"
    assert response.json["detail"] == "Хранилище файлов недоступно, повторите позже"
    assert db.scalar(select(File.id)) is None and list((tmp_path / "scratch").iterdir()) == []


@pytest.mark.parametrize("media", ["s3"], indirect=True)
def test_a_worker_that_cannot_reach_s3_leaves_the_file_pending_for_the_next_try(client, world, db, media, queued):
    from embedded import free_port
    from storage import backend
    from storage.s3 import S3Storage

    login(client, create_user("admin"))
    body = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "a.jpg", jpeg_bytes()).json
    down = S3Storage(media.bucket, endpoint_url=f"http://127.0.0.1:{free_port()}", scratch_root=media.scratch_root,
                     **{"access_key_id": media.access_key_id, "secret_access_key": media.secret_access_key})
    backend.configure(down)
    try:
        with pytest.raises(Exception) as failed:
            file_tasks.run_validation(body["file_id"], body["job_id"])
        assert backend.storage_unreachable(failed.value)
    finally:
        backend.configure(media)
    assert db.get(File, body["file_id"], populate_existing=True).status == "pending"
    assert validate_now(db, body).status == "ready"  # S3 back: the next delivery validates it


def test_a_validator_crash_rejects_instead_of_trusting(client, world, db, media, monkeypatch):
    def broken(*_args, **_kwargs):
        raise IndexError("a parser bug")

    monkeypatch.setattr(file_tasks.validation, "validate", broken)
    login(client, create_user("admin"))
    body = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "a.jpg", jpeg_bytes()).json
    row = validate_now(db, body)
    assert row.status == "rejected" and row.reject_reason == REASONS["check_failed"]
    assert quarantined(media) == []


# ---- S3: the worker's deletions in batches, the copy next to the decision ----------------------------

def _count_requests(store, operation: str) -> list[int]:
    """How many `operation` requests the store's client sends from now on (a list: one item a request)."""
    sent: list[int] = []
    store.client.meta.events.register(f"before-call.s3.{operation}", lambda **kwargs: sent.append(1))
    return sent


@pytest.mark.parametrize("media", ["s3"], indirect=True)
def test_s3_validations_delete_their_quarantined_objects_in_one_batch_without_waiting(client, world, db, media):
    """The worker does not send a DELETE per validated file: the keys go, a moment later and from a thread
    of its own, in one DeleteObjects request (nobody calls flush here)."""
    login(client, create_user("admin"))
    request_id = world["request"].id
    bodies = [upload(client, f"/api/requests/{request_id}/upload-bso", f"{i}.jpg", jpeg_bytes(noise=True)).json
              for i in range(4)]
    single, batches = _count_requests(media, "DeleteObject"), _count_requests(media, "DeleteObjects")
    rows = [validate_now(db, body) for body in bodies]
    assert [row.status for row in rows] == ["ready"] * 4
    assert single == []

    def left() -> list[str]:
        return [token for token, _, _ in media.quarantine_entries()]

    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left() == [] and single == [] and 1 <= len(batches) <= len(rows)  # one, unless the machine crawls
    assert sorted(media_files(media)) == sorted(row.storage_path for row in rows)


@pytest.mark.parametrize("media", ["s3"], indirect=True)
def test_s3_deletions_a_killed_worker_had_not_sent_are_removed_by_the_cleanup(client, world, db, media):
    """A worker process killed before its batch went out leaves the quarantined object behind (as a crash
    between the decision and the deletion always could): files.cleanup removes it, and nothing else."""
    login(client, create_user("admin"))
    body = upload(client, f"/api/requests/{world['request'].id}/upload-bso", "kept.jpg", jpeg_bytes()).json
    discarder = media._discarder
    discarder.add = lambda key: None  # the process dies before its thread sends anything
    row = validate_now(db, body)
    assert row.status == "ready"
    assert [token for token, _, _ in media.quarantine_entries()] == [row.quarantine_path]
    del discarder.add

    counts = file_tasks.run_cleanup(datetime.now(timezone.utc) + timedelta(hours=25))

    assert counts["quarantine_removed"] == 1
    assert quarantined(media) == [] and media_files(media) == [row.storage_path]
    assert media_bytes(media, row.storage_path) == jpeg_bytes()


@pytest.mark.parametrize("media", ["s3"], indirect=True)
def test_s3_flush_sends_every_waiting_deletion_at_once(media):
    """What a pool process calls at its end: every key still waiting goes now, in one request."""
    tokens = []
    for _ in range(3):
        writer = media.quarantine_writer(10)
        writer.write(b"x")
        writer.commit()
        tokens.append(writer.token)
    batches = _count_requests(media, "DeleteObjects")
    for token in tokens:
        media.discard_quarantined(token)
    media.discard_quarantined("../not-a-token")  # ignored, as delete_quarantined ignores it
    media.flush()
    assert [token for token, _, _ in media.quarantine_entries()] == [] and len(batches) == 1


@pytest.mark.parametrize("media", ["s3"], indirect=True)
def test_s3_a_failed_copy_rolls_back_the_decision_prepared_next_to_it(client, world, db, media, monkeypatch):
    """The copy into media/ runs while the worker prepares `ready` (the row, the link, the request's
    history, the job): when the copy fails, none of it is committed and the file stays pending for a
    later run, its quarantined bytes kept."""
    from botocore.exceptions import EndpointConnectionError

    login(client, create_user("admin"))
    request_id = world["request"].id
    body = upload(client, f"/api/requests/{request_id}/upload-bso", "a.jpg", jpeg_bytes()).json

    def unreachable(token, relative_path):
        time.sleep(0.2)  # the decision is prepared meanwhile
        raise EndpointConnectionError(endpoint_url="http://s3.invalid")

    monkeypatch.setattr(media, "promote", unreachable)
    with pytest.raises(EndpointConnectionError):
        file_tasks.run_validation(body["file_id"], body["job_id"])
    row = db.get(File, body["file_id"], populate_existing=True)
    assert row.status == "pending" and row.storage_path is None
    assert db.scalars(select(RequestEvent).where(RequestEvent.request_id == request_id,
                                                 RequestEvent.field == "bso_file_path")).all() == []
    assert db.get(Job, uuid.UUID(body["job_id"]), populate_existing=True).status != "succeeded"
    assert quarantined(media) == [row.quarantine_path] and media_files(media) == []

    monkeypatch.undo()
    row = validate_now(db, body)  # the next run (files.sweep) finishes it
    assert row.status == "ready" and media_files(media) == [row.storage_path] and quarantined(media) == []
