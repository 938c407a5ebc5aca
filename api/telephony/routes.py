"""Calls folded from Mango events, and the inbox of deliveries that could not be processed.

Calls are visible like requests: admin, manager and the call centre see all; a director sees the
calls of their city (the city of the call's campaign or request; all cities without a city of their
own). The inbox (failed deliveries, replay) is for administrators.
"""
from __future__ import annotations

from datetime import timedelta

from flask import g
from flask.views import MethodView
from sqlalchemy import and_, false, or_, select, true, update
from sqlalchemy.orm import aliased

from api.errors import ApiError
from api.extensions import Blueprint
from api.listing import json_response, list_response
from api.resources import get_or_404
from api.security import roles_required
from api.telephony.schemas import (
    CallDetailSchema,
    CallQuerySchema,
    CallSchema,
    InboxEventSchema,
    InboxQuerySchema,
    ReplaySchema,
)
from models.access import requests_visible_to
from models.core.business_time import local_day_start
from models.core.db import Session
from models.core.enums import ADMIN, CALLCENTR, DIRECTOR, MANAGER
from models.core.phones import normalize_phone
from models.directories.tables import AdvertisingCampaign
from models.people.tables import User
from models.recordings.tables import Recording
from models.requests.tables import Request
from models.telephony.tables import Call, CallLeg, MangoEvent
from tasks.queue import LATER, enqueue

blp = Blueprint("calls", __name__, url_prefix="/api", description="Calls (Mango Office) and the webhook inbox")

CALL_ROLES = (MANAGER, DIRECTOR, CALLCENTR)
NOT_FOUND = "Звонок не найден"

campaign = aliased(AdvertisingCampaign, name="call_campaign")
request_row = aliased(Request, name="call_request")


# ---- queries ----------------------------------------------------------------------------------------

def _iso(value):
    return None if value is None else value.isoformat()


def call_columns():
    c = Call.__table__.c
    return (
        select(c.id, c.entry_id, c.direction, c.line_number, c.campaign_id, c.client_phone, c.operator_extension,
               c.started_at, c.answered_at, c.ended_at, c.talk_seconds, c.disconnect_reason, c.result, c.missed,
               c.summary_received, c.request_id, c.created_at, c.updated_at,
               campaign.name.label("campaign_name"), campaign.city_id.label("campaign_city_id"),
               request_row.city_id.label("request_city_id"))
        .select_from(Call)
        .outerjoin(campaign, campaign.id == Call.campaign_id)
        .outerjoin(request_row, request_row.id == Call.request_id)
    )


def calls_visible_to(user: User):
    role = user.role_name
    if role in (ADMIN, MANAGER, CALLCENTR):
        return true()
    if role == DIRECTOR:
        if user.city_id is None:
            return true()
        return or_(request_row.city_id == user.city_id,
                   and_(request_row.id.is_(None), campaign.city_id == user.city_id))
    return false()


def serialize_call(row) -> dict:
    return {
        "id": row.id,
        "entry_id": row.entry_id,
        "direction": row.direction,
        "line_number": row.line_number,
        "campaign_id": row.campaign_id,
        "campaign_name": row.campaign_name,
        "city_id": row.request_city_id if row.request_city_id is not None else row.campaign_city_id,
        "client_phone": row.client_phone,
        "operator_extension": row.operator_extension,
        "started_at": _iso(row.started_at),
        "answered_at": _iso(row.answered_at),
        "ended_at": _iso(row.ended_at),
        "talk_seconds": row.talk_seconds,
        "disconnect_reason": row.disconnect_reason,
        "result": row.result,
        "missed": row.missed,
        "summary_received": row.summary_received,
        "request_id": row.request_id,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def with_details(rows) -> list[dict]:
    """Calls with their legs and recordings (two queries for all of them)."""
    calls = [serialize_call(row) for row in rows]
    ids = [call["id"] for call in calls]
    legs: dict[int, list] = {i: [] for i in ids}
    recordings: dict[int, list] = {i: [] for i in ids}
    if ids:
        for leg in Session.scalars(select(CallLeg).where(CallLeg.call_pk.in_(ids)).order_by(
                CallLeg.started_at.asc().nulls_last(), CallLeg.id)):
            legs[leg.call_pk].append({
                "call_id": leg.call_id, "from_number": leg.from_number, "to_number": leg.to_number,
                "extension": leg.extension, "state": leg.state, "seq": leg.seq,
                "started_at": _iso(leg.started_at), "connected_at": _iso(leg.connected_at),
                "ended_at": _iso(leg.ended_at), "disconnect_reason": leg.disconnect_reason,
            })
        for rec in Session.scalars(select(Recording).where(Recording.call_id.in_(ids)).order_by(Recording.id)):
            recordings[rec.call_id].append({
                "id": rec.id, "storage_path": rec.storage_path, "size_bytes": rec.size_bytes,
                "mime_type": rec.mime_type, "mango_recording_id": rec.mango_recording_id,
                "created_at": _iso(rec.created_at),
            })
    for call in calls:
        call["legs"] = legs[call["id"]]
        call["recordings"] = recordings[call["id"]]
    return calls


def apply_call_filters(stmt, args: dict):
    conditions = []
    if args.get("date_from"):
        conditions.append(Call.started_at >= local_day_start(args["date_from"]))
    if args.get("date_to"):
        conditions.append(Call.started_at < local_day_start(args["date_to"] + timedelta(days=1)))
    if args.get("direction"):
        conditions.append(Call.direction == args["direction"])
    if args.get("missed") is not None:
        conditions.append(Call.missed.is_(args["missed"]))
    if args.get("campaign_id") is not None:
        conditions.append(Call.campaign_id == args["campaign_id"])
    if args.get("request_id") is not None:
        conditions.append(Call.request_id == args["request_id"])
    digits = "".join(ch for ch in (args.get("phone") or "") if ch.isdigit())
    if digits:
        wanted = normalize_phone(digits) if len(digits) >= 10 else digits
        conditions.append(Call.client_phone.contains(wanted, autoescape=True))
    return stmt.where(and_(*conditions)) if conditions else stmt


# ---- routes -----------------------------------------------------------------------------------------

@blp.route("/calls")
class CallCollection(MethodView):
    @roles_required(*CALL_ROLES)
    @blp.arguments(CallQuerySchema, location="query")
    @blp.response(200, CallSchema(many=True))
    def get(self, args):
        """Calls, newest first: filters by day range, direction, missed, campaign, request, phone."""
        stmt = apply_call_filters(call_columns().where(calls_visible_to(g.current_user)), args)
        stmt = stmt.order_by(Call.started_at.desc().nulls_last(), Call.id.desc())
        return list_response(stmt, serialize_call, args)


@blp.route("/calls/<int:call_id>")
class CallItem(MethodView):
    @roles_required(*CALL_ROLES)
    @blp.response(200, CallDetailSchema)
    def get(self, call_id: int):
        """One call with its legs and recordings."""
        if not 0 < call_id <= 2 ** 62:
            raise ApiError(404, NOT_FOUND, code="not_found")
        row = Session.execute(call_columns().where(Call.id == call_id, calls_visible_to(g.current_user))).first()
        if row is None:
            raise ApiError(404, NOT_FOUND, code="not_found")
        return json_response(with_details([row])[0])


@blp.route("/requests/<int:request_id>/calls")
class RequestCalls(MethodView):
    @roles_required(*CALL_ROLES)
    @blp.response(200, CallDetailSchema(many=True))
    def get(self, request_id: int):
        """The calls of a request, oldest first, with legs and recordings."""
        get_or_404(Request, request_id, "Заявка не найдена")
        visible = Session.scalar(select(Request.id).where(Request.id == request_id,
                                                          requests_visible_to(g.current_user)))
        if visible is None:
            raise ApiError(404, "Заявка не найдена", code="not_found")
        rows = Session.execute(
            call_columns().where(Call.request_id == request_id)
            .order_by(Call.started_at.asc().nulls_last(), Call.id)
        ).all()
        return json_response(with_details(rows))


@blp.route("/webhook/mango/events")
class InboxEvents(MethodView):
    @roles_required(ADMIN)
    @blp.arguments(InboxQuerySchema, location="query")
    @blp.response(200, InboxEventSchema(many=True))
    def get(self, args):
        """Inbox deliveries by status (failed by default), newest first (admin)."""
        m = MangoEvent.__table__.c
        stmt = select(m.id, m.event_type, m.entry_id, m.status, m.attempts, m.last_error, m.received_at,
                      m.processed_at, m.payload, m.raw_body).where(m.status == args["status"])
        if args.get("event_type"):
            stmt = stmt.where(m.event_type == args["event_type"])
        stmt = stmt.order_by(m.received_at.desc(), m.id.desc())
        return list_response(stmt, lambda row: {
            "id": row.id, "event_type": row.event_type, "entry_id": row.entry_id, "status": row.status,
            "attempts": row.attempts, "last_error": row.last_error, "received_at": _iso(row.received_at),
            "processed_at": _iso(row.processed_at), "payload": row.payload, "raw_body": row.raw_body,
        }, args)


@blp.route("/webhook/mango/events/<int:event_id>/replay")
class InboxReplay(MethodView):
    @roles_required(ADMIN)
    @blp.response(202, ReplaySchema)
    def post(self, event_id: int):
        """Process a failed delivery again (admin): back to pending, then queued."""
        event = get_or_404(MangoEvent, event_id, "Событие не найдено")
        if event.status == "processed":
            raise ApiError(409, "Событие уже обработано", code="already_processed")
        Session.execute(update(MangoEvent).where(MangoEvent.id == event.id)
                        .values(status="pending", processed_at=None))
        Session.commit()
        queued = enqueue("telephony.process_event", event.id, if_down=LATER)  # this row alone, as it failed
        return json_response({"id": event.id, "status": "pending", "queued": queued}, status=202)
