"""Folding a backlog in batches (MANGO_FOLD_BATCH) gives exactly what folding one delivery at a time
gives: the same calls, legs, requests, inbox rows and report rollups, through the webhook, the sweeper
and a real worker; concurrent batches neither split calls nor deadlock."""
from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import func, select, text

from models import AdvertisingCampaign, Call, CallLeg, City, MangoEvent, Request, RequestEvent
from models.core.db import Session, get_engine
from models.directories.tables import RequestType
from tasks.queue import inbox
from tests.factories import create_user, make_campaign, make_request
from tests.support import SPA, login, truncate_committed_data, wait_for
from tests.telephony_support import (
    LINE,
    OTHER_LINE,
    call_event,
    compact,
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

SECOND_LINE = "74951112233"  # another campaign's line, in the same city


def deliveries(t0: int) -> list[tuple[str, dict]]:
    """Twelve calls of nine clients (answered, missed, transferred, callbacks, a repeat caller on
    another campaign's line, a caller with an old request, a line without campaign) and one delivery
    that cannot be folded."""
    out = []
    for n in range(3):
        out += incoming_answered(f"answered-{n}", client=f"7916111000{n}", t0=t0 + 10 * n, ext=f"10{n}")
    out += incoming_missed("missed", client="79161110010", t0=t0 + 40)
    out += incoming_transferred("transfer", client="79161110011", t0=t0 + 50)
    out += outbound_callback("callback", client="79161110010", t0=t0 + 400)
    out += outbound_callback("to-stranger", client="79035556677", t0=t0 + 410, answered=False)
    # The same client again within the window, on the other campaign's line: the first call's request.
    out += incoming_answered("again-1", client="79161110020", t0=t0 + 60)
    out += incoming_missed("again-2", client="79161110020", line=SECOND_LINE, t0=t0 + 200)
    out += incoming_answered("old-client", client="79161110030", line=SECOND_LINE, t0=t0 + 70)
    out += incoming_answered("no-campaign", client="79161110040", line=OTHER_LINE, t0=t0 + 80)
    out += incoming_missed("missed-2", client="79161110050", line=SECOND_LINE, t0=t0 + 90)
    broken = call_event("broken", "broken-leg", 1, "Appeared", t0 + 5, frm={"number": "79161110060"},
                        to={"number": LINE, "line_number": LINE})
    del broken[1]["call_id"]
    return out + [broken]


def seed() -> None:
    """The campaigns (the same ones for every run) and a client who had a request last month."""
    first = make_campaign(LINE, city_name="Казань")
    make_campaign(SECOND_LINE, city_id=first.city_id, name="Директ Казань")
    make_request(city_id=first.city_id, client_phone="79161110030", status="Готово")
    Session.commit()


def fold_backlog(client, shuffled: list[tuple[str, dict]], batch: int) -> int:
    """Post every delivery while the broker refuses the webhook's messages, so they wait in the inbox
    as after an outage; then the sweeper queues them all and the worker folds them with MANGO_FOLD_BATCH
    = `batch`. Returns how many deliveries were stored."""
    inbox.paused_until = float("inf")  # what the publisher does when Redis refused a message
    try:
        for event_type, payload in shuffled:
            assert client.post(path_of(event_type), data=form(payload)).status_code == 200
    finally:
        inbox.paused_until = 0.0
    stored = Session.scalar(select(func.count()).select_from(MangoEvent))
    Session.rollback()
    from tasks.telephony import sweep_once

    with overridden(MANGO_FOLD_BATCH=batch, MANGO_SWEEP_AFTER_SECONDS=0):
        swept = sweep_once()
        assert (swept["stale"], swept["enqueued"]) == (stored, 1)  # one run of the inbox worker folds them all

        def done():
            pending = Session.scalar(select(func.count()).select_from(MangoEvent).where(MangoEvent.status == "pending"))
            Session.rollback()
            return pending == 0

        wait_for(done, timeout=60)
    return stored


def transactions_that_folded() -> int:
    """Inbox rows are marked in the transaction that folds them: each distinct xmin is one transaction."""
    with get_engine().connect() as connection:
        return connection.execute(text("SELECT count(DISTINCT xmin::text) FROM mango_events")).scalar()


def outcome() -> dict:
    """Everything folding produced, keyed by Mango's ids, campaign lines and city names (row ids and
    creation times differ from run to run)."""
    Session.expire_all()
    lines = dict(Session.execute(select(AdvertisingCampaign.id, AdvertisingCampaign.phone)).all())
    cities = dict(Session.execute(select(City.id, City.name)).all())
    types = dict(Session.execute(select(RequestType.id, RequestType.name)).all())
    calls = Session.scalars(select(Call)).all()
    entries_of: dict[int, list[str]] = {}
    for call in calls:
        entries_of.setdefault(call.request_id, []).append(call.entry_id)
    requests = {}
    for request in Session.scalars(select(Request)).all():
        history = Session.scalars(select(RequestEvent.action).where(RequestEvent.request_id == request.id)
                                  .order_by(RequestEvent.id)).all()
        requests[tuple(sorted(entries_of.get(request.id, [])))] = (
            request.client_phone, request.status, types[request.request_type_id], cities[request.city_id],
            request.ats_number, lines.get(request.advertising_campaign_id), request.created_by_id, history)
    folded = {}
    for call in calls:
        legs = Session.scalars(select(CallLeg).where(CallLeg.call_pk == call.id)).all()
        folded[call.entry_id] = (
            call.direction, call.line_number, lines.get(call.campaign_id), call.client_phone,
            call.operator_extension, call.started_at, call.answered_at, call.ended_at, call.talk_seconds,
            call.disconnect_reason, call.result, call.missed, call.last_seq, call.summary_received,
            sorted((leg.call_id, leg.state, leg.seq, leg.from_number, leg.to_number, leg.extension,
                    leg.started_at, leg.connected_at, leg.ended_at, leg.disconnect_reason) for leg in legs),
        )
    inbox_rows = {row.dedupe_key: (row.event_type, row.status, row.attempts, row.last_error)
                  for row in Session.scalars(select(MangoEvent)).all()}
    Session.rollback()
    return {"calls": folded, "requests": requests, "inbox": inbox_rows, "rollups": rollup_rows()}


ROLLUPS = ("call_day_stats", "call_day_links", "request_day_stats")


def rollup_rows() -> dict[str, list[tuple]]:
    """The report rollups the folding kept (ids are the same in both runs: the tables restart them)."""
    with get_engine().connect() as connection:
        return {table: sorted(tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}")))  # nosec B608
                for table in ROLLUPS}


def rebuilt_rollup_rows() -> dict[str, list[tuple]]:
    """The rollups recomputed from the tables, in a transaction rolled back afterwards."""
    from models.reports import rollups

    with get_engine().connect() as connection:
        rollups.rebuild(connection)
        rebuilt = {table: sorted(tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}")))  # nosec
                   for table in ROLLUPS}
        connection.rollback()
    return rebuilt


def test_batches_fold_a_shuffled_duplicated_backlog_exactly_as_one_by_one(app, committed, celery_worker_thread):
    t0 = int(time.time()) - 1800
    shuffled = deliveries(t0) * 2  # Mango delivers some notifications twice
    random.Random(20261206).shuffle(shuffled)
    client = app.test_client()
    with signing():
        seed()
        stored = fold_backlog(client, shuffled, batch=1)
        one_by_one = outcome()
        one_transaction_each = transactions_that_folded()
        truncate_committed_data()
        seed()
        assert fold_backlog(client, shuffled, batch=7) == stored
        batched = outcome()
        batch_transactions = transactions_that_folded()

    assert stored == len(shuffled) // 2
    assert batched == one_by_one
    # The batches kept their rollup deltas aside and applied them at the end: still exact.
    assert batched["rollups"] == rebuilt_rollup_rows()
    assert batched["rollups"]["call_day_stats"] and batched["rollups"]["request_day_stats"]
    # What the runs produced is what the deliveries say, not just the same twice.
    assert len(one_by_one["calls"]) == 12  # the broken delivery made no call
    by_calls = one_by_one["requests"]
    summaries = [payload["entry_id"] for event_type, payload in shuffled if event_type == "summary"]
    # A callback is linked to the request of its client if that request exists when its summary arrives.
    called_back = summaries.index("callback") > summaries.index("missed")
    assert set(by_calls) == {
        ("answered-0",), ("answered-1",), ("answered-2",), ("callback", "missed") if called_back else ("missed",),
        ("transfer",), ("again-1", "again-2"), ("old-client",), ("missed-2",), (), }
    # The client's two calls share the request of the call whose summary arrived first, on its line.
    line = LINE if summaries.index("again-1") < summaries.index("again-2") else SECOND_LINE
    assert by_calls[("again-1", "again-2")][3:6] == ("Казань", line, line)
    assert by_calls[("old-client",)][2] == "Повтор" and by_calls[("answered-0",)][2] == "Впервые"
    assert by_calls[("missed-2",)][:2] == ("79161110050", "Новая")
    statuses = sorted((status, attempts, error) for _, status, attempts, error in one_by_one["inbox"].values())
    assert statuses == [("failed", 1, "нет поля call_id")] + [("processed", 1, None)] * (stored - 1)
    # One transaction per delivery, against batches of 7 (the broken one's batch folded one by one).
    assert one_transaction_each == stored
    assert batch_transactions < stored / 3


def test_a_batch_leaves_rows_another_transaction_holds_and_takes_whole_calls(committed, answered_call_rows):
    """A batch skips rows another transaction holds (they are its holder's) instead of waiting, takes
    the other pending rows of the calls it picked, and the held row is folded exactly once later."""
    from tasks.telephony import fold_next_batch

    first, last = answered_call_rows
    holder = get_engine().connect()
    try:
        holder.execute(text("SELECT 1 FROM mango_events WHERE id = :id FOR UPDATE"), {"id": last})
        started = time.monotonic()
        assert fold_next_batch(2) == 5  # two picked, three more of the same call; the held one left
        assert time.monotonic() - started < 5
        Session.remove()
        statuses = dict(Session.execute(select(MangoEvent.id, MangoEvent.status)).all())
        Session.rollback()
        assert statuses[last] == "pending"
        assert sorted(status for event_id, status in statuses.items() if event_id != last) == ["processed"] * 5
    finally:
        holder.rollback()
        holder.close()
    assert fold_next_batch(2) == 1
    assert fold_next_batch(2) == 0
    Session.remove()
    rows = Session.execute(select(MangoEvent.status, MangoEvent.attempts)).all()
    assert sorted(rows) == [("processed", 1)] * 6
    call = Session.scalars(select(Call)).one()
    assert call.summary_received and call.request_id is not None
    Session.rollback()


def store(deliveries: list[tuple[str, dict]]) -> list[int]:
    """Deliveries stored as the webhook stores them, without queueing anything; their ids."""
    from api.telephony.inbox import writer
    from models.telephony import rules

    ids = []
    for event_type, payload in deliveries:
        raw = compact(payload)
        ids.append(writer.insert({"dedupe_key": rules.dedupe_key(event_type, payload, raw), "event_type": event_type,
                                  "entry_id": payload["entry_id"], "payload": raw, "status": "pending",
                                  "raw_body": None, "last_error": None}))
    return ids


@pytest.fixture()
def answered_call_rows(committed):
    """The six deliveries of one answered call in the inbox; the ids of the first and of the last."""
    make_campaign(LINE, city_name="Казань")
    Session.commit()
    ids = store(incoming_answered("held", t0=int(time.time()) - 600))
    return ids[0], ids[-1]


def test_two_batches_sharing_client_numbers_at_once_fold_each_delivery_once(committed, campaign_rows):
    """Two workers fold batches whose calls share client numbers at the same time. Folded row after
    row, each batch would lock the numbers in the order of its calls (the rollup's lock when a call
    gets its number, the request decision's when it ends): the first takes 1 and waits for 2, the second
    takes 2 and waits for 1, a deadlock. Batches lock every number they may touch at the start, sorted,
    so the second waits for the first and both commit whole."""
    from tasks.telephony import fold_next_batch

    ids, size = campaign_rows
    results = []

    def fold():
        try:
            results.append(fold_next_batch(size))
        finally:
            Session.remove()

    def waiting_for_locks() -> int:
        with get_engine().connect() as connection:
            return connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )).scalar()

    holder = get_engine().connect()
    try:
        # The first batch (a1 then b2) stops at number 1's request lock; the second (b1 then a2) starts.
        holder.execute(text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"),
                       {"key": "leadline:mango:phone:79161112201"})
        first = threading.Thread(target=fold)
        first.start()
        wait_for(lambda: waiting_for_locks() == 1, timeout=15)
        second = threading.Thread(target=fold)
        second.start()
        wait_for(lambda: waiting_for_locks() == 2, timeout=15)
    finally:
        holder.execute(text("SELECT pg_advisory_unlock_all()"))
        holder.close()
    first.join(30)
    second.join(30)
    assert sorted(results) == [len(ids) // 2] * 2
    rows = Session.execute(select(MangoEvent.id, MangoEvent.status, MangoEvent.attempts,
                                  text("xmin::text")).order_by(MangoEvent.id)).all()
    assert [(status, attempts) for _, status, attempts, _ in rows] == [("processed", 1)] * len(ids)
    # Each batch committed whole (no deadlock rolled one back to fold its rows one by one).
    transactions = [xmin for _, _, _, xmin in rows]
    half = len(ids) // 2
    assert len(set(transactions[:half])) == 1 and len(set(transactions[half:])) == 1
    assert transactions[0] != transactions[-1]
    calls = Session.scalars(select(Call)).all()
    requests = Session.scalars(select(Request)).all()
    assert len(calls) == 4 and len(requests) == 2  # each client's second call joins its first's request
    assert {call.request_id for call in calls} == {request.id for request in requests}
    Session.rollback()
    assert rollup_rows() == rebuilt_rollup_rows()


@pytest.fixture()
def campaign_rows(committed):
    """Four answered calls of two clients in the inbox, the first batch's calls (a1, b2) before the
    second's (b1, a2); their ids and the batch size that picks a1 and the first row of b2 (the claim
    adds the rest of b2)."""
    make_campaign(LINE, city_name="Казань")
    Session.commit()
    t0 = int(time.time()) - 600
    a1 = incoming_answered("numbers-a1", client="79161112201", t0=t0)
    b2 = incoming_answered("numbers-b2", client="79161112202", t0=t0 + 1)
    b1 = incoming_answered("numbers-b1", client="79161112202", t0=t0 + 2)
    a2 = incoming_answered("numbers-a2", client="79161112201", t0=t0 + 3)
    return store([*a1, *b2, *b1, *a2]), len(a1) + 1


def test_rows_in_their_retries_are_left_to_them_and_the_sweeper_queues_them_alone(
        committed, answered_call_rows, monkeypatch):
    """A row whose folding failed on a transient error is pending with its error, and its own retry
    (telephony.process_event, with backoff) folds it: a run does not claim it again at once, batch after
    batch. Left pending past MANGO_SWEEP_AFTER_SECONDS, the sweeper queues that retry, not a run."""
    import tasks.telephony as telephony
    from tasks import queue

    first, last = answered_call_rows
    with get_engine().begin() as connection:  # what _finish leaves after a transient error
        connection.execute(text("UPDATE mango_events SET attempts = 1, last_error = 'OperationalError' WHERE id = :id"),
                           {"id": last})
    assert telephony.fold_next_batch(50) == 5
    assert telephony.fold_next_batch(50) == 0
    Session.remove()

    published: list[tuple] = []
    sent: list[tuple] = []
    monkeypatch.setattr(queue.inbox, "publish", lambda *args: published.append(args) or True)
    monkeypatch.setattr(telephony, "enqueue", lambda task, *args, **options: sent.append((task, *args)) or True)
    with overridden(MANGO_SWEEP_AFTER_SECONDS=0):
        assert telephony.sweep_once()["enqueued"] == 1
    assert sent == [("telephony.process_event", last)] and published == []


def test_a_replayed_row_is_folded_alone_by_the_worker(app, committed, celery_worker_thread, answered_call_rows):
    """An administrator replays a failed delivery: it goes back to pending with its old error and its
    own task folds it (a run would leave a row with an error to its retries)."""
    first, last = answered_call_rows
    with get_engine().begin() as connection:
        connection.execute(text("UPDATE mango_events SET status = 'processed' WHERE id <> :id"), {"id": last})
        connection.execute(text("UPDATE mango_events SET status = 'failed', attempts = 1, last_error = 'нет типа' "
                                "WHERE id = :id"), {"id": last})
    admin, operator = create_user("admin"), create_user("callcentr")
    Session.commit()
    client = app.test_client()
    login(client, operator)
    assert client.post(f"/api/webhook/mango/events/{last}/replay", headers=SPA).status_code == 403
    login(client, admin)
    assert client.post("/api/webhook/mango/events/999999999/replay", headers=SPA).status_code == 404
    response = client.post(f"/api/webhook/mango/events/{last}/replay", headers=SPA)
    assert response.status_code == 202 and response.json["queued"] is True

    def folded():
        Session.remove()
        row = Session.get(MangoEvent, last)
        return row.status == "processed" and row

    row = wait_for(folded, timeout=30)
    assert (row.attempts, row.last_error) == (2, None)
    call = Session.scalars(select(Call)).one()
    assert call.summary_received and call.request_id is not None  # the summary, folded on its own
    Session.rollback()
