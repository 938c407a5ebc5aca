"""What an attachment name says, how names and transfer encodings are decoded, and the debounce of the
retry. Pure logic: names the way any IMAP server may hand them over (not only Dovecot's decoded ones)."""
from __future__ import annotations

import base64
import quopri
import random
from datetime import datetime, timezone

import pytest

from models.recordings.rules import BadName, attachment_filename, is_recording_name, parse_name

NAME = "2025.07.15__11-03-07__79173250913__79923298774.mp3"


def test_a_mango_name_gives_time_in_the_business_zone_and_normalised_numbers():
    parsed = parse_name(NAME)
    assert parsed.call_time == datetime(2025, 7, 15, 8, 3, 7, tzinfo=timezone.utc)  # Moscow is UTC+3
    assert (parsed.from_phone, parsed.to_phone, parsed.extension) == ("79173250913", "79923298774", "mp3")
    assert parse_name("2025.01.03__12-25-05__89161234567__+74951234567.WAV").from_phone == "79161234567"
    assert parse_name("2025.01.03__12-25-05__89161234567__74951234567__extra.ogg").to_phone == "74951234567"


@pytest.mark.parametrize("name, words", [
    ("2025.13.45__25-61-00__79161234567__74951234567.mp3", "несуществующие"),
    ("2025.02.30__10-00-00__79161234567__74951234567.mp3", "несуществующие"),
    ("2025.07.15__11-03-07__79173250913.mp3", "шаблону"),
    ("2025.07.15__11-03-07__abc__79923298774.mp3", "шаблону"),
    ("2025.07.15__11-03-07__79173250913__79923298774", "шаблону"),
    ("2025.07.15__11-03-07__79173250913__79923298774.exe", ".exe"),
])
def test_malformed_names_are_refused_with_a_reason(name, words):
    assert is_recording_name(name)
    with pytest.raises(BadName) as refused:
        parse_name(name)
    assert words in str(refused.value)


def test_other_attachments_are_not_recordings():
    for name in ("invoice.pdf", "call.mp3", "15.07.2025__11-03-07__1__2.mp3", None, ""):
        assert not is_recording_name(name)


def test_names_decoded_from_raw_bodystructure_parameters():
    rfc2231 = "utf-8''" + NAME.replace("__", "%5F%5F")
    assert attachment_filename((b"filename*", rfc2231.encode()), None) == NAME
    split = [(b"filename*0*", b"utf-8''2025.07.15%5F%5F11-03-07"),
             (b"filename*1*", b"%5F%5F79173250913__79923298774.mp3")]
    assert attachment_filename(tuple(x for pair in split for x in pair), None) == NAME
    encoded = "=?utf-8?b?" + base64.b64encode(NAME.encode()).decode() + "?="
    assert attachment_filename((b"filename", encoded.encode()), None) == NAME
    q_words = "=?utf-8?q?2025.07.15=5F=5F11-03-07?= =?utf-8?q?=5F=5F79173250913=5F=5F79923298774.mp3?="
    assert attachment_filename((b"filename", q_words.encode()), None) == NAME
    assert attachment_filename(None, (b"name", NAME.encode())) == NAME  # Content-Type name only
    assert attachment_filename((b"filename", b"C:\\calls\\" + NAME.encode()), None) == NAME
    assert attachment_filename((b"filename", 'with "quotes".mp3'.encode()), None) == 'with "quotes".mp3'
    assert attachment_filename(None, None) is None


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable", "8bit"])
def test_transfer_encodings_are_undone_whatever_the_chunk_boundaries(encoding):
    from models.recordings.mailbox import Decoder

    data = random.Random(5).randbytes(50_000)
    if encoding == "base64":
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    elif encoding == "quoted-printable":
        encoded = quopri.encodestring(data)
    else:
        encoded = data
    rng = random.Random(9)
    for _ in range(5):
        decoder, out, at = Decoder(encoding), [], 0
        while at < len(encoded):
            step = rng.randint(1, 5000)
            out.append(decoder.feed(encoded[at:at + step]))
            at += step
        out.append(decoder.finish())
        assert b"".join(out) == data


def test_a_burst_of_new_requests_asks_for_one_retry():
    from models.core.redis import get_redis
    from tasks.queue import MATCH_DEBOUNCE_KEY, MATCH_DEBOUNCE_SECONDS, match_recordings_soon

    asked = [match_recordings_soon() for _ in range(20)]
    assert asked.count(True) == 1 and asked[0] is True
    assert 0 < get_redis().ttl(MATCH_DEBOUNCE_KEY) <= MATCH_DEBOUNCE_SECONDS


def test_beat_runs_the_import_every_interval_and_the_retry():
    from beat.schedule import SCHEDULE
    from settings import settings
    from tasks.celery_app import celery_app

    entry = SCHEDULE["recordings-import"]
    assert entry["task"] == "recordings.import_mailbox" and entry["options"]["queue"] == "heavy"
    assert entry["schedule"] == float(settings.RECORDINGS_CHECK_INTERVAL)
    assert SCHEDULE["recordings-match-pending"]["task"] == "recordings.match_pending"
    assert {"recordings.import_mailbox", "recordings.match_pending"} <= set(celery_app.tasks)
