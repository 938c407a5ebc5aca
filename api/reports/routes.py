"""Reports: dashboard, call centre, cities, masters, advertising campaigns, cash book, ROI.

Figures come from models.reports (SQL aggregates); this module checks who may ask for which city,
and answers JSON, or CSV for Excel with `format=csv`.
"""
from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable

from flask import Response, g
from flask.views import MethodView

from api.extensions import Blueprint
from api.reports import schemas
from api.security import require_city, roles_required
from models.core.business_time import to_local
from models.core.enums import AVITOLOG, CALLCENTR, DIRECTOR, MANAGER
from models.reports import queries as reports
from models.reports import roi

blp = Blueprint("reports", __name__, url_prefix="/api/reports",
                description="Reports computed on the server (JSON, or CSV with format=csv)")

OFFICE = (MANAGER, DIRECTOR)
NOT_SET = "Не указан"


def _filters(args: dict) -> reports.Filters:
    """The filters of the request, after checking that the reader may see the chosen city."""
    user = g.current_user
    if args.get("city_id") is not None:
        require_city(user, args["city_id"])
    return reports.Filters(
        date_from=args.get("date_from"),
        date_to=args.get("date_to"),
        city_id=args.get("city_id"),
        status=args.get("status"),
        search=args.get("search"),
    )


def _scope() -> reports.Scope:
    return reports.Scope.of(g.current_user)


# ---- CSV ----------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    """Numbers as Excel in a Russian locale reads them (decimal comma); text guarded against being
    taken for a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "да" if value else "нет"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return f"{value:.2f}".replace(".", ",")
    if isinstance(value, float):
        return f"{value:.1f}".replace(".", ",")
    if isinstance(value, datetime):
        return to_local(value).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


def csv_response(name: str, args: dict, columns: list[tuple[str, str]], rows: Iterable[dict]) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([header for _key, header in columns])
    for row in rows:
        writer.writerow([_cell(row.get(key)) for key, _header in columns])
    first, last = args.get("date_from"), args.get("date_to")
    filename = f"report-{name}"
    if first and last:
        filename += f"-{first.isoformat()}-{last.isoformat()}"
    elif first:
        filename += f"-from-{first.isoformat()}"
    elif last:
        filename += f"-to-{last.isoformat()}"
    return Response(
        ("\ufeff" + buffer.getvalue()).encode("utf-8"),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def _answer(name: str, args: dict, data: dict, to_csv: Callable[[dict], tuple[list, Iterable[dict]]]):
    if args.get("format") == "csv":
        columns, rows = to_csv(data)
        return csv_response(name, args, columns, rows)
    return data


# ---- CSV tables of the reports with several parts -----------------------------------------------

def _callcenter_rows(data: dict) -> Iterable[dict]:
    def flat(section: str, key: Any, row: dict) -> dict:
        return {"section": section, "key": key, **row, **{f"status:{s}": n for s, n in row["by_status"].items()}}

    yield flat("Итого", "Все заявки", data["totals"])
    for row in data["cities"]:
        yield flat("Город", row["city_name"], row)
    for row in data["operators"]:
        yield flat("Оператор", row["call_center_name"] or NOT_SET, row)
    for row in data["days"]:
        yield flat("День", row["date"], row)


def _cash_rows(data: dict) -> Iterable[dict]:
    yield {"section": "Итого", "name": "Все города", **data["summary"]}
    for row in data["cities"]:
        yield {"section": "Город", **row, "name": row["city_name"]}
    for row in data["types"]:
        yield {"section": "Тип операции", **row}


def _with_summary(label_key: str, label: str):
    def table(data: dict) -> Iterable[dict]:
        yield from data["rows"]
        yield {**data["summary"], label_key: label}

    return table


# ---- endpoints ----------------------------------------------------------------------------------

@blp.route("/dashboard")
class Dashboard(MethodView):
    @roles_required(*OFFICE)
    @blp.arguments(schemas.ReportArgs, location="query")
    @blp.response(200, schemas.DashboardSchema)
    def get(self, args):
        """Dashboard figures: requests by group, cash book, masters, cities (admin, manager, director)."""
        data = reports.dashboard(_filters(args), _scope())
        return _answer("dashboard", args, data, lambda d: (schemas.DASHBOARD_COLUMNS, [d]))


@blp.route("/callcenter")
class Callcenter(MethodView):
    @roles_required(*OFFICE, CALLCENTR)
    @blp.arguments(schemas.CallcenterArgs, location="query")
    @blp.response(200, schemas.CallcenterSchema)
    def get(self, args):
        """Call-centre report: every status and group, per city, per operator, per day."""
        data = reports.callcenter(_filters(args), _scope())
        return _answer("callcenter", args, data, lambda d: (schemas.CALLCENTER_COLUMNS, _callcenter_rows(d)))


@blp.route("/cities")
class Cities(MethodView):
    @roles_required(*OFFICE)
    @blp.arguments(schemas.ReportArgs, location="query")
    @blp.response(200, schemas.CitiesSchema)
    def get(self, args):
        """Per city: requests, cash book, active masters, average check; sorted by balance."""
        data = reports.cities(_filters(args), _scope())
        table = _with_summary("city_name", "Итого")
        return _answer("cities", args, data, lambda d: (schemas.CITIES_COLUMNS, table(d)))


@blp.route("/masters")
class Masters(MethodView):
    @roles_required(*OFFICE)
    @blp.arguments(schemas.ReportArgs, location="query")
    @blp.response(200, schemas.MastersSchema)
    def get(self, args):
        """Per master: requests by group and the money of completed requests; sorted by completed."""
        data = reports.masters(_filters(args), _scope())
        table = _with_summary("full_name", "Итого")
        return _answer("masters", args, data, lambda d: (schemas.MASTERS_COLUMNS, table(d)))


@blp.route("/advertising")
class Advertising(MethodView):
    @roles_required(*OFFICE)
    @blp.arguments(schemas.ReportArgs, location="query")
    @blp.response(200, schemas.AdvertisingSchema)
    def get(self, args):
        """Per advertising campaign: requests, completed, conversion, revenue; sorted by requests."""
        data = reports.advertising(_filters(args), _scope())
        table = _with_summary("name", "Итого")
        return _answer("advertising", args, data, lambda d: (schemas.ADVERTISING_COLUMNS, table(d)))


@blp.route("/cash")
class Cash(MethodView):
    @roles_required(*OFFICE)
    @blp.arguments(schemas.ReportArgs, location="query")
    @blp.response(200, schemas.CashSchema)
    def get(self, args):
        """Cash book per city and per transaction type, with opening and closing balances."""
        data = reports.cash(_filters(args), _scope())
        return _answer("cash", args, data, lambda d: (schemas.CASH_COLUMNS, _cash_rows(d)))


@blp.route("/roi")
class Roi(MethodView):
    @roles_required(*OFFICE, AVITOLOG)
    @blp.arguments(schemas.RoiArgs, location="query")
    @blp.response(200, schemas.RoiSchema)
    def get(self, args):
        """ROI per campaign and line, per city or per month (admin, manager, avitolog; a director their city).

        Calls, unique callers, missed and called back, requests, completed, revenue, company income (Σ
        master_handover of completed), spend (periods prorated by days), cost per call, request and
        completed job, ROMI = (income − spend) / spend in %. Calls on a line without a campaign are
        «Без кампании». CSV with format=csv."""
        group = args.get("group") or "campaign"
        data = roi.roi(_filters(args), _scope(), group)
        columns = [*schemas.ROI_KEY_COLUMNS[group], *schemas.ROI_FIGURE_COLUMNS]
        label_key = columns[1][0] if group == "campaign" else columns[0][0]

        def table(d: dict) -> Iterable[dict]:
            yield from d["rows"]
            yield {**d["summary"], label_key: "Итого"}

        return _answer(f"roi-{group}", args, data, lambda d: (columns, table(d)))
