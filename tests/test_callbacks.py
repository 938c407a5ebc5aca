"""The callback queue and click-to-call: Mango sequences through the webhook to a real worker, the API
as operators use it, and calls placed through a local server speaking Mango's API (tests/mango_api.py)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from models import Call, Callback, MangoEvent, Request
from models.ops.alerts import RULES
from models.ops.tables import Alert, Job
from settings import settings
from tests import telegram_server
from tests.factories import create_user, make_campaign, make_request
from tests.mango_api import running
from tests.support import SPA, login, wait_for
from tests.telephony_support import (
    CLIENT,
    KEY,
    LINE,
    SALT,
    call_event,
    form,
    incoming_answered,
    incoming_missed,
    operator,
    outbound_callback,
    overridden,
    signing,
    summary,
)

pytestmark = pytest.mark.worker

OTHER_CLIENT = "79035556677"


@pytest.fixture()
def campaign(committed):
    return make_campaign(LINE, city_name="Казань", phone_number="+7 (495) 123-45-67")


@pytest.fixture()
def mango_api():
    with running() as server, overridden(MANGO_API_KEY=KEY, MANGO_API_SALT=SALT, MANGO_API_URL=server.base_url):
        yield server


def minutes_ago(minutes: float) -> int:
    return int(time.time() - minutes * 60)


def deliver(client, deliveries, prefix: str = "/api/webhook/mango/events/") -> None:
    for event_type, payload in deliveries:
        response = client.post(prefix + event_type, data=form(payload))
        assert response.status_code == 200, response.json


def drain(session, timeout: float = 60) -> None:
    """Wait until every stored delivery is processed."""
    def done():
        session.expire_all()
        pending = session.scalar(select(func.count()).select_from(MangoEvent).where(MangoEvent.status == "pending"))
        session.rollback()
        return pending == 0

    wait_for(done, timeout=timeout)
    failed = session.scalars(select(MangoEvent.last_error).where(MangoEvent.status == "failed")).all()
    session.rollback()
    assert failed == []


def signed_in(app, role: str, **fields):
    user = create_user(role, **{k: v for k, v in fields.items() if k in ("city_id",)})
    if fields.get("mango_extension"):
        from models import Session, User

        Session.get(User, user.id).mango_extension = fields["mango_extension"]
        Session.commit()
    client = app.test_client()
    client.environ_base["HTTP_ORIGIN"] = SPA["Origin"]  # what the SPA's browser sends with unsafe calls
    login(client, user)
    return client, user


def items(client, **query) -> list[dict]:
    response = client.get("/api/callbacks", query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def placed_call(entry: str, command_id: str, client: str = CLIENT, t0: int | None = None,
                answered: bool = True) -> list:
    """Mango's commands/callback as its events show it: the operator's phone rings and answers, then the
    client's; every call event carries the command id (`callback_initiator` API); the summary is outbound."""
    t0 = t0 or minutes_ago(1)
    me, callee = operator("105"), {"number": client}
    leg = f"{entry}-leg"
    extra = {"command_id": command_id, "callback_initiator": "API"}
    events = [call_event(entry, leg, 1, "Appeared", t0, frm=me, to=callee, **extra)]
    if answered:
        events.append(call_event(entry, leg, 2, "Connected", t0 + 8, frm=me, to=callee, **extra))
    end = t0 + (70 if answered else 30)
    events.append(call_event(entry, leg, 3 if answered else 2, "Disconnected", end, frm=me, to=callee,
                             disconnect_reason=1100, **extra))
    events.append(summary(entry, 2, frm=me, to=callee, line=LINE, create=t0, forward=t0,
                          talk=t0 + 8 if answered else 0, end=end, result=1 if answered else 0, reason=1100))
    return events


def job_of(session, job_id: str) -> Job:
    session.expire_all()
    job = session.get(Job, job_id)
    session.rollback()
    return job


# ---- the queue fed by the calls -------------------------------------------------------------------------

def test_missed_calls_open_one_item_and_an_answered_callback_closes_it(app, committed, celery_worker_thread,
                                                                       campaign):
    webhook = app.test_client()
    operator_client, _ = signed_in(app, "callcentr")
    with signing():
        first = minutes_ago(30)
        deliver(webhook, incoming_missed("missed-1", t0=first))
        drain(committed)
        [item] = items(operator_client)
        assert (item["phone"], item["status"], item["missed_calls"], item["overdue"]) == (CLIENT, "open", 1, True)
        assert (item["campaign_id"], item["city_id"], item["campaign_name"]) == (
            campaign.id, campaign.city_id, campaign.name)
        assert item["line_number"] == LINE
        assert datetime.fromisoformat(item["first_missed_at"]).timestamp() == first
        assert datetime.fromisoformat(item["due_at"]).timestamp() == first + settings.CALLBACK_SLA_MIN * 60
        # The missed call made a request (MANGO_MISSED_CREATES_REQUEST): the caller's previous requests.
        request = committed.scalars(select(Request)).one()
        committed.rollback()
        assert [r["id"] for r in item["previous_requests"]] == [request.id]

        # A second missed call from the same number adds to the open item.
        deliver(webhook, incoming_missed("missed-2", t0=minutes_ago(20)))
        drain(committed)
        [again] = items(operator_client)
        assert (again["id"], again["missed_calls"], again["first_missed_at"]) == (
            item["id"], 2, item["first_missed_at"])
        assert again["last_missed_at"] > item["last_missed_at"]

        # A callback nobody answered leaves it open; the same events again change nothing.
        deliver(webhook, outbound_callback("callback-1", t0=minutes_ago(15), answered=False))
        drain(committed)
        deliver(webhook, incoming_missed("missed-2", t0=minutes_ago(20)))  # repeated deliveries: ignored
        drain(committed)
        [still] = items(operator_client)
        assert (still["status"], still["missed_calls"]) == ("open", 2)

        # An answered callback closes it.
        deliver(webhook, outbound_callback("callback-2", t0=minutes_ago(10)))
        drain(committed)
    [done] = items(operator_client)
    call = committed.scalars(select(Call).where(Call.entry_id == "callback-2")).one()
    committed.rollback()
    assert (done["status"], done["outcome"], done["closing_call_id"], done["overdue"]) == (
        "done", "called_back", call.id, False)
    assert datetime.fromisoformat(done["closed_at"]) == call.answered_at
    assert items(operator_client, status="open") == []
    assert [i["id"] for i in items(operator_client, status="done")] == [item["id"]]


def test_the_number_answered_again_closes_its_item_and_a_later_answer_prevents_one(app, committed,
                                                                                   celery_worker_thread, campaign):
    webhook = app.test_client()
    operator_client, _ = signed_in(app, "callcentr")
    with signing():
        deliver(webhook, incoming_missed("missed-a", t0=minutes_ago(30)))
        drain(committed)
        assert [i["status"] for i in items(operator_client)] == ["open"]
        deliver(webhook, incoming_answered("answered-a", t0=minutes_ago(5)))
        drain(committed)
        [item] = items(operator_client)
        assert (item["status"], item["outcome"]) == ("done", "answered_inbound")

        # Out of order: the answered call of another number is folded before its earlier missed call.
        deliver(webhook, incoming_answered("answered-b", client=OTHER_CLIENT, t0=minutes_ago(5)))
        drain(committed)
        deliver(webhook, incoming_missed("missed-b", client=OTHER_CLIENT, t0=minutes_ago(30)))
        drain(committed)
    assert [i["phone"] for i in items(operator_client)] == [CLIENT]  # nothing opened for OTHER_CLIENT


# ---- operators: claim and close ---------------------------------------------------------------------

def open_item(phone: str = CLIENT, *, minutes: float = 20, city_id: int | None = None) -> int:
    from models import Session

    missed = datetime.now(timezone.utc) - timedelta(minutes=minutes)
    item = Callback(phone=phone, city_id=city_id, missed_calls=1, first_missed_at=missed, last_missed_at=missed,
                    due_at=missed + timedelta(minutes=settings.CALLBACK_SLA_MIN))
    Session.add(item)
    Session.commit()
    return item.id


def test_two_operators_claiming_at_once_one_gets_it(app, committed):
    ids = [open_item(f"7916000000{n}") for n in range(5)]
    operators = [signed_in(app, "callcentr") for _ in range(2)]
    for callback_id in ids:
        barrier = threading.Barrier(2)
        answers: dict[int, int] = {}

        def claim(n: int, callback_id=callback_id, barrier=barrier, answers=answers) -> None:
            client = operators[n][0]
            barrier.wait()
            answers[n] = client.post(f"/api/callbacks/{callback_id}/claim")

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(response.status_code for response in answers.values())
        assert statuses == [200, 409], statuses
        winner = next(n for n, response in answers.items() if response.status_code == 200)
        loser = answers[1 - winner]
        assert (loser.json["code"], loser.json["detail"]) == (
            "callback_claimed", "Этот перезвон уже взял другой оператор")
        assert answers[winner].json["claimed_by_id"] == operators[winner][1].id


def test_closing_a_claimed_item(app, committed, campaign):
    callback_id = open_item()
    (holder, holder_user), (other, _) = signed_in(app, "callcentr"), signed_in(app, "callcentr")
    manager, _ = signed_in(app, "manager")
    request_id = make_request(campaign.city_id, client_phone=CLIENT).id

    assert holder.post(f"/api/callbacks/{callback_id}/claim").status_code == 200
    assert holder.post(f"/api/callbacks/{callback_id}/claim").status_code == 200  # holding it already
    refused = other.post(f"/api/callbacks/{callback_id}/close", json={"outcome": "reached"})
    assert (refused.status_code, refused.json["code"]) == (409, "callback_claimed")
    bad = holder.post(f"/api/callbacks/{callback_id}/close", json={"outcome": "called_back"})
    assert bad.status_code == 422 and bad.json["detail"].startswith("Ошибка в данных запроса")
    unknown = holder.post(f"/api/callbacks/{callback_id}/close", json={"outcome": "reached", "request_id": 999999})
    assert (unknown.status_code, unknown.json["detail"]) == (422, "Заявка не найдена")
    assert items(holder)[0]["status"] == "open"  # nothing half-written

    closed = holder.post(f"/api/callbacks/{callback_id}/close",
                         json={"outcome": "request_created", "request_id": request_id})
    assert closed.status_code == 200, closed.json
    assert (closed.json["status"], closed.json["outcome"], closed.json["request_id"], closed.json["closed_by_id"]) \
        == ("done", "request_created", request_id, holder_user.id)
    again = manager.post(f"/api/callbacks/{callback_id}/close", json={"outcome": "reached"})
    assert (again.status_code, again.json["detail"]) == (409, "Перезвон уже закрыт")
    late = other.post(f"/api/callbacks/{callback_id}/claim")
    assert (late.status_code, late.json["code"]) == (409, "callback_closed")

    # A manager may close an item another operator holds.
    second = open_item(OTHER_CLIENT)
    assert holder.post(f"/api/callbacks/{second}/claim").status_code == 200
    assert manager.post(f"/api/callbacks/{second}/close", json={"outcome": "not_needed"}).status_code == 200
    assert other.post("/api/callbacks/987654321/claim").status_code == 404


def test_filters_and_the_directors_city(app, committed, campaign):
    overdue = open_item(minutes=30, city_id=campaign.city_id)
    fresh = open_item(OTHER_CLIENT, minutes=1)
    director, _ = signed_in(app, "director", city_id=campaign.city_id)
    manager, _ = signed_in(app, "manager")
    assert [i["id"] for i in items(manager, overdue="true")] == [overdue]
    assert [i["id"] for i in items(manager, overdue="false")] == [fresh]
    assert [i["id"] for i in items(manager, city_id=campaign.city_id)] == [overdue]
    assert [i["id"] for i in items(director)] == [overdue]
    assert director.post(f"/api/callbacks/{fresh}/claim").status_code == 404  # not their city
    refused = manager.get("/api/callbacks", query_string={"status": "lost"})
    assert refused.status_code == 422 and refused.json["detail"]


# ---- the alert and the metrics ------------------------------------------------------------------------

def test_overdue_callbacks_raise_the_alert_once_and_show_in_metrics(app, committed, monkeypatch):
    import tasks.alerts as alerts_task

    fake = telegram_server.start()
    try:
        replaced = dataclasses.replace(
            settings, TELEGRAM_BOT_TOKEN=telegram_server.TOKEN, TELEGRAM_CHAT_ID=telegram_server.CHAT_ID,
            TELEGRAM_API_URL=fake.url, ALERT_CALLBACKS_OVERDUE=2,
            ALERT_RULES_DISABLED=[name for name in RULES if name != "callbacks_overdue"])
        monkeypatch.setattr(alerts_task, "settings", replaced)
        open_item("79160000001", minutes=40)
        open_item("79160000002", minutes=30)
        alerts_task.run_evaluation(replaced)
        assert fake.received == []  # two overdue is not above the threshold
        open_item("79160000003", minutes=20)
        open_item("79160000004", minutes=5)  # not due yet
        for _ in range(3):
            alerts_task.run_evaluation(replaced)
        assert len(fake.delivered) == 1
        assert "Пропущенным звонкам не перезванивают вовремя" in fake.texts()[0]
        assert "Просроченных перезвонов: 3" in fake.texts()[0]
        alert = committed.scalars(select(Alert).where(Alert.rule == "callbacks_overdue")).one()
        committed.rollback()
        assert alert.status == "firing"
    finally:
        fake.close()

    from api.metrics import live_state

    live_state.reset()
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert "leadline_callbacks_open 4.0" in metrics
    assert "leadline_callbacks_overdue 3.0" in metrics
    assert "leadline_callback_time_to_callback_seconds_count 0.0" in metrics


# ---- click-to-call ----------------------------------------------------------------------------------

def test_click_to_call_sends_a_signed_command_and_the_result_completes_the_job(
        app, committed, celery_worker_thread, campaign, mango_api):
    webhook = app.test_client()
    operator_client, user = signed_in(app, "callcentr", mango_extension="105")
    deliver(webhook, incoming_missed("missed-c2c", t0=minutes_ago(30)))
    drain(committed)
    [item] = items(operator_client)
    request_id = item["previous_requests"][0]["id"]

    mango_api.fail_next(503)  # Mango is briefly unavailable: the command is sent again
    accepted = operator_client.post("/api/calls/callback", json={"callback_id": item["id"]})
    assert accepted.status_code == 202, accepted.json
    job_id = accepted.json["job_id"]
    wait_for(lambda: mango_api.commands, timeout=30)
    assert [entry[2] for entry in mango_api.log] == [503, 200]
    [command] = mango_api.commands
    form_sent = mango_api.forms[-1]
    assert form_sent["vpbx_api_key"] == KEY
    assert form_sent["sign"] == hashlib.sha256((KEY + form_sent["json"] + SALT).encode()).hexdigest()
    assert json.loads(form_sent["json"]) == command
    assert command["from"] == {"extension": "105"}
    assert (command["to_number"], command["line_number"]) == (CLIENT, LINE)
    assert command["command_id"]
    wait_for(lambda: (job_of(committed, job_id).params or {}).get("sent"), timeout=10)
    job = job_of(committed, job_id)
    assert (job.kind, job.status, job.created_by_id) == ("calls.callback", "running", user.id)
    assert job.params["request_id"] == request_id and job.params["callback_id"] == item["id"]

    # Mango reports the command done on the same signed entry point (its base address + result/callback).
    deliver(webhook, [("result/callback", {"command_id": command["command_id"], "result": 1000})],
            prefix="/api/webhook/mango/")
    drain(committed)
    state = operator_client.get(f"/api/jobs/{job_id}")
    assert (state.status_code, state.json["status"], state.json["result"]["mango_result"]) == (200, "succeeded", 1000)

    # The call's events fold into a call linked to the request and closing the callback item.
    deliver(webhook, placed_call("placed-1", command["command_id"]))
    drain(committed)
    call = committed.scalars(select(Call).where(Call.entry_id == "placed-1")).one()
    committed.rollback()
    assert (call.direction, call.client_phone, call.request_id, call.missed) == ("out", CLIENT, request_id, False)
    [done] = items(operator_client)
    assert (done["status"], done["outcome"], done["closing_call_id"]) == ("done", "called_back", call.id)
    assert job_of(committed, job_id).result["call_id"] == call.id


def test_click_to_call_refusals_and_a_failed_result(app, committed, celery_worker_thread, campaign, mango_api):
    without, _ = signed_in(app, "callcentr")
    refused = without.post("/api/calls/callback", json={"phone": "+7 903 555-66-77"})
    assert (refused.status_code, refused.json["code"]) == (409, "no_mango_extension")
    operator_client, _ = signed_in(app, "callcentr", mango_extension="106")
    for body in ({}, {"phone": "+7 903 555-66-77", "request_id": 1}, {"phone": "12"}):
        answer = operator_client.post("/api/calls/callback", json=body)
        assert answer.status_code == 422 and answer.json["detail"], (body, answer.json)
    assert operator_client.post("/api/calls/callback", json={"request_id": 999999}).status_code == 404
    with overridden(MANGO_API_SALT=None):
        off = operator_client.post("/api/calls/callback", json={"phone": "+7 903 555-66-77"})
        assert (off.status_code, off.json["code"]) == (409, "mango_not_configured")
    assert mango_api.log == [] and committed.scalar(select(func.count()).select_from(Job)) == 0
    committed.rollback()

    accepted = operator_client.post("/api/calls/callback", json={"phone": "+7 903 555-66-77"})
    assert accepted.status_code == 202
    wait_for(lambda: mango_api.commands, timeout=30)
    [command] = mango_api.commands
    assert (command["to_number"], command["from"]["extension"]) == (OTHER_CLIENT, "106")
    assert "line_number" not in command  # no request or campaign known for this number
    with signing():
        deliver(app.test_client(), [("result/callback", {"command_id": command["command_id"], "result": 3100})],
                prefix="/api/webhook/mango/")
        drain(committed)
    job = job_of(committed, accepted.json["job_id"])
    assert job.status == "failed" and "код 3100" in job.error

    # Mango refusing the command itself (bad extension): the job fails at once, not retried.
    mango_api.fail_next(200, {"result": 3100})
    second = operator_client.post("/api/calls/callback", json={"phone": "+7 903 555-66-77"})
    wait_for(lambda: job_of(committed, second.json["job_id"]).status == "failed", timeout=30)
    assert "Звонок не начат" in job_of(committed, second.json["job_id"]).error
    assert len(mango_api.commands) == 1


def test_mango_extension_is_set_by_the_manager(app, committed):
    manager, _ = signed_in(app, "manager")
    first, second = create_user("callcentr"), create_user("callcentr")
    set_first = manager.put(f"/api/users/employees/{first.id}", json={"mango_extension": "105"})
    assert set_first.status_code == 200 and set_first.json["mango_extension"] == "105"
    taken = manager.put(f"/api/users/employees/{second.id}", json={"mango_extension": "105"})
    assert (taken.status_code, taken.json["code"]) == (409, "mango_extension_taken")
    bad = manager.put(f"/api/users/employees/{second.id}", json={"mango_extension": "10a"})
    assert bad.status_code == 422 and "Добавочный номер" in bad.json["detail"]
    cleared = manager.put(f"/api/users/employees/{first.id}", json={"mango_extension": ""})
    assert cleared.status_code == 200 and cleared.json["mango_extension"] is None


def test_stale_items_expire_and_unanswered_commands_fail(app, committed):
    from models import Session
    from tasks.callbacks import expire

    stale = open_item(minutes=(settings.CALLBACK_EXPIRE_HOURS + 1) * 60)
    recent = open_item(OTHER_CLIENT, minutes=60)
    started = datetime.now(timezone.utc) - timedelta(minutes=11)
    waiting = Job(kind="calls.callback", status="running", params={"command_id": "c-1", "sent": True},
                  started_at=started)
    fresh = Job(kind="calls.callback", status="running", params={"command_id": "c-2", "sent": True},
                started_at=datetime.now(timezone.utc))
    Session.add_all([waiting, fresh])
    Session.commit()
    assert expire.run() == {"expired": 1, "unanswered": 1}
    manager, _ = signed_in(app, "manager")
    assert {i["id"]: i["status"] for i in items(manager)} == {stale: "expired", recent: "open"}
    assert [i["id"] for i in items(manager, status="expired")] == [stale]
    assert job_of(committed, waiting.id).status == "failed" and "result/callback" in job_of(committed, waiting.id).error
    assert job_of(committed, fresh.id).status == "running"
