"""The Mango webhook receiver: who may post, what is stored, what is answered."""
from __future__ import annotations

import base64
import json
import types
import uuid
from typing import Iterator

import pytest
from sqlalchemy import select

import embedded
from api.telephony.webhook import allowed_networks
from models import MangoEvent
from models.core.redis import get_redis
from models.telephony import rules
from tests.factories import create_user
from tests.support import SPA, login
from tests.telephony_support import (
    KEY,
    SALT,
    compact,
    form,
    incoming_answered,
    overridden,
    path_of,
    sign,
    signing,
)

MANGO_IP = "81.88.80.132"


@pytest.fixture()
def signed():
    with signing():
        yield


@pytest.fixture(autouse=True)
def queued(monkeypatch) -> Iterator[list[tuple]]:
    """The runs of the inbox worker the webhook queued (their arguments), and the tasks a replay queued
    (name and arguments). Nothing reaches the broker from these tests: their rows live in a rolled-back
    transaction, and a worker thread of the test session must not pick their messages up."""
    from api.telephony import routes
    from tasks import queue

    runs: list[tuple] = []
    get_redis().delete(queue.FOLD_QUEUED_KEY)
    monkeypatch.setattr(queue.inbox, "publish", lambda *args: runs.append(args) or True)
    monkeypatch.setattr(routes, "enqueue", lambda task, *args, **options: runs.append((task, *args)) or True)
    yield runs
    get_redis().delete(queue.FOLD_QUEUED_KEY)


def stored(db) -> list[MangoEvent]:
    db.expire_all()
    return db.scalars(select(MangoEvent).order_by(MangoEvent.id)).all()


def post(client, event_type: str, payload, *, path: str | None = None, ip: str = MANGO_IP, **form_kwargs):
    return client.post(path or path_of(event_type), data=form(payload, **form_kwargs),
                       environ_base={"REMOTE_ADDR": ip})


@pytest.fixture()
def delivery():
    return incoming_answered("NDQxODIwMzk1NzoxMTg=")[3]  # the operator leg's Connected


def test_signed_delivery_is_stored_pending_and_answered(client, db, signed, delivery, queued):
    event_type, payload = delivery
    response = post(client, event_type, payload)
    assert response.status_code == 200
    assert response.json["ok"] is True and response.json["event_id"]
    [event] = stored(db)
    assert queued == [()]  # a run of telephony.fold_inbox, which folds every pending row
    assert (event.event_type, event.status, event.entry_id) == ("call", "pending", payload["entry_id"])
    assert event.payload == payload
    assert event.raw_body is None and event.attempts == 0


@pytest.mark.parametrize("tamper", ["sign", "key", "json", "missing_sign", "salt", "unsigned"])
def test_forged_deliveries_are_refused_and_not_stored(client, db, signed, delivery, tamper):
    event_type, payload = delivery
    data = form(payload)
    if tamper == "sign":
        data["sign"] = "0" * 64
    elif tamper == "key":
        data = form(payload, key="another-vpbx-key")
    elif tamper == "json":
        data["json"] = data["json"].replace("79161234567", "79160000000")
    elif tamper == "missing_sign":
        del data["sign"]
    elif tamper == "salt":
        data = form(payload, salt="guessed-salt")
    elif tamper == "unsigned":  # neither key nor signature: taken only while no key is configured
        data = {"json": data["json"]}
    response = client.post(path_of(event_type), data=data, environ_base={"REMOTE_ADDR": MANGO_IP})
    assert response.status_code == 403
    assert response.json["code"] in ("mango_sign_invalid", "mango_key_invalid", "mango_sign_missing")
    assert response.json["detail"]
    assert stored(db) == []


def test_signature_is_over_the_json_string_as_received(client, db, signed):
    """Pretty-printed JSON with a '+' and '%' in it: hashed as sent, not re-serialised or decoded twice."""
    raw = '{\n  "command_id": "sms+7f3a%91",\n  "timestamp": 1735897000,\n  "reason": 1000\n}'
    response = client.post(path_of("sms"), data={"vpbx_api_key": KEY, "sign": sign(raw), "json": raw})
    assert response.status_code == 200
    [event] = stored(db)
    assert event.payload["command_id"] == "sms+7f3a%91"


def test_uppercase_signature_hex_is_accepted(client, db, signed, delivery):
    data = form(delivery[1])
    data["sign"] = data["sign"].upper()
    assert client.post(path_of("call"), data=data).status_code == 200


def test_unsigned_deliveries_are_accepted_when_no_key_is_configured(client, db, delivery):
    with overridden(MANGO_API_KEY=None, MANGO_API_SALT=None):
        response = client.post(path_of("call"), data={"json": compact(delivery[1])})
    assert response.status_code == 200
    assert len(stored(db)) == 1


WEBHOOK_ADDRESSES = (
    "/api/webhook/mango/events/call", "/api/webhook/mango/events/summary", "/api/webhook/mango/events/record/added",
    "/api/webhook/mango/ping", "/api/webhook/mango", "/api/webhook", "/api/webhook/events/call",
    "/api/v1/mango/webhook", "/api/v1/mango/webhook/events/call", "/api/v2/mango/webhook/events/call",
)


@pytest.mark.parametrize("path", WEBHOOK_ADDRESSES)
def test_a_switched_off_webhook_is_not_found_and_stores_nothing(client, db, signed, delivery, queued, path):
    """MANGO_ENABLED=false: every address of the receiver answers 404 with the usual error body, even
    to a correctly signed delivery or a connection test; nothing is stored or queued."""
    with overridden(MANGO_ENABLED=False):
        delivered = client.post(path, data=form(delivery[1]), environ_base={"REMOTE_ADDR": MANGO_IP})
        connection_test = client.post(path, data={"vpbx_api_key": KEY}, environ_base={"REMOTE_ADDR": MANGO_IP})
    for response in (delivered, connection_test):
        assert response.status_code == 404
        assert response.json == {"detail": "Приём событий Mango Office отключён", "code": "not_found"}
    assert stored(db) == [] and queued == []
    assert client.post(path, data=form(delivery[1])).status_code == 200  # switched on again: taken


def test_an_unsigned_webhook_is_warned_about_when_the_api_starts(caplog):
    from api import create_app

    def started(**values) -> list[str]:
        caplog.clear()
        with overridden(**values), caplog.at_level("WARNING", logger="api.telephony.webhook"):
            create_app({"TESTING": True})
        return [record.getMessage() for record in caplog.records if record.name == "api.telephony.webhook"]

    [warning] = started(MANGO_API_KEY=None, MANGO_API_SALT=None, MANGO_ENABLED=True)
    assert "unsigned" in warning and "MANGO_API_KEY" in warning and "MANGO_ENABLED=false" in warning
    assert len(started(MANGO_API_KEY=KEY, MANGO_API_SALT=None, MANGO_ENABLED=True)) == 1  # a key alone signs nothing
    assert started(MANGO_API_KEY=KEY, MANGO_API_SALT=SALT, MANGO_ENABLED=True) == []
    assert started(MANGO_API_KEY=None, MANGO_API_SALT=None, MANGO_ENABLED=False) == []


def test_disallowed_source_address_is_refused(client, db, delivery):
    with overridden(MANGO_ALLOWED_IPS=["81.88.80.132", "81.88.82.0/24"]):
        assert post(client, "call", delivery[1], ip="203.0.113.9").status_code == 403
        # A client-sent X-Forwarded-For is not believed (no trusted proxy in front).
        spoofed = client.post(path_of("call"), data=form(delivery[1]), headers={"X-Forwarded-For": MANGO_IP},
                              environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert spoofed.status_code == 403 and spoofed.json["code"] == "ip_forbidden"
        assert stored(db) == []
        assert post(client, "call", delivery[1], ip="81.88.82.45").status_code == 200  # inside the network
        assert post(client, "call", {**delivery[1], "seq": 9}, ip="::ffff:81.88.80.132").status_code == 200
    assert len(stored(db)) == 2


def test_source_address_behind_a_trusted_proxy(db, delivery):
    """With one trusted proxy the address it appended is the client; anything before it is ignored."""
    from api import create_app

    with overridden(TRUSTED_PROXIES=1, MANGO_ALLOWED_IPS=[MANGO_IP]):
        client = create_app({"TESTING": True, "RATELIMIT_ENABLED": False}).test_client()
        ok = client.post(path_of("call"), data=form(delivery[1]), headers={"X-Forwarded-For": MANGO_IP},
                         environ_base={"REMOTE_ADDR": "10.0.0.2"})
        forged = client.post(path_of("call"), data=form({**delivery[1], "seq": 7}),
                             headers={"X-Forwarded-For": f"{MANGO_IP}, 198.51.100.7"},
                             environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert ok.status_code == 200
    assert forged.status_code == 403
    assert len(stored(db)) == 1


def test_invalid_allow_list_entries_fail_closed(client, db, delivery):
    with overridden(MANGO_ALLOWED_IPS=["not-an-address"]):
        assert post(client, "call", delivery[1]).status_code == 403
    assert allowed_networks(("not-an-address",)) == ()


def test_repeated_delivery_is_stored_once(client, db, signed, delivery):
    first = post(client, "call", delivery[1])
    again = post(client, "call", delivery[1])
    assert first.status_code == again.status_code == 200
    assert again.json == {"ok": True, "duplicate": True}
    assert len(stored(db)) == 1


def test_every_delivery_of_a_call_gets_its_own_key(client, db, signed):
    deliveries = incoming_answered("NDQxODIwMzk1NzoxMTg=")
    for event_type, payload in deliveries:
        assert post(client, event_type, payload).status_code == 200
    keys = {event.dedupe_key for event in stored(db)}
    assert len(keys) == len(deliveries)


@pytest.mark.parametrize("raw, reason", [
    ('{"entry_id": "abc", "call_id": ', "Некорректный JSON"),
    ("[1, 2, 3]", "не является объектом"),
    ('{"entry_id": "a\\u0000b"}', "NUL"),
])
def test_malformed_json_is_kept_as_failed_with_its_reason(client, db, signed, raw, reason):
    response = client.post(path_of("call"), data={"vpbx_api_key": KEY, "sign": sign(raw), "json": raw})
    assert response.status_code == 200
    assert response.json["status"] == "failed"
    [event] = stored(db)
    assert event.status == "failed" and reason in event.last_error
    assert event.raw_body == raw.replace("\x00", "\\u0000") and event.payload is None


def test_connection_test_without_json_stores_nothing(client, db, signed):
    for path in ("/api/webhook/mango/ping", "/api/webhook/mango/", "/api/webhook", "/api/webhook/mango/events/call"):
        response = client.post(path, data={"vpbx_api_key": KEY})
        assert response.status_code == 200, path
        assert response.json == {"ok": True}
    assert client.post("/api/webhook/mango/ping", data={"vpbx_api_key": "wrong"}).status_code == 403
    assert stored(db) == []


def test_body_larger_than_the_limit_is_refused(client, db, signed):
    payload = {"entry_id": "x", "padding": "a" * 4096}
    with overridden(MANGO_MAX_BODY_KB=2):
        response = client.post(path_of("call"), data=form(payload))
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"
    assert stored(db) == []


@pytest.mark.parametrize("path, expected", [
    ("/api/webhook/mango/events/call", "call"),
    ("/api/webhook/mango/events/summary/", "summary"),
    ("/api/webhook/events/record/added", "record/added"),
    ("/api/webhook/mangoevents/dtmf", "dtmf"),
    ("/api/v1/mango/webhook/events/record/tagged", "record/tagged"),
    ("/api/v2/mango/webhook/events/sms", "sms"),
    ("/api/webhook/mango/result/callback", "result/callback"),
    ("/api/webhook/mango/events/recognized/offline", "recognized/offline"),
])
def test_old_and_new_addresses_map_to_the_event_type(client, db, signed, path, expected):
    payload = {"entry_id": "NDQxODIwMzk1NzoxMTg=", "timestamp": 1735896433, "seq": 1, "recording_id": "rec-1",
               "command_id": "cmd-1", "reason": 1000, "result": 1000, "dtmf": "3", "call_id": "leg-1"}
    assert client.post(path, data=form(payload)).status_code == 200
    [event] = stored(db)
    assert event.event_type == expected


def test_bare_base_address_guesses_the_type_from_the_payload(client, db, signed):
    _, call_payload = incoming_answered("e-guess")[0]
    _, summary_payload = incoming_answered("e-guess")[-1]
    for payload in (call_payload, summary_payload, {"something": "else"}):
        assert client.post("/api/webhook/mango", data=form(payload)).status_code == 200
    assert [e.event_type for e in stored(db)] == ["call", "summary", "unknown"]


def test_odd_event_types_are_not_found(client, db, signed, delivery):
    for bad in ("CALL%20x", "a" * 80, "call/..%2F..%2Fx", "call;drop", "%D0%B7%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA"):
        response = client.post(f"/api/webhook/mango/events/{bad}", data=form(delivery[1]))
        assert response.status_code == 404, bad
        assert response.json["detail"]
    assert stored(db) == []


def test_webhook_is_not_rate_limited_by_the_api_limits(db, signed):
    from api import create_app

    with overridden(RATE_LIMIT_PER_CLIENT="2 per minute"):
        app = create_app({"TESTING": True})
    client = app.test_client()
    for seq in range(1, 6):
        payload = {**incoming_answered("e-rate")[3][1], "seq": seq}
        assert client.post(path_of("call"), data=form(payload)).status_code == 200


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_stored_delivery_survives_the_broker_being_down(client, db, signed, delivery, monkeypatch, scheme):
    """Nothing answers at the broker's address (Redis or RabbitMQ): the delivery is stored pending and
    answered, the publisher pauses, and the inbox sweeper queues it later."""
    from tasks import queue
    from tasks.celery_app import celery_app  # noqa: F401 - the app is built on the run's broker, not this one

    port = embedded.free_port()
    down = f"redis://127.0.0.1:{port}/0" if scheme == "redis" else f"amqp://guest:guest@127.0.0.1:{port}//"
    monkeypatch.setattr(queue.inbox, "publish", types.MethodType(queue.DirectPublisher.publish, queue.inbox))
    monkeypatch.setattr(queue.inbox, "paused_until", 0.0)
    with overridden(CELERY_BROKER_URL=down):
        response = post(client, "call", delivery[1])
        assert response.status_code == 200
        assert response.json["queued"] is False
        assert [e.status for e in stored(db)] == ["pending"]
        # Paused after the failure: the next delivery does not even try.
        assert post(client, "call", {**delivery[1], "seq": 5}).json["queued"] is False
        assert queue.inbox.paused_until > 0


def _without_volatile_fields(envelope: dict) -> dict:
    assert isinstance(envelope["headers"].pop("enqueued_at"), float)  # stamped at publish (tasks/signals.py)
    for volatile in ("id", "root_id"):
        envelope["headers"].pop(volatile)
    for volatile in ("correlation_id", "delivery_tag"):
        envelope["properties"].pop(volatile, None)
    return envelope


def _published_on_redis(url: str, scratch: str, publish) -> dict:
    import redis

    client = redis.Redis.from_url(url)
    client.delete(scratch)
    try:
        publish()
        [raw] = client.lrange(scratch, 0, -1)
        return json.loads(raw)
    finally:
        client.delete(scratch)


def _published_on_rabbitmq(url: str, scratch: str, publish) -> dict:
    """The message as RabbitMQ delivers it: body, headers, properties and where it was routed."""
    from kombu import Connection

    publish()
    with Connection(url) as connection:
        channel = connection.channel()
        try:
            message = channel.basic_get(scratch, no_ack=True)
            assert channel.basic_get(scratch, no_ack=True) is None  # exactly one
            properties = dict(message.properties)
            return {"body": json.loads(message.body), "headers": properties.pop("application_headers"),
                    "properties": properties,
                    "routed": (message.delivery_info["exchange"], message.delivery_info["routing_key"])}
        finally:
            channel.queue_delete(scratch)
            channel.exchange_delete(scratch)


def test_a_burst_queues_one_run_until_the_run_starts(client, db, signed, queued):
    """While a queued run of the inbox worker has not started, it will find every row committed
    before it starts: further deliveries queue nothing more. Once it starts (it deletes the key
    before claiming), the next delivery queues another run."""
    from tasks import queue

    for n in range(5):
        response = post(client, *incoming_answered(f"burst-{n}")[1])
        assert response.status_code == 200 and response.json["queued"] is True
    assert queued == [()]
    assert len(stored(db)) == 5 and get_redis().ttl(queue.FOLD_QUEUED_KEY) > 0

    get_redis().delete(queue.FOLD_QUEUED_KEY)  # what a run does first
    assert post(client, *incoming_answered("after-start")[1]).json["queued"] is True
    assert queued == [(), ()]


def test_a_failed_publish_leaves_no_key_behind(client, db, signed, queued, monkeypatch):
    """The broker refused the message: the key must not claim a run is queued, so the next delivery
    tries again (and the sweeper queues one for the rows left pending)."""
    from tasks import queue

    monkeypatch.setattr(queue.inbox, "publish", lambda *args: False)
    assert post(client, *incoming_answered("refused")[1]).json["queued"] is False
    assert get_redis().exists(queue.FOLD_QUEUED_KEY) == 0
    monkeypatch.setattr(queue.inbox, "publish", lambda *args: queued.append(args) or True)
    assert post(client, *incoming_answered("accepted")[1]).json["queued"] is True
    assert queued == [()]


def test_queued_message_is_the_one_celery_would_send(broker, monkeypatch):
    """The API writes Celery's message itself (one LPUSH on Redis, one publish on RabbitMQ); it must
    be the one Celery and kombu build, delivered where Celery would route it."""
    from tasks.celery_app import celery_app
    from tasks.queue import DirectPublisher, inbox

    scratch = f"leadline-test-scratch-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(inbox, "publish", types.MethodType(DirectPublisher.publish, inbox))  # the real one

    def by_celery():
        message = celery_app.amqp.create_task_message("ref-id", "telephony.fold_inbox", (), {},
                                                      create_sent_event=False)
        with celery_app.connection_for_write() as connection:
            celery_app.amqp.send_task_message(celery_app.amqp.Producer(connection), "telephony.fold_inbox",
                                              message, queue=scratch, retry=False)

    def by_us():
        assert DirectPublisher("telephony.fold_inbox", scratch).publish()

    read = _published_on_redis if broker.kind == "redis" else _published_on_rabbitmq
    reference = _without_volatile_fields(read(broker.url, scratch, by_celery))
    ours = _without_volatile_fields(read(broker.url, scratch, by_us))
    if broker.kind == "redis":
        for envelope in (reference, ours):
            envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
    assert ours["headers"]["task"] == "telephony.fold_inbox" and ours["body"][0] == []
    assert ours == reference


def test_database_down_is_a_503_not_a_500(client, db, signed, delivery, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from models.core.db import Session

    def down(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(Session, "connection", down)
    response = post(client, "call", delivery[1])
    assert response.status_code == 503
    assert response.json["code"] == "database_unavailable"


# ---- the inbox admin API ----------------------------------------------------------------------------

def test_failed_events_are_listed_and_replayed_by_an_admin_only(client, db, signed, queued):
    raw = '{"entry_id": broken'
    client.post(path_of("summary"), data={"vpbx_api_key": KEY, "sign": sign(raw), "json": raw})
    good = incoming_answered("e-ok")[0][1]
    post(client, "call", good)
    admin, manager = create_user("admin"), create_user("manager")

    login(client, manager)
    assert client.get("/api/webhook/mango/events?status=failed").status_code == 403
    [event] = [e for e in stored(db) if e.status == "failed"]
    assert client.post(f"/api/webhook/mango/events/{event.id}/replay", headers=SPA).status_code == 403

    client.post("/api/auth/logout", headers=SPA)
    login(client, admin)
    listed = client.get("/api/webhook/mango/events?status=failed")
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json] == [event.id]
    assert listed.json[0]["raw_body"] == raw and "Некорректный JSON" in listed.json[0]["last_error"]
    pending = client.get("/api/webhook/mango/events?status=pending").json
    assert [row["payload"] for row in pending] == [good]

    replayed = client.post(f"/api/webhook/mango/events/{event.id}/replay", headers=SPA)
    assert replayed.status_code == 202
    assert replayed.json["status"] == "pending" and replayed.json["queued"] is True
    assert queued[-1] == ("telephony.process_event", event.id)  # that row alone (a run leaves failed rows)
    assert db.scalar(select(MangoEvent.status).where(MangoEvent.id == event.id)) == "pending"
    assert client.post("/api/webhook/mango/events/999999/replay", headers=SPA).status_code == 404
    assert client.get("/api/webhook/mango/events?status=bogus").status_code == 422


def test_processed_event_is_not_replayed(client, db, signed):
    post(client, "call", incoming_answered("e-done")[0][1])
    [event] = stored(db)
    event.status = "processed"
    db.commit()
    login(client, create_user("admin"))
    response = client.post(f"/api/webhook/mango/events/{event.id}/replay", headers=SPA)
    assert response.status_code == 409


# ---- dedupe keys ------------------------------------------------------------------------------------

def test_dedupe_keys_follow_the_identity_of_each_event_type():
    call = {"entry_id": "E", "call_id": "C", "seq": 1, "call_state": "Appeared", "timestamp": 1}
    assert rules.dedupe_key("call", call, "a") == rules.dedupe_key("call", dict(call), "b")
    assert rules.dedupe_key("call", call, "a") != rules.dedupe_key("call", {**call, "seq": 2}, "a")
    assert rules.dedupe_key("summary", {"entry_id": "E", "talk_time": 1}, "x") == \
        rules.dedupe_key("summary", {"entry_id": "E", "talk_time": 2}, "y")
    assert rules.dedupe_key("record/added", {"recording_id": "R", "entry_id": "E"}, "") != \
        rules.dedupe_key("record/added", {"recording_id": "R2", "entry_id": "E"}, "")
    # No identity fields at all: the body decides.
    by_body = [rules.dedupe_key("result/callback", {"result": 1000}, body) for body in ("1", "2")]
    assert by_body[0] != by_body[1]
    assert len(rules.dedupe_key("x" * 50, None, "body")) <= 128
