"""The mailbox import against a real Dovecot: what is stored, how it is matched, what a rerun does.

Every test reads its own folder of the one session server, so the incremental state of one test
never leaks into another. The import runs as the task runs it (`run_import`), against the real
PostgreSQL, Redis and media storage.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from models import Call, Recording, Request
from models.core.business_time import business_tz
from models.recordings.tables import MailboxState
from storage.backend import Storage
from tests.factories import create_user, make_campaign, make_request
from tests.imap_server import (
    imap_server_fixture,
    mailbox_settings,
    mango_mail,
    mp3_bytes,
    plain_mail,
    recording_name,
    wav_bytes,
)
from tests.storage_support import both_backends, media_bytes
from tests.support import login

imap_server = imap_server_fixture()

LINE = "74951000001"


@dataclass
class Mailbox:
    server: object
    folder: str
    media: Storage

    def append(self, messages, msg_time=None, folder: str | None = None):
        self.server.append(messages, folder=folder or self.folder, msg_time=msg_time)


@pytest.fixture()
def mailbox(imap_server, committed, media):
    folder = f"Zapisi-{uuid.uuid4().hex[:8]}"
    imap_server.append([], folder=folder)  # creates the folder
    with mailbox_settings(imap_server, folder):
        yield Mailbox(imap_server, folder, media)


def run(**kwargs) -> dict:
    from tasks.recordings import run_import

    return run_import(**kwargs)


def local(dt: datetime) -> datetime:
    return dt.astimezone(business_tz()).replace(microsecond=0)


def recordings(session) -> list[Recording]:
    session.expire_all()
    rows = session.scalars(select(Recording).order_by(Recording.id)).all()
    session.rollback()
    return rows


def by_phone(session) -> dict[str, Recording]:
    return {row.from_phone: row for row in recordings(session)}


@both_backends
def test_import_stores_matches_and_counts_exactly_as_constructed(app, mailbox, committed):
    """The generated mailbox: 10 recordings to import (6 matched, 3 unmatched, 1 ambiguous), 4 skipped
    attachments, 1 duplicate delivery, mails that are not recordings, one mail older than days_back."""
    from tests.telephony_support import overridden

    city = make_campaign(LINE).city_id
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)
    t = [base + timedelta(minutes=10 * i) for i in range(12)]
    phones = {name: f"7916111{n:04d}" for n, name in enumerate("ABCDEFGHIJK", start=1)}
    audio = {name: mp3_bytes(20_000 + n, n) for n, name in enumerate("ABCDEFGHIJK", start=1)}
    audio["B"] = wav_bytes(30_000, 99)
    audio["D"] = wav_bytes(25_000, 98)
    audio["H"] = mp3_bytes(900_000, 97)  # more than one FETCH range of encoded bytes

    # A: a request two minutes after the call → matched to it.
    req_a = make_request(city, client_phone=phones["A"], created_at=t[0] + timedelta(minutes=2)).id
    # B (wav): a call of B nearest in time, linked to its request; another request of B nearer → the call wins.
    req_b_call = make_request(city, client_phone=phones["B"], created_at=t[1] + timedelta(minutes=25)).id
    make_request(city, client_phone=phones["B"], created_at=t[1] + timedelta(minutes=1))
    call_b = Call(entry_id=f"e-{uuid.uuid4().hex}", direction="in", client_phone=phones["B"], line_number=LINE,
                  started_at=t[1] + timedelta(seconds=5), request_id=req_b_call)
    committed.add(call_b)
    committed.commit()
    # C and D in one mail: C has a request 5 minutes before → matched; D has none → unmatched.
    req_c = make_request(city, client_phone=phones["C"], created_at=t[2] - timedelta(minutes=5)).id
    # E: two requests 3 minutes before and after → ambiguous.
    make_request(city, client_phone=phones["E"], created_at=t[4] - timedelta(minutes=3))
    make_request(city, client_phone=phones["E"], created_at=t[4] + timedelta(minutes=3))
    # F: a request 45 minutes away, outside the ±30 min window → unmatched.
    make_request(city, client_phone=phones["F"], created_at=t[5] + timedelta(minutes=45))
    # G: delivered twice, matched once. H: large (0.9 MB), matched. I (RFC 2231 name): matched.
    req_g = make_request(city, client_phone=phones["G"], created_at=t[6]).id
    req_h = make_request(city, client_phone=phones["H"], created_at=t[7] - timedelta(minutes=29)).id
    req_i = make_request(city, client_phone=phones["I"], created_at=t[8] + timedelta(seconds=30)).id
    # J (RFC 2047 name): no request → unmatched. K: in a mail ten days old → not read by a 1-day first run.

    def name(key, ext="mp3"):
        return recording_name(local(t["ABCDEFGHIJK".index(key)]), phones[key], LINE, ext)

    mail_g = mango_mail([(name("G"), audio["G"])], message_id="<twice@mangotele.com>")
    mailbox.append([
        mango_mail([(name("A"), audio["A"])]),
        mango_mail([(name("B", "wav"), audio["B"])]),
        mango_mail([(name("C"), audio["C"]), (name("D", "wav"), audio["D"])]),
        mango_mail([(name("E"), audio["E"])]),
        plain_mail("Счёт за услуги связи", attachment=("invoice.pdf", b"%PDF-1.4 invoice")),
        mango_mail([(name("F"), audio["F"])]),
        plain_mail("Добрый день", "Просто письмо без вложений"),
        mail_g,
        mango_mail([
            ("2025.13.45__25-61-00__79161119999__74951000001.mp3", mp3_bytes(5000, 50)),  # no such date
            ("2025.07.15__11-03-07__79161119998.mp3", mp3_bytes(5000, 51)),  # one number only
            (recording_name(local(t[9]), "79161119997", LINE, "exe"), b"MZ" + bytes(5000)),  # not audio
        ]),
        mango_mail([(recording_name(local(t[9]), "79161119996", LINE), mp3_bytes(1_600_000, 52))]),  # > 1 MB cap
        mail_g,  # the same mail delivered a second time
        mango_mail([(name("H"), audio["H"])]),
        mango_mail([(name("I"), audio["I"])], name_encoding="rfc2231"),
        mango_mail([(name("J"), audio["J"])], name_encoding="rfc2047"),
    ])
    mailbox.append([mango_mail([(name("K"), audio["K"])])], msg_time=datetime.now() - timedelta(days=10))

    with overridden(MAX_RECORDING_UPLOAD_MB=1):
        result = run()

    assert result["result"] == "succeeded", result
    assert (result["imported"], result["matched"], result["unmatched"], result["ambiguous"]) == (10, 6, 3, 1)
    assert (result["skipped"], result["duplicates"]) == (4, 1)
    reasons = sorted(item["reason"] for item in result["skipped_items"])
    assert any("шаблону" in r for r in reasons) and any("несуществующие" in r for r in reasons)
    assert any(".exe" in r for r in reasons) and any("больше 1 МБ" in r for r in reasons)

    rows = by_phone(committed)
    assert set(rows) == {phones[k] for k in "ABCDEFGHIJ"}
    expected = {"A": req_a, "B": req_b_call, "C": req_c, "G": req_g, "H": req_h, "I": req_i}
    for key, request_id in expected.items():
        assert (rows[phones[key]].match_status, rows[phones[key]].request_id) == ("matched", request_id), key
    assert rows[phones["B"]].call_id == call_b.id
    assert {rows[phones[k]].match_status for k in "DFJ"} == {"unmatched"}
    assert rows[phones["E"]].match_status == "ambiguous" and rows[phones["E"]].request_id is None

    # What was stored: the bytes of the attachment, once, in zayvka/zapis, with the parsed metadata.
    for key in "ABCDEFGHIJ":
        row = rows[phones[key]]
        assert row.storage_path.startswith("zayvka/zapis/")
        stored = media_bytes(mailbox.media, row.storage_path)
        assert stored == audio[key] and row.sha256 == hashlib.sha256(audio[key]).hexdigest(), key
        assert row.call_time == t["ABCDEFGHIJK".index(key)]
        assert (row.source, row.to_phone) == ("imap", LINE)
    assert rows[phones["B"]].mime_type == "audio/wav" and rows[phones["B"]].storage_path.endswith(".wav")
    assert rows[phones["I"]].original_name == name("I") and rows[phones["J"]].original_name == name("J")
    assert rows[phones["G"]].message_id == "<twice@mangotele.com>"

    # The request shows its recording and serves it to those who may read the request.
    admin = create_user("admin")
    client = app.test_client()
    login(client, admin)
    detail = client.get(f"/api/requests/{req_a}/").json
    assert detail["recording_file_path"] == rows[phones["A"]].storage_path
    served = client.get(f"/api/secure-files/view/{detail['recording_file_path']}")
    assert served.status_code == 200 and served.data == audio["A"]

    # A second run finds nothing new.
    again = run()
    assert (again["result"], again["messages"], again["imported"], again["duplicates"]) == ("succeeded", 0, 0, 0)
    assert len(recordings(committed)) == 10

    # A manual run looking back further reads the old mail too and stores only what is new.
    with overridden(MAX_RECORDING_UPLOAD_MB=1):
        manual = run(days_back=30, manual=True)
    assert (manual["imported"], manual["duplicates"], manual["skipped"]) == (1, 11, 4)  # K is new
    assert len(recordings(committed)) == 11


def test_uidvalidity_change_starts_over_without_duplicates(mailbox, committed, imap_server):
    first = [mango_mail([(recording_name(local(datetime.now(timezone.utc)) - timedelta(minutes=n), f"7916222000{n}",
                                         LINE), mp3_bytes(10_000, 200 + n))]) for n in range(3)]
    mailbox.append(first[:2])
    assert run()["imported"] == 2
    before = imap_server.uidvalidity(mailbox.folder)

    imap_server.recreate_folder(mailbox.folder)
    assert imap_server.uidvalidity(mailbox.folder) != before
    mailbox.append(first)  # the two old mails again (new UIDs) and a new one

    result = run()
    assert result["fresh_start"] is True
    assert (result["imported"], result["duplicates"]) == (1, 2)
    assert len(recordings(committed)) == 3
    state = committed.scalars(select(MailboxState).where(MailboxState.folder == mailbox.folder)).one()
    assert state.uidvalidity == imap_server.uidvalidity(mailbox.folder) and state.last_uid == 3
    committed.rollback()
    assert run()["imported"] == 0


def test_a_second_import_is_refused_while_one_holds_the_lock(mailbox, committed):
    from models.recordings.mailbox import import_lock

    mailbox.append([mango_mail([(recording_name(local(datetime.now(timezone.utc)), "79163330001", LINE),
                                 mp3_bytes(8000, 300))])])
    held = import_lock()
    assert held.acquire()
    try:
        refused = run()
        assert refused["result"] == "refused"
        assert recordings(committed) == []
        assert import_lock().acquire() is False
    finally:
        held.release()
    assert run()["imported"] == 1


def test_imap_down_fails_cleanly_and_the_next_run_imports_everything(app, mailbox, committed, imap_server):
    from api.recordings.routes import import_status

    mails = [mango_mail([(recording_name(local(datetime.now(timezone.utc)), f"7916444000{n}", LINE),
                          mp3_bytes(9000, 400 + n))]) for n in range(3)]
    mailbox.append(mails)
    imap_server.stop()
    try:
        failed = run()
        assert failed["result"] == "failed"
        assert "недоступен" in failed["error"] and imap_server.password not in failed["error"]
        with app.app_context():
            status = import_status()
        assert status["last_run"]["status"] == "failed" and "недоступен" in status["last_error"]
        assert status["last_run"]["error"] == status["last_error"]
    finally:
        imap_server.start()
    assert recordings(committed) == []

    ok = run()
    assert (ok["result"], ok["imported"]) == ("succeeded", 3)
    with app.app_context():
        status = import_status()
    assert status["last_error"] is None and status["last_run"]["status"] == "succeeded"
    assert status["last_run"]["counts"]["imported"] == 3 and status["totals"]["unmatched"] == 3


@pytest.mark.parametrize("security, words", [("ssl", "SSL"), ("starttls", "STARTTLS")])
def test_the_security_setting_is_honoured(mailbox, committed, security, words):
    """The test server speaks plain IMAP only: asking for SSL or STARTTLS must fail, not fall back."""
    from tests.telephony_support import overridden

    mailbox.append([mango_mail([(recording_name(local(datetime.now(timezone.utc)), "79165550001", LINE),
                                 mp3_bytes(8000, 500))])])
    with overridden(IMAP_SECURITY=security):
        result = run()
    assert result["result"] == "failed" and words in result["error"], result
    assert recordings(committed) == []


def test_wrong_password_and_missing_folder_are_reported(mailbox, committed):
    from tests.telephony_support import overridden

    with overridden(IMAP_PASSWORD="wrong-password"):
        result = run()
    assert result["result"] == "failed" and "отклонил вход" in result["error"]
    assert "wrong-password" not in result["error"]
    with overridden(IMAP_FOLDER="No-such-folder"):
        result = run()
    assert result["result"] == "failed" and "«No-such-folder» не найдена" in result["error"]


def test_processed_messages_are_moved_or_marked_seen(mailbox, committed, imap_server):
    from tests.telephony_support import overridden

    now = local(datetime.now(timezone.utc))
    processed = f"{mailbox.folder}-done"
    mailbox.append([mango_mail([(recording_name(now, "79166660001", LINE), mp3_bytes(8000, 600))]),
                    plain_mail("Не запись")])
    with overridden(IMAP_PROCESSED_FOLDER=processed):
        assert run()["imported"] == 1
    assert imap_server.count(mailbox.folder) == 1  # the plain mail stays
    assert imap_server.count(processed) == 1

    mailbox.append([mango_mail([(recording_name(now, "79166660002", LINE), mp3_bytes(8000, 601))]),
                    plain_mail("Тоже не запись")])
    with overridden(IMAP_MARK_SEEN=True):
        assert run()["imported"] == 1
    with imap_server.client() as client:
        client.select_folder(mailbox.folder, readonly=True)
        seen, unseen = client.search(["SEEN"]), client.search(["UNSEEN"])
        mango = set(client.search(["FROM", "mangotele.com"]))
    assert len(seen) == 1 and set(seen) <= mango  # the recording's mail only
    assert len(unseen) == 2 and not set(unseen) & mango


def test_a_recording_forwarded_inside_another_mail_is_found(mailbox, committed):
    from email.message import EmailMessage

    audio = mp3_bytes(15_000, 1000)
    inner = mango_mail([(recording_name(local(datetime.now(timezone.utc)), "79167770009", LINE), audio)])
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "boss@example.test", "zapisi@leadline.test", "Fwd: запись"
    outer.set_content("Пересылаю запись")
    outer.add_attachment(inner)  # message/rfc822
    mailbox.append([outer])
    result = run()
    assert (result["imported"], result["skipped"]) == (1, 0)
    [row] = recordings(committed)
    assert media_bytes(mailbox.media, row.storage_path) == audio


def test_recordings_of_a_deleted_request_go_back_to_the_inbox_and_keep_their_bytes(mailbox, committed):
    from models.files.tables import File
    from tasks.recordings import retry_unmatched

    city = make_campaign(LINE).city_id
    when = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=20)
    request_id = make_request(city, client_phone="79161230077", created_at=when).id
    mailbox.append([mango_mail([(recording_name(local(when), "79161230077", LINE), mp3_bytes(7000, 1100))])])
    assert run()["matched"] == 1
    committed.delete(committed.get(Request, request_id))
    committed.commit()

    retry_unmatched()
    [row] = recordings(committed)
    assert (row.match_status, row.request_id) == ("unmatched", None)
    assert committed.scalars(select(File).where(File.storage_path == row.storage_path)).all() == []
    assert mailbox.media.media_exists(row.storage_path)
