"""Alerts (admin): what fired and resolved, acknowledging a firing alert, silencing a rule.

The rules are evaluated by the workers every minute (tasks/alerts.py); this API only reads and
records the operators' decisions. Acknowledged alerts are not repeated after the cooldown; a
silenced rule is still evaluated and stored but sends nothing to Telegram until the silence ends.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import g
from flask.views import MethodView
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from api.alerts.schemas import AlertListArgs, AlertSchema, RuleSchema, SilenceBody, SilenceSchema
from api.auth.schemas import MessageSchema
from api.errors import ApiError
from api.extensions import Blueprint
from api.listing import json_response, list_response
from api.resources import deleted
from api.security import roles_required
from models.core.db import Session
from models.ops.alerts import RULES, is_disabled
from models.ops.tables import Alert, AlertSilence
from settings import settings

blp = Blueprint("alerts", __name__, url_prefix="/api/alerts", description="Alerts, acknowledgements, silences")

NOT_FOUND = "Оповещение не найдено"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _title(rule: str) -> str:
    info = RULES.get(rule)
    return info.title if info else rule


def serialize_alert(row) -> dict:
    return {
        "id": row.id, "rule": row.rule, "title": _title(row.rule), "severity": row.severity,
        "status": row.status, "message": row.message, "value": row.value, "fired_at": _iso(row.fired_at),
        "resolved_at": _iso(row.resolved_at), "last_notified_at": _iso(row.last_notified_at),
        "acknowledged_at": _iso(row.acknowledged_at), "acknowledged_by_id": row.acknowledged_by_id,
        "notifications": row.notifications or [],
    }


def serialize_silence(row) -> dict:
    return {"rule": row.rule, "title": _title(row.rule), "until": _iso(row.until), "reason": row.reason,
            "created_by_id": row.created_by_id, "created_at": _iso(row.created_at)}


def _now() -> datetime:
    return datetime.now(timezone.utc)


@blp.route("")
class AlertCollection(MethodView):
    @roles_required()
    @blp.arguments(AlertListArgs, location="query")
    @blp.response(200, AlertSchema(many=True))
    def get(self, args):
        """Alerts, newest first; filters: status (firing / resolved), rule (admin)."""
        a = Alert.__table__.c
        stmt = select(a.id, a.rule, a.severity, a.status, a.message, a.value, a.fired_at, a.resolved_at,
                      a.last_notified_at, a.acknowledged_at, a.acknowledged_by_id, a.notifications)
        if args.get("status"):
            stmt = stmt.where(a.status == args["status"])
        if args.get("rule"):
            stmt = stmt.where(a.rule == args["rule"])
        return list_response(stmt.order_by(a.fired_at.desc(), a.id.desc()), serialize_alert, args)


@blp.route("/<int:alert_id>/acknowledge")
class AlertAcknowledge(MethodView):
    @roles_required()
    @blp.response(200, AlertSchema)
    @blp.alt_response(409, description="The alert has already resolved")
    def post(self, alert_id: int):
        """Acknowledge a firing alert (admin): someone is on it, so it is not repeated after the
        cooldown. A second acknowledgement keeps the first one's time and author."""
        alert = Session.get(Alert, alert_id) if 0 < alert_id <= 2**31 - 1 else None
        if alert is None:
            raise ApiError(404, NOT_FOUND, code="not_found")
        if alert.status != "firing":
            raise ApiError(409, "Оповещение уже снято: подтверждать нечего", code="alert_resolved")
        Session.execute(update(Alert).where(Alert.id == alert.id, Alert.acknowledged_at.is_(None))
                        .values(acknowledged_at=_now(), acknowledged_by_id=g.current_user.id))
        Session.commit()
        Session.refresh(alert)
        return json_response(serialize_alert(alert))


@blp.route("/rules")
class AlertRules(MethodView):
    @roles_required()
    @blp.response(200, RuleSchema(many=True))
    def get(self):
        """Every rule: severity, whether it is enabled, firing, silenced (admin)."""
        now = _now()
        silences = {s.rule: s.until for s in Session.scalars(select(AlertSilence).where(AlertSilence.until > now))}
        firing = set(Session.scalars(select(Alert.rule).where(Alert.status == "firing")))
        return json_response([
            {"rule": info.name, "title": info.title, "severity": info.severity,
             "enabled": not is_disabled(info.name, settings.ALERT_RULES_DISABLED),
             "firing": info.name in firing, "silenced_until": _iso(silences.get(info.name))}
            for info in RULES.values()
        ])


@blp.route("/silences")
class SilenceCollection(MethodView):
    @roles_required()
    @blp.response(200, SilenceSchema(many=True))
    def get(self):
        """Silences in force, the one ending first first (admin)."""
        rows = Session.scalars(select(AlertSilence).where(AlertSilence.until > _now())
                               .order_by(AlertSilence.until, AlertSilence.rule)).all()
        return json_response([serialize_silence(row) for row in rows])

    @roles_required()
    @blp.arguments(SilenceBody)
    @blp.response(201, SilenceSchema)
    def post(self, body):
        """Silence a rule for some minutes (admin): it is still evaluated and stored, nothing is
        sent to Telegram. Silencing a silenced rule again replaces its end and reason."""
        values = {"rule": body["rule"], "until": _now() + timedelta(minutes=body["minutes"]),
                  "reason": body.get("reason"), "created_by_id": g.current_user.id, "created_at": _now()}
        row = Session.execute(
            insert(AlertSilence).values(**values)
            .on_conflict_do_update(index_elements=["rule"], set_={k: v for k, v in values.items() if k != "rule"})
            .returning(AlertSilence)
        ).scalar_one()
        Session.commit()
        return json_response(serialize_silence(row), 201)


@blp.route("/silences/<rule>")
class SilenceItem(MethodView):
    @roles_required()
    @blp.response(200, MessageSchema)
    def delete(self, rule: str):
        """End a rule's silence now (admin)."""
        row = Session.get(AlertSilence, rule) if rule in RULES else None
        if row is None or row.until <= _now():
            raise ApiError(404, "Это правило сейчас не заглушено", code="not_found")
        Session.delete(row)
        Session.commit()
        return deleted("Заглушение снято")
