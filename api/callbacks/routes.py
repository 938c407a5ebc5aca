"""The callback queue (missed callers to call back) and click-to-call.

The queue is worked by the call centre, directors (items of their city), managers and admins. An
operator claims an item (one conditional UPDATE: of two operators claiming at once one gets 200, the
other 409) and closes it with an outcome; items also close by themselves from the Mango events
(models/callbacks/rules.py). Click-to-call places a call from the user's Mango extension to a client
(by phone, request or callback item): 202 and a job, completed by Mango's result/callback.
"""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from sqlalchemy import and_, func, literal_column, select
from sqlalchemy.orm import aliased

from api.callbacks.schemas import CallbackQuerySchema, CallbackSchema, CloseSchema, PlaceCallSchema
from api.errors import ApiError
from api.extensions import Blueprint
from api.jobs.schemas import JobAcceptedSchema
from api.listing import json_response, list_response
from api.security import roles_required
from models.access import requests_visible_to
from models.callbacks import commands, rules
from models.callbacks.tables import Callback
from models.core.db import Session
from models.directories.tables import AdvertisingCampaign, City
from models.people.tables import User
from models.requests.tables import Request
from tasks import queue

blp = Blueprint("callbacks", __name__, url_prefix="/api", description="Missed callers called back; click-to-call")

PREVIOUS_REQUESTS = 10
claimer = aliased(User, name="claimer")


def _iso(value):
    return None if value is None else value.isoformat()


def callback_columns():
    previous = (
        select(Request.id, Request.status, Request.created_at)
        .where(Request.client_phone == Callback.phone)
        .order_by(Request.created_at.desc(), Request.id.desc())
        .limit(PREVIOUS_REQUESTS)
        .correlate(Callback)
        .subquery("prev")
    )
    previous_json = (
        select(func.coalesce(func.jsonb_agg(literal_column("to_jsonb(prev)")), func.jsonb_build_array()))
        .select_from(previous)
        .scalar_subquery()
    )
    return (
        select(Callback.__table__, City.name.label("city_name"), AdvertisingCampaign.name.label("campaign_name"),
               claimer.full_name.label("claimed_by_name"),
               (and_(Callback.status == "open", Callback.due_at < func.now())).label("overdue"),
               previous_json.label("previous_requests"))
        .outerjoin(City, City.id == Callback.city_id)
        .outerjoin(AdvertisingCampaign, AdvertisingCampaign.id == Callback.campaign_id)
        .outerjoin(claimer, claimer.id == Callback.claimed_by_id)
    )


def serialize(row) -> dict:
    return {
        "id": row.id, "phone": row.phone, "status": row.status, "overdue": bool(row.overdue),
        "city_id": row.city_id, "city_name": row.city_name, "campaign_id": row.campaign_id,
        "campaign_name": row.campaign_name, "line_number": row.line_number, "missed_calls": row.missed_calls,
        "first_missed_at": _iso(row.first_missed_at), "last_missed_at": _iso(row.last_missed_at),
        "due_at": _iso(row.due_at), "claimed_by_id": row.claimed_by_id, "claimed_by_name": row.claimed_by_name,
        "claimed_at": _iso(row.claimed_at), "closed_at": _iso(row.closed_at), "closed_by_id": row.closed_by_id,
        "outcome": row.outcome, "request_id": row.request_id, "closing_call_id": row.closing_call_id,
        "previous_requests": row.previous_requests or [],
        "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at),
    }


def apply_filters(stmt, args: dict):
    if args.get("status"):
        stmt = stmt.where(Callback.status == args["status"])
    if args.get("city_id") is not None:
        stmt = stmt.where(Callback.city_id == args["city_id"])
    if args.get("campaign_id") is not None:
        stmt = stmt.where(Callback.campaign_id == args["campaign_id"])
    if args.get("overdue") is not None:
        overdue = rules.overdue_condition()
        stmt = stmt.where(overdue if args["overdue"] else ~overdue)
    return stmt


def one(callback_id: int) -> dict:
    return serialize(Session.execute(callback_columns().where(Callback.id == callback_id)).one())


@blp.route("/callbacks")
class CallbackCollection(MethodView):
    @roles_required(*rules.CALLBACK_ROLES)
    @blp.arguments(CallbackQuerySchema, location="query")
    @blp.response(200, CallbackSchema(many=True))
    def get(self, args):
        """Callback items, open ones first by due time: filters by status, city, campaign, overdue."""
        stmt = apply_filters(callback_columns().where(rules.callbacks_visible_to(g.current_user)), args)
        stmt = stmt.order_by((Callback.status == "open").desc(), Callback.due_at.asc(), Callback.id.asc())
        return list_response(stmt, serialize, args)


@blp.route("/callbacks/<int:callback_id>/claim")
class CallbackClaim(MethodView):
    @roles_required(*rules.CALLBACK_ROLES)
    @blp.response(200, CallbackSchema)
    @blp.alt_response(409, description="closed already, or another operator holds it")
    def post(self, callback_id: int):
        """Take an open item: you hold it for CALLBACK_CLAIM_MIN minutes or until you close it."""
        rules.claim(callback_id, g.current_user)
        Session.commit()
        return json_response(one(callback_id))


@blp.route("/callbacks/<int:callback_id>/close")
class CallbackClose(MethodView):
    @roles_required(*rules.CALLBACK_ROLES)
    @blp.arguments(CloseSchema)
    @blp.response(200, CallbackSchema)
    @blp.alt_response(409, description="closed already, or another operator holds it")
    def post(self, body, callback_id: int):
        """Close an item with its outcome (and the request it led to)."""
        request_id = body.get("request_id")
        if request_id is not None and Session.scalar(
                select(Request.id).where(Request.id == request_id, requests_visible_to(g.current_user))) is None:
            raise ApiError(422, "Заявка не найдена", code="unknown_request",
                           errors={"request_id": ["Заявка не найдена"]})
        rules.close(callback_id, g.current_user, body["outcome"], request_id)
        Session.commit()
        return json_response(one(callback_id))


@blp.route("/calls/callback")
class PlaceCall(MethodView):
    @roles_required(*rules.CALLBACK_ROLES)
    @blp.arguments(PlaceCallSchema)
    @blp.response(202, JobAcceptedSchema)
    @blp.alt_response(409, description="Mango is not configured, or you have no Mango extension")
    def post(self, body):
        """Call a client from your Mango extension (by phone, request or callback item): 202 and a job.

        Mango rings your phone first, then the client, on the campaign's tracking line when known. The job
        succeeds when Mango reports the command done (result/callback), or fails with Mango's reason."""
        user_id = g.current_user.id
        params = rules.call_params(g.current_user, phone=body.get("phone"), request_id=body.get("request_id"),
                                   callback_id=body.get("callback_id"))
        job = queue.enqueue_job(commands.JOB_KIND, "callbacks.place_call", params, created_by_id=user_id)
        return json_response({"job_id": str(job.id), "status": job.status}, status=202)
