"""Realistic Mango sequences through the HTTP endpoint to a real worker: the exact calls and requests."""
from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from models import AdvertisingCampaign, Call, CallLeg, City, MangoEvent, Request, RequestEvent
from models.core.business_time import now_utc
from models.directories.tables import RequestType
from tests.factories import create_user, make_campaign
from tests.support import SPA, login, wait_for
from tests.telephony_support import (
    CLIENT,
    LINE,
    OTHER_LINE,
    form,
    incoming_answered,
    incoming_missed,
    incoming_transferred,
    outbound_callback,
    overridden,
    path_of,
    signing,
)

pytestmark = pytest.mark.worker


@pytest.fixture()
def signed():
    with signing():
        yield


@pytest.fixture()
def campaign(committed):
    return make_campaign(LINE, city_name="Казань", phone_number="+7 (495) 123-45-67")


def recent(minutes_ago: float = 10) -> int:
    return int(time.time() - minutes_ago * 60)


def deliver(client, deliveries) -> None:
    for event_type, payload in deliveries:
        response = client.post(path_of(event_type), data=form(payload))
        assert response.status_code == 200, response.json


def drain(session, expected: int | None = None, timeout: float = 60) -> None:
    """Wait until every stored delivery is processed (and, if given, that many exist)."""
    def done():
        session.expire_all()
        counts = dict(session.execute(select(MangoEvent.status, func.count()).group_by(MangoEvent.status)).all())
        session.rollback()
        total = sum(counts.values())
        return counts.get("pending", 0) == 0 and (expected is None or total == expected)

    wait_for(done, timeout=timeout)
    session.expire_all()


def calls(session) -> list[Call]:
    return session.scalars(select(Call).order_by(Call.id)).all()


def requests_of(session) -> list[Request]:
    return session.scalars(select(Request).order_by(Request.id)).all()


def type_name(session, request: Request) -> str:
    return session.scalar(select(RequestType.name).where(RequestType.id == request.request_type_id))


def assert_every_event_processed_once(session) -> None:
    rows = session.execute(select(MangoEvent.status, MangoEvent.attempts)).all()
    assert rows and all(row == ("processed", 1) for row in rows), rows


# ---- scenarios --------------------------------------------------------------------------------------

def test_incoming_answered_call_creates_a_new_request(app, committed, broker, broker_worker, signed, campaign):
    """Through the webhook's fast path (tasks/queue.py builds and publishes the messages itself) on
    Redis and on RabbitMQ."""
    t0 = recent()
    deliver(app.test_client(), incoming_answered("in-answered", t0=t0))
    drain(committed, expected=6)

    [call] = calls(committed)
    assert (call.entry_id, call.direction, call.line_number, call.campaign_id, call.client_phone) == (
        "in-answered", "in", LINE, campaign.id, CLIENT)
    assert call.operator_extension == "105"
    assert call.started_at.timestamp() == t0
    assert call.answered_at.timestamp() == t0 + 13
    assert call.ended_at.timestamp() == t0 + 96
    assert (call.talk_seconds, call.missed, call.result, call.disconnect_reason) == (83, False, "answered", 1110)
    assert call.summary_received is True
    legs = committed.scalars(select(CallLeg).where(CallLeg.call_pk == call.id).order_by(CallLeg.started_at)).all()
    assert [(leg.call_id, leg.state, leg.seq, leg.extension) for leg in legs] == [
        ("in-answered-ivr", "Disconnected", 2, None), ("in-answered-op", "Disconnected", 3, "105")]
    assert legs[0].connected_at is None  # the IVR answering is no conversation
    assert legs[1].connected_at.timestamp() == t0 + 13

    [request] = requests_of(committed)
    assert call.request_id == request.id
    assert (request.status, type_name(committed, request), request.city_id, request.advertising_campaign_id) == (
        "Новая", "Впервые", campaign.city_id, campaign.id)
    assert (request.client_phone, request.ats_number, request.created_by_id) == (CLIENT, LINE, None)
    history = committed.scalars(select(RequestEvent).where(RequestEvent.request_id == request.id)).all()
    assert [(e.action, e.source, e.user_id) for e in history] == [("created", "mango", None)]
    assert_every_event_processed_once(committed)


def test_incoming_missed_call(app, committed, celery_worker_thread, signed, campaign):
    deliver(app.test_client(), incoming_missed("in-missed", t0=recent()))
    drain(committed, expected=5)
    [call] = calls(committed)
    assert (call.direction, call.missed, call.result, call.talk_seconds, call.answered_at) == (
        "in", True, "missed", 0, None)
    assert call.disconnect_reason == 1163
    assert call.operator_extension is None
    [request] = requests_of(committed)
    assert call.request_id == request.id and request.status == "Новая"


def test_missed_call_creates_no_request_when_so_configured(app, committed, celery_worker_thread, signed, campaign):
    with overridden(MANGO_MISSED_CREATES_REQUEST=False):
        deliver(app.test_client(), incoming_missed("in-missed-off", t0=recent()))
        drain(committed, expected=5)
    [call] = calls(committed)
    assert call.missed is True and call.request_id is None
    assert requests_of(committed) == []


def test_transfer_between_operators_is_one_call(app, committed, celery_worker_thread, signed, campaign):
    t0 = recent()
    deliver(app.test_client(), incoming_transferred("in-transfer", t0=t0))
    drain(committed, expected=9)
    [call] = calls(committed)
    assert (call.direction, call.client_phone, call.operator_extension) == ("in", CLIENT, "107")
    assert call.answered_at.timestamp() == t0 + 5
    assert (call.talk_seconds, call.missed, call.result) == (195, False, "answered")
    legs = committed.scalars(select(CallLeg).where(CallLeg.call_pk == call.id)).all()
    assert sorted(leg.call_id for leg in legs) == ["in-transfer-consult", "in-transfer-op1", "in-transfer-op2"]
    assert all(leg.state == "Disconnected" for leg in legs)
    [request] = requests_of(committed)
    assert call.request_id == request.id


def test_outbound_callback_is_linked_to_the_request_of_the_phone(app, committed, celery_worker_thread, signed,
                                                                 campaign):
    client = app.test_client()
    deliver(client, incoming_missed("first-missed", t0=recent(20)))
    drain(committed, expected=5)
    [request] = requests_of(committed)
    deliver(client, outbound_callback("callback", t0=recent(5)))
    deliver(client, outbound_callback("to-stranger", client="79035556677", t0=recent(4)))
    drain(committed, expected=13)

    by_entry = {call.entry_id: call for call in calls(committed)}
    back = by_entry["callback"]
    assert (back.direction, back.client_phone, back.operator_extension, back.line_number) == (
        "out", CLIENT, "105", LINE)
    assert (back.talk_seconds, back.missed, back.result) == (118, False, "answered")
    assert back.request_id == request.id
    assert by_entry["to-stranger"].request_id is None
    assert len(requests_of(committed)) == 1  # outbound calls never create requests


def test_repeat_caller(app, committed, celery_worker_thread, signed, campaign):
    client = app.test_client()
    deliver(client, incoming_answered("repeat-1", t0=recent(3)))
    drain(committed, expected=6)
    [first] = requests_of(committed)
    assert type_name(committed, first) == "Впервые"

    # Again within the window while the request is open: the same request.
    deliver(client, incoming_missed("repeat-2", t0=recent(2)))
    drain(committed, expected=11)
    assert len(requests_of(committed)) == 1
    assert {call.request_id for call in calls(committed)} == {first.id}

    # Later than the window: a new request, Повтор.
    committed.execute(update(Request).where(Request.id == first.id)
                      .values(created_at=now_utc() - timedelta(minutes=45)))
    committed.commit()
    deliver(client, incoming_answered("repeat-3", t0=recent(1)))
    drain(committed, expected=17)
    second = requests_of(committed)[-1]
    assert second.id != first.id and type_name(committed, second) == "Повтор"

    # Within the window but the open request was closed (final status): another Повтор.
    committed.execute(update(Request).where(Request.id == second.id).values(status="Отказ"))
    committed.commit()
    deliver(client, incoming_answered("repeat-4", t0=recent(0.5)))
    drain(committed, expected=23)
    requests = requests_of(committed)
    assert len(requests) == 3
    assert [type_name(committed, r) for r in requests] == ["Впервые", "Повтор", "Повтор"]
    linked = {call.entry_id: call.request_id for call in calls(committed)}
    assert linked == {"repeat-1": first.id, "repeat-2": first.id, "repeat-3": second.id,
                      "repeat-4": requests[2].id}


def test_caller_with_a_manually_typed_phone_is_a_repeat(app, committed, celery_worker_thread, signed, campaign):
    """The operator typed '+7 (916) 123-45-67' a month ago: normalised, it is the same client."""
    rt = committed.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    old = Request(city_id=campaign.city_id, request_type_id=rt, client_phone=CLIENT,
                  client_phone_raw="+7 (916) 123-45-67", status="Готово")
    committed.add(old)
    committed.commit()
    deliver(app.test_client(), incoming_answered("typed", t0=recent()))
    drain(committed, expected=6)
    new = requests_of(committed)[-1]
    assert new.id != old.id and type_name(committed, new) == "Повтор"


def test_call_on_a_line_without_campaign_creates_no_request(app, committed, celery_worker_thread, signed, campaign):
    deliver(app.test_client(), incoming_answered("no-campaign", line=OTHER_LINE, t0=recent()))
    drain(committed, expected=6)
    [call] = calls(committed)
    assert (call.line_number, call.campaign_id, call.request_id) == (OTHER_LINE, None, None)
    assert requests_of(committed) == []


def snapshot(session) -> dict:
    """Everything the events produced, keyed by Mango ids (row ids depend on arrival order)."""
    session.expire_all()
    out = {}
    request_types = dict(session.execute(select(RequestType.id, RequestType.name)).all())
    requests = {r.id: r for r in requests_of(session)}
    for call in calls(session):
        legs = session.scalars(select(CallLeg).where(CallLeg.call_pk == call.id)).all()
        request = requests.get(call.request_id)
        out[call.entry_id] = {
            "call": (call.direction, call.line_number, call.campaign_id, call.client_phone, call.operator_extension,
                     call.started_at, call.answered_at, call.ended_at, call.talk_seconds, call.disconnect_reason,
                     call.result, call.missed, call.summary_received),
            "legs": sorted((leg.call_id, leg.state, leg.seq, leg.from_number, leg.to_number, leg.extension,
                            leg.started_at, leg.connected_at, leg.ended_at, leg.disconnect_reason) for leg in legs),
            "request": None if request is None else (request.client_phone, request.status,
                                                     request_types[request.request_type_id], request.city_id,
                                                     request.ats_number, request.advertising_campaign_id),
        }
    return out


def scenario(t0: int):
    """Three clients' calls (answered, missed, transferred) and a callback to the first one."""
    return [
        incoming_answered("mix-answered", client="79161110001", t0=t0),
        incoming_missed("mix-missed", client="79161110002", t0=t0 + 20),
        incoming_transferred("mix-transfer", client="79161110003", t0=t0 + 40),
    ], outbound_callback("mix-callback", client="79161110001", t0=t0 + 300)


def test_in_order_and_shuffled_twice_give_the_same_result(app, committed, celery_worker_thread, signed, campaign):
    client = app.test_client()
    t0 = recent(15)
    incoming, callback = scenario(t0)
    for sequence in incoming:
        deliver(client, sequence)
    deliver(client, callback)
    drain(committed, expected=24)
    in_order = snapshot(committed)
    assert len(in_order) == 4
    assert sum(1 for v in in_order.values() if v["request"]) == 4  # three new, the callback linked
    assert len(requests_of(committed)) == 3

    from tests.support import truncate_committed_data

    truncate_committed_data()
    city = City(name="Казань")
    committed.add(city)
    committed.flush()
    committed.add(AdvertisingCampaign(id=campaign.id, city_id=city.id, name="Авито Казань",
                                      phone_number="+7 (495) 123-45-67", phone=LINE))
    committed.commit()

    rng = random.Random(20250103)
    # Every delivery twice, the three incoming calls interleaved and each call's events shuffled;
    # the callback an hour later, its own events shuffled too.
    mixed = [d for sequence in incoming for d in sequence] * 2
    rng.shuffle(mixed)
    deliver(client, mixed)
    drain(committed, expected=20)
    later = callback * 2
    rng.shuffle(later)
    deliver(client, later)
    drain(committed, expected=24)
    shuffled = snapshot(committed)
    for entry in in_order:
        in_order[entry]["call"] = in_order[entry]["call"][:2] + in_order[entry]["call"][3:]
        shuffled[entry]["call"] = shuffled[entry]["call"][:2] + shuffled[entry]["call"][3:]
        if in_order[entry]["request"]:
            in_order[entry]["request"] = in_order[entry]["request"][:3] + in_order[entry]["request"][4:]
            shuffled[entry]["request"] = shuffled[entry]["request"][:3] + shuffled[entry]["request"][4:]
    assert shuffled == in_order
    assert len(requests_of(committed)) == 3
    assert_every_event_processed_once(committed)


# ---- concurrency ------------------------------------------------------------------------------------

def test_two_calls_of_one_phone_ending_at_once_make_one_request(committed, signed, campaign):
    """Two workers fold the summaries of two calls of the same phone at the same moment."""
    from models.telephony import rules
    from tasks.telephony import process_inbox_row

    t0 = recent()
    ids = []
    for entry in ("race-a", "race-b"):
        for event_type, payload in incoming_answered(entry, t0=t0):
            committed.execute(
                MangoEvent.__table__.insert().values(
                    dedupe_key=rules.dedupe_key(event_type, payload, ""), event_type=event_type,
                    entry_id=entry, payload=payload, status="pending"))
    committed.commit()
    ids = committed.scalars(select(MangoEvent.id).where(MangoEvent.event_type == "call")).all()
    for event_id in ids:
        assert process_inbox_row(event_id) == "processed"
    summaries = committed.scalars(select(MangoEvent.id).where(MangoEvent.event_type == "summary")).all()
    from models.core.db import Session

    barrier = threading.Barrier(2)
    results = []

    def fold(event_id):
        barrier.wait()
        try:
            results.append(process_inbox_row(event_id))
        finally:
            Session.remove()

    threads = [threading.Thread(target=fold, args=(event_id,)) for event_id in summaries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == ["processed", "processed"]
    committed.expire_all()
    [request] = requests_of(committed)
    assert {call.request_id for call in calls(committed)} == {request.id}


# ---- the calls API ----------------------------------------------------------------------------------

def test_calls_api_lists_filters_and_scopes(app, committed, celery_worker_thread, signed, campaign):
    client = app.test_client()
    deliver(client, incoming_answered("api-answered", t0=recent(30)))
    deliver(client, incoming_missed("api-missed", client="79260000002", t0=recent(20)))
    deliver(client, incoming_answered("api-other-line", client="79260000003", line=OTHER_LINE, t0=recent(10)))
    drain(committed, expected=17)
    other_city = City(name="Самара")
    committed.add(other_city)
    committed.commit()
    admin = create_user("admin")
    director_here = create_user("director", city_id=campaign.city_id)
    director_there = create_user("director", city_id=other_city.id)
    avitolog = create_user("avitolog")

    login(client, admin)
    everything = client.get("/api/calls").json
    assert [c["entry_id"] for c in everything] == ["api-other-line", "api-missed", "api-answered"]
    assert [c["entry_id"] for c in client.get("/api/calls?missed=true").json] == ["api-missed"]
    assert [c["entry_id"] for c in client.get(f"/api/calls?campaign_id={campaign.id}").json] == [
        "api-missed", "api-answered"]
    assert [c["entry_id"] for c in client.get("/api/calls?phone=+7 (926) 000-00-03").json] == ["api-other-line"]
    assert [c["entry_id"] for c in client.get("/api/calls?phone=0000002&direction=in").json] == ["api-missed"]
    assert client.get("/api/calls?direction=out").json == []
    paged = client.get("/api/calls?page=1&page_size=2")
    assert len(paged.json) == 2 and '"total": 3' in paged.headers["X-Pagination"]
    answered = everything[2]
    request_id = answered["request_id"]
    assert client.get(f"/api/calls?request_id={request_id}").json[0]["entry_id"] == "api-answered"
    detail = client.get(f"/api/calls/{answered['id']}").json
    assert [leg["call_id"] for leg in detail["legs"]] == ["api-answered-ivr", "api-answered-op"]
    assert detail["city_id"] == campaign.city_id and detail["campaign_name"] == "Авито Казань"
    of_request = client.get(f"/api/requests/{request_id}/calls")
    assert of_request.status_code == 200 and [c["entry_id"] for c in of_request.json] == ["api-answered"]
    assert client.get("/api/calls?direction=sideways").status_code == 422

    client.post("/api/auth/logout", headers=SPA)
    login(client, director_here)
    assert {c["entry_id"] for c in client.get("/api/calls").json} == {"api-missed", "api-answered"}
    client.post("/api/auth/logout", headers=SPA)
    login(client, director_there)
    assert client.get("/api/calls").json == []
    assert client.get(f"/api/calls/{answered['id']}").status_code == 404
    assert client.get(f"/api/requests/{request_id}/calls").status_code == 404
    client.post("/api/auth/logout", headers=SPA)
    login(client, avitolog)
    assert client.get("/api/calls").status_code == 403


def test_call_without_summary_is_closed_by_the_sweeper(app, committed, celery_worker_thread, signed, campaign):
    """Mango never sent the summary: once every leg has ended and nothing came for a while, the
    sweeper closes the call from its legs; a summary arriving later still has the last word."""
    from tasks.telephony import sweep_once

    t0 = recent()
    deliveries = incoming_answered("no-summary", t0=t0)
    client = app.test_client()
    deliver(client, deliveries[:-1])
    drain(committed, expected=5)
    assert sweep_once()["closed"] == 0  # not quiet for long enough yet
    [call] = calls(committed)
    assert call.ended_at is None and call.request_id is None

    committed.execute(update(Call).values(updated_at=now_utc() - timedelta(minutes=30)))
    committed.commit()
    assert sweep_once()["closed"] == 1
    committed.expire_all()
    [call] = calls(committed)
    assert (call.answered_at.timestamp(), call.ended_at.timestamp()) == (t0 + 13, t0 + 96)
    assert (call.talk_seconds, call.missed, call.result, call.summary_received) == (83, False, "answered", False)
    [request] = requests_of(committed)
    assert call.request_id == request.id

    deliver(client, deliveries[-1:])
    drain(committed, expected=6)
    [call] = calls(committed)
    assert call.summary_received is True and call.request_id == request.id
    assert len(requests_of(committed)) == 1
    assert sweep_once()["closed"] == 0
