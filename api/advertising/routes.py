"""Campaign spend: POST/GET/PUT/DELETE /api/advertising-campaigns/<id>/spend (admin, manager, avitolog).

Each row is an amount paid for the campaign over a period (a calendar month or a range of days);
the ROI report (GET /api/reports/roi) prorates it by days. The rules are in models/advertising/rules.py.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from flask import g
from flask.views import MethodView
from sqlalchemy import select

from api.advertising.schemas import SpendCreateSchema, SpendSchema, SpendUpdateSchema
from api.auth.schemas import MessageSchema
from api.errors import ApiError
from api.extensions import Blueprint
from api.listing import json_response, list_response
from api.resources import commit_or_409, deleted, get_or_404
from api.schemas import ListArgs
from api.security import roles_required
from models.advertising.rules import month_period, spend_values
from models.advertising.tables import CampaignSpend
from models.core.db import Session
from models.core.enums import AVITOLOG, MANAGER
from models.directories.tables import AdvertisingCampaign

blp = Blueprint("advertising", __name__, url_prefix="/api",
                description="Spend of the advertising campaigns (per month or range of days)")

CAMPAIGN_NOT_FOUND = "Рекламная кампания не найдена"
SPEND_NOT_FOUND = "Запись о расходе не найдена"
EDITORS = (MANAGER, AVITOLOG)


def _month_of(first: date, last: date) -> str | None:
    text = first.strftime("%Y-%m")
    return text if (first, last) == month_period(text) else None


def spend_row(spend) -> dict[str, Any]:
    return {
        "id": spend.id,
        "campaign_id": spend.campaign_id,
        "date_from": spend.date_from.isoformat(),
        "date_to": spend.date_to.isoformat(),
        "month": _month_of(spend.date_from, spend.date_to),
        "days": (spend.date_to - spend.date_from).days + 1,
        "amount": float(spend.amount),
        "comment": spend.comment,
        "created_by_id": spend.created_by_id,
        "created_at": spend.created_at,
        "updated_at": spend.updated_at,
    }


def _spend_of(campaign_id: int, spend_id: int) -> CampaignSpend:
    get_or_404(AdvertisingCampaign, campaign_id, CAMPAIGN_NOT_FOUND)
    spend = get_or_404(CampaignSpend, spend_id, SPEND_NOT_FOUND)
    if spend.campaign_id != campaign_id:
        raise ApiError(404, SPEND_NOT_FOUND, code="not_found")
    return spend


@blp.route("/advertising-campaigns/<int:campaign_id>/spend")
class SpendList(MethodView):
    @roles_required(*EDITORS)
    @blp.arguments(ListArgs, location="query")
    @blp.response(200, SpendSchema(many=True))
    @blp.alt_response(404, description="No such campaign")
    def get(self, args, campaign_id: int):
        """The campaign's spend, by period (admin, manager, avitolog)."""
        get_or_404(AdvertisingCampaign, campaign_id, CAMPAIGN_NOT_FOUND)
        stmt = (select(CampaignSpend).where(CampaignSpend.campaign_id == campaign_id)
                .order_by(CampaignSpend.date_from, CampaignSpend.id))
        return list_response(stmt, lambda row: spend_row(row[0]), args)

    @roles_required(*EDITORS)
    @blp.arguments(SpendCreateSchema)
    @blp.response(201, SpendSchema)
    @blp.alt_response(404, description="No such campaign")
    def post(self, body, campaign_id: int):
        """Record spend (admin, manager, avitolog).

        A calendar month (`month`: "2026-03") or a range of days (`date_from`, `date_to`, inclusive), and
        `amount` (non-negative, at most two decimals)."""
        get_or_404(AdvertisingCampaign, campaign_id, CAMPAIGN_NOT_FOUND)
        spend = CampaignSpend(campaign_id=campaign_id, created_by_id=g.current_user.id, **spend_values(body))
        Session.add(spend)
        commit_or_409(invalid_reference=CAMPAIGN_NOT_FOUND)
        return json_response(spend_row(spend), 201)


@blp.route("/advertising-campaigns/<int:campaign_id>/spend/<int:spend_id>")
class SpendItem(MethodView):
    @roles_required(*EDITORS)
    @blp.response(200, SpendSchema)
    @blp.alt_response(404, description="No such campaign, or no such spend row of it")
    def get(self, campaign_id: int, spend_id: int):
        """One spend row of the campaign."""
        return json_response(spend_row(_spend_of(campaign_id, spend_id)))

    @roles_required(*EDITORS)
    @blp.arguments(SpendUpdateSchema)
    @blp.response(200, SpendSchema)
    @blp.alt_response(404, description="No such campaign, or no such spend row of it")
    def put(self, body, campaign_id: int, spend_id: int):
        """Change spend (admin, manager, avitolog); only the fields sent change."""
        spend = _spend_of(campaign_id, spend_id)
        for name, value in spend_values(body, current=(spend.date_from, spend.date_to)).items():
            setattr(spend, name, value)
        commit_or_409()
        return json_response(spend_row(spend))

    @roles_required(*EDITORS)
    @blp.response(200, MessageSchema)
    @blp.alt_response(404, description="No such campaign, or no such spend row of it")
    def delete(self, campaign_id: int, spend_id: int):
        """Delete spend (admin, manager, avitolog)."""
        Session.delete(_spend_of(campaign_id, spend_id))
        commit_or_409()
        return deleted()
