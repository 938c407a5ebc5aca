"""Reports (dashboard, call centre, cities, masters, campaigns, cash) computed in SQL with the Russian statuses.

Each report is a few GROUP BY statements over indexed columns, with conditional aggregates
(`count(*) FILTER (WHERE status IN ...)`) or counts per (key, status), so its cost is a pass or
three over the rows of the date range; Python only shapes the aggregate rows that come back.

Every function takes the `Filters` and the reader's `Scope` (row visibility from models.access)
and returns plain dicts: counts as int, money as Decimal (kopecks), rates as float percentages
with one decimal, days as dates.

Conventions shared by all reports:
- requests are dated by `created_at`, business-local days (`date_to` inclusive); transactions by
  `specified_date`;
- income = Σ positive amounts, expense = Σ of the negative amounts as a positive number,
  balance = income − expense;
- status groups are models.core.enums.STATUS_GROUPS (completed = Готово).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable

from sqlalchemy import ColumnElement, Date, and_, case, cast, func, literal_column, or_, select, tuple_

from models.access import city_of, city_scope_condition, request_scope, request_scope_condition, transaction_scope
from models.cash.tables import Transaction
from models.core.business_time import business_tz, local_day_start, today_local
from models.core.db import Session
from models.core.enums import MASTER, REQUEST_STATUSES, STATUS_GROUPS, STATUS_NEW
from models.core.phones import normalize_phone
from models.directories.tables import AdvertisingCampaign, City, Role, TransactionType
from models.people.tables import User
from models.reports.rollups import (
    BY_CAMPAIGN,
    BY_MASTER,
    BY_OPERATOR,
    TOTAL,
    RequestDayStats,
    TransactionDayStats,
    rollup_zone_matches,
)
from models.requests.money import to_money
from models.requests.tables import Request

GROUPS = tuple(STATUS_GROUPS)  # completed, in_progress, waiting, cancelled
# Reports read the daily rollups where they can answer (models/reports/rollups.py); off, every report reads
# the tables (the reference the rollups are compared with in the tests).
USE_ROLLUPS = True
ZERO = Decimal("0.00")
_TENTH = Decimal("0.1")


@dataclass(frozen=True)
class Filters:
    date_from: date | None = None
    date_to: date | None = None
    city_id: int | None = None
    status: str | None = None  # call-centre report only
    search: str | None = None  # call-centre report only


@dataclass(frozen=True)
class Scope:
    """What the reader may see, as models.access's shapes: which requests (`request_scope`: all,
    a city, a master's own or none), which cash-book rows (`transaction_scope`: all, a city or none),
    and the one city they are held to (None for every city) for cities, masters and campaigns. The
    conditions on the tables and on the daily rollups are both derived from the shapes; the rollups
    hold cities, not masters, so a master's own figures are read from the requests table."""

    request_scope: tuple[str, int | None] = ("all", None)
    transaction_scope: tuple[str, int | None] = ("all", None)
    city_id: int | None = None

    @classmethod
    def of(cls, user: User) -> Scope:
        return cls(request_scope(user), transaction_scope(user), city_of(user))

    @classmethod
    def everything(cls) -> Scope:
        return cls()

    @property
    def requests(self) -> ColumnElement[bool]:
        return request_scope_condition(*self.request_scope)

    @property
    def transactions(self) -> ColumnElement[bool]:
        return city_scope_condition(*self.transaction_scope, Transaction.city_id)


# ---- shared pieces ------------------------------------------------------------------------------

def rate(part: int, whole: int) -> float:
    """part / whole × 100 with one decimal; 0 when there is nothing to divide by."""
    if not whole:
        return 0.0
    return float((Decimal(part) * 100 / Decimal(whole)).quantize(_TENTH, rounding=ROUND_HALF_UP))


def average(total: Decimal, count: int) -> Decimal:
    return to_money(total / count) if count else ZERO


def _money(value: Any) -> Decimal:
    return to_money(value or 0)


def _cities(column, filters: Filters, scope: Scope) -> list[ColumnElement[bool]]:
    """`column` (a city id) held to the reader's city and to the chosen city."""
    conditions = []
    if scope.city_id is not None:
        conditions.append(column == scope.city_id)
    if filters.city_id is not None:
        conditions.append(column == filters.city_id)
    return conditions


def _created_between(first: date | None, last: date | None) -> list[ColumnElement[bool]]:
    conditions = []
    if first is not None:
        conditions.append(Request.created_at >= local_day_start(first))
    if last is not None:
        conditions.append(Request.created_at < local_day_start(last + timedelta(days=1)))
    return conditions


def _requests_where(filters: Filters, scope: Scope) -> list[ColumnElement[bool]]:
    return [scope.requests, *_cities(Request.city_id, filters, scope),
            *_created_between(filters.date_from, filters.date_to)]


_PHONE_LIKE = re.compile(r"[\d\s()+\-.]+")


def _search(text: str) -> ColumnElement[bool]:
    """A client's name (any part, any case) or, for text that looks like a phone, any run of the
    phone's digits."""
    conditions = [Request.client_name.icontains(text, autoescape=True)]
    digits = re.sub(r"\D", "", text)
    if digits and _PHONE_LIKE.fullmatch(text):
        conditions.append(Request.client_phone.contains(digits, autoescape=True))
        normalized = normalize_phone(digits)
        if normalized and normalized != digits:
            conditions.append(Request.client_phone.contains(normalized, autoescape=True))
    return or_(*conditions)


def _count(condition: ColumnElement[bool] | None = None):
    return func.count() if condition is None else func.count().filter(condition)


def _sum(column, condition: ColumnElement[bool] | None = None):
    total = func.sum(column) if condition is None else func.sum(column).filter(condition)
    return func.coalesce(total, 0)


def _counts(row) -> dict[str, int]:
    values = row._mapping
    return {"requests": int(values["requests"] or 0), **{group: int(values[group] or 0) for group in GROUPS}}


def _masters():
    """users joined to their role, for conditions on masters."""
    return select(User).join(Role, User.role_id == Role.id).where(Role.name == MASTER)


def _names(model, ids: Iterable[int]) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(Session.execute(select(model.id, model.name).where(model.id.in_(ids))).all())


def _days_between(day, filters: Filters) -> list[ColumnElement[bool]]:
    """The date range again, on the local day itself: the same rows as _created_between, stated so that
    the index on the local day (ix_requests_local_day_status) can serve a grouping by day."""
    conditions = []
    if filters.date_from is not None:
        conditions.append(day >= filters.date_from)
    if filters.date_to is not None:
        conditions.append(day <= filters.date_to)
    return conditions


def _local_day(column):
    # The zone as a literal (a validated zone name), so the same expression matches in GROUP BY.
    zone = business_tz().key.replace("'", "''")
    return cast(func.timezone(literal_column(f"'{zone}'"), column), Date)


# ---- where the figures come from: the tables, or the daily rollups ------------------------------------

class Requests:
    """The requests a report counts: the requests table, or the daily rollup of one dimension
    (models/reports/rollups.py) when it can answer the same (a reader held to a city or to nothing, no text
    search, the rollup's days in BUSINESS_TZ). Either way the same labelled aggregates come out."""

    def __init__(self, filters: Filters, scope: Scope, dimension: int = TOTAL, *, narrowed: bool = False,
                 rollup: bool | None = None):
        """`narrowed`: the status and search filters apply (the call-centre report's)."""
        shape, value = scope.request_scope
        if rollup is None:
            rollup = (USE_ROLLUPS and shape in ("all", "city") and not (narrowed and filters.search)
                      and rollup_zone_matches(Session))
        self.rollup = rollup
        s = RequestDayStats
        if rollup:
            self.status = s.status
            self.city_id = s.city_id
            self.master_id = s.key_id  # dimension BY_MASTER: 0 is "no master"
            self.campaign_id = func.nullif(s.key_id, 0)  # dimension BY_CAMPAIGN
            self.operator = case((s.key_id == 1, None), else_=s.key_text)  # dimension BY_OPERATOR
            self.day = s.day
            self.where = [s.dimension == dimension, city_scope_condition(shape, value, s.city_id),
                          *_cities(s.city_id, filters, scope), *_days_between(s.day, filters)]
            self.with_master = s.key_id != 0
        else:
            self.status = Request.status
            self.city_id = Request.city_id
            self.master_id = Request.master_id
            self.campaign_id = Request.advertising_campaign_id
            self.operator = Request.call_center_name
            self.day = _local_day(Request.created_at)
            self.where = _requests_where(filters, scope)
            self.with_master = Request.master_id.is_not(None)
        if narrowed and filters.status:
            self.where.append(self.status == filters.status)
        if narrowed and filters.search:
            self.where.append(_search(filters.search))

    def count(self, condition: ColumnElement[bool] | None = None):
        if not self.rollup:
            return _count(condition)
        total = func.sum(RequestDayStats.requests)
        return func.coalesce(total if condition is None else total.filter(condition), 0)

    def count_in(self, group: str):
        return self.count(self.status.in_(STATUS_GROUPS[group]))

    def group_counts(self) -> list:
        """requests, completed, in_progress, waiting, cancelled."""
        return [self.count().label("requests"), *(self.count_in(group).label(group) for group in GROUPS)]

    def completed_sum(self, name: str):
        """Σ result, master_handover or net_amount (`name`) of the completed requests."""
        column = {"result": RequestDayStats.result, "master_handover": RequestDayStats.handover,
                  "net_amount": RequestDayStats.net}[name] if self.rollup else getattr(Request, name)
        return _sum(column, self.status.in_(STATUS_GROUPS["completed"]))


class Transactions:
    """The cash-book rows a report sums: the transactions table or its daily rollup (for every
    reader: the rollup holds cities)."""

    def __init__(self, filters: Filters, scope: Scope, *, with_start: bool = True):
        self.rollup = rollup = USE_ROLLUPS
        if rollup:
            t = TransactionDayStats
            self.city_id, self.type_id, self.day = t.city_id, t.transaction_type_id, t.day
            self.where = [city_scope_condition(*scope.transaction_scope, t.city_id),
                          *_cities(t.city_id, filters, scope)]
        else:
            self.city_id, self.type_id, self.day = (Transaction.city_id, Transaction.transaction_type_id,
                                                    Transaction.specified_date)
            self.where = [scope.transactions, *_cities(Transaction.city_id, filters, scope)]
        if with_start and filters.date_from is not None:
            self.where.append(self.day >= filters.date_from)
        if filters.date_to is not None:
            self.where.append(self.day <= filters.date_to)

    def income(self, condition: ColumnElement[bool] | None = None):
        if self.rollup:
            return _sum(TransactionDayStats.income, condition)
        positive = Transaction.amount > 0
        return _sum(Transaction.amount, positive if condition is None else positive & condition)

    def expense(self, condition: ColumnElement[bool] | None = None):
        """Σ of the negative amounts (a negative number)."""
        if self.rollup:
            return _sum(TransactionDayStats.expense, condition)
        negative = Transaction.amount < 0
        return _sum(Transaction.amount, negative if condition is None else negative & condition)

    def count(self, condition: ColumnElement[bool] | None = None):
        if not self.rollup:
            return _count(condition)
        return _sum(TransactionDayStats.transactions, condition)

    def balance(self, condition: ColumnElement[bool] | None = None):
        if self.rollup:
            return _sum(TransactionDayStats.income + TransactionDayStats.expense, condition)
        return _sum(Transaction.amount, condition)


# ---- dashboard ----------------------------------------------------------------------------------

def dashboard(filters: Filters, scope: Scope, *, today: date | None = None) -> dict[str, Any]:
    source = Requests(filters, scope)
    requests = Session.execute(
        select(
            *source.group_counts(),
            source.count(source.status == STATUS_NEW).label("new"),
            source.completed_sum("result").label("revenue"),
            source.completed_sum("master_handover").label("handover"),
        ).where(*source.where)
    ).one()

    today = today or today_local()
    created_today = (
        select(func.count())
        .select_from(Request)
        .where(scope.requests, *_cities(Request.city_id, filters, scope), *_created_between(today, today))
        .scalar_subquery()
    )
    active_masters = (
        _masters().with_only_columns(func.count())
        .where(User.status == "active", *_cities(User.city_id, filters, scope))
        .scalar_subquery()
    )
    cities = select(func.count()).select_from(City).where(*_cities(City.id, filters, scope)).scalar_subquery()
    cash = Transactions(filters, scope)
    other = Session.execute(
        select(
            cash.income().label("income"),
            cash.expense().label("expense"),
            created_today.label("created_today"),
            active_masters.label("active_masters"),
            cities.label("cities"),
        ).where(*cash.where)
    ).one()

    counts = _counts(requests)
    income, expense = _money(other.income), -_money(other.expense)
    return {
        "requests_total": counts["requests"],
        "created_today": int(other.created_today),
        "completed": counts["completed"],
        "in_progress": counts["in_progress"],
        "waiting": counts["waiting"],
        "new": int(requests.new),
        "cancelled": counts["cancelled"],
        "income": income,
        "expense": expense,
        "balance": income - expense,
        "active_masters": int(other.active_masters),
        "cities": int(other.cities),
        "completion_rate": rate(counts["completed"], counts["requests"]),
        "revenue": _money(requests.revenue),
        "handover": _money(requests.handover),
    }


# ---- call centre --------------------------------------------------------------------------------

def _status_figures(by_status: dict[str, int]) -> dict[str, Any]:
    """Groups, conversion and every status (zero-filled) from the counts per status."""
    counts = {status: by_status.get(status, 0) for status in REQUEST_STATUSES}
    row: dict[str, Any] = {"requests": sum(by_status.values())}
    for group in GROUPS:
        row[group] = sum(counts[status] for status in STATUS_GROUPS[group])
    row["conversion"] = rate(row["completed"], row["requests"])
    row["by_status"] = counts
    return row


def _counts_by_status(source: Requests, where: list[ColumnElement[bool]]) -> dict[Any, dict[str, int]]:
    """{day: {status: count}}: one GROUP BY (day, status) with a plain count, which stays a hash
    aggregate even where the planner cannot estimate the key (a local day)."""
    result: dict[Any, dict[str, int]] = {}
    key = source.day
    stmt = (select(key.label("key"), source.status, source.count()).where(*where)
            .group_by(key, source.status))
    for value, status, count in Session.execute(stmt):
        result.setdefault(value, {})[status] = count
    return result


def callcenter(filters: Filters, scope: Scope) -> dict[str, Any]:
    """Totals by status and group, then the same figures per city, per operator and per day."""
    source = Requests(filters, scope, BY_OPERATOR, narrowed=True)

    # Cities and operators from one scan: counts per (city, operator, status), summed both ways here.
    per_city: dict[Any, dict[str, int]] = {}
    per_operator: dict[Any, dict[str, int]] = {}
    stmt = (select(source.city_id, source.operator, source.status, source.count()).where(*source.where)
            .group_by(source.city_id, source.operator, source.status))
    for city_id, operator, status, count in Session.execute(stmt):
        for groups, group in ((per_city, city_id), (per_operator, operator)):
            counts = groups.setdefault(group, {})
            counts[status] = counts.get(status, 0) + count
    names = _names(City, per_city)
    cities = [{"city_id": city_id, "city_name": names.get(city_id), **_status_figures(counts)}
              for city_id, counts in per_city.items()]
    cities.sort(key=lambda row: (-row["requests"], row["city_name"] or "", row["city_id"]))

    operators = [{"call_center_name": name, **_status_figures(counts)}
                 for name, counts in per_operator.items()]
    operators.sort(key=lambda row: (-row["requests"], row["call_center_name"] is None, row["call_center_name"] or ""))

    by_day = Requests(filters, scope, TOTAL, narrowed=True, rollup=source.rollup)
    where = by_day.where if by_day.rollup else by_day.where + _days_between(by_day.day, filters)
    days = [{"date": day, **_status_figures(counts)}
            for day, counts in sorted(_counts_by_status(by_day, where).items())]

    totals: dict[str, int] = {}
    for counts in per_city.values():  # every request has a city
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
    return {"totals": _status_figures(totals), "cities": cities, "operators": operators, "days": days}


# ---- cities -------------------------------------------------------------------------------------

def _money_totals(rows: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, Decimal]:
    return {key: sum((row[key] for row in rows), ZERO) for key in keys}


def _int_totals(rows: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, int]:
    return {key: sum(row[key] for row in rows) for key in keys}


def cities(filters: Filters, scope: Scope) -> dict[str, Any]:
    """Per city: request groups, money of the cash book, active masters; sorted by balance."""
    source = Requests(filters, scope)
    r = (
        select(source.city_id.label("city_id"), *source.group_counts(),
               source.completed_sum("result").label("revenue"))
        .where(*source.where)
        .group_by(source.city_id)
        .subquery("r")
    )
    cash = Transactions(filters, scope)
    t = (
        select(cash.city_id.label("city_id"), cash.income().label("income"), cash.expense().label("expense"))
        .where(*cash.where)
        .group_by(cash.city_id)
        .subquery("t")
    )
    m = (
        _masters().with_only_columns(User.city_id.label("city_id"), func.count().label("active_masters"))
        .where(User.status == "active", *_cities(User.city_id, filters, scope))
        .group_by(User.city_id)
        .subquery("m")
    )

    def z(column):
        return func.coalesce(column, 0)

    balance = z(t.c.income) + z(t.c.expense)
    stmt = (
        select(
            City.id, City.name,
            *(z(r.c[key]).label(key) for key in ("requests", *GROUPS, "revenue")),
            z(t.c.income).label("income"), z(t.c.expense).label("expense"),
            z(m.c.active_masters).label("active_masters"),
        )
        .outerjoin(r, r.c.city_id == City.id)
        .outerjoin(t, t.c.city_id == City.id)
        .outerjoin(m, m.c.city_id == City.id)
        .where(*_cities(City.id, filters, scope))
        .order_by(balance.desc(), City.name, City.id)
    )
    rows = []
    for values in Session.execute(stmt):
        counts = _counts(values)
        income, expense, revenue = _money(values.income), -_money(values.expense), _money(values.revenue)
        rows.append({
            "city_id": values.id,
            "city_name": values.name,
            **counts,
            "income": income,
            "expense": expense,
            "balance": income - expense,
            "active_masters": int(values.active_masters),
            "revenue": revenue,
            "average_check": average(revenue, counts["completed"]),
            "completion_rate": rate(counts["completed"], counts["requests"]),
        })
    summary: dict[str, Any] = {
        **_int_totals(rows, ("requests", *GROUPS, "active_masters")),
        **_money_totals(rows, ("income", "expense", "balance", "revenue")),
        "cities": len(rows),
    }
    summary["average_check"] = average(summary["revenue"], summary["completed"])
    summary["completion_rate"] = rate(summary["completed"], summary["requests"])
    return {"rows": rows, "summary": summary}


# ---- masters ------------------------------------------------------------------------------------

def masters(filters: Filters, scope: Scope) -> dict[str, Any]:
    """Per master (every master of the scope, also those without requests): request groups and the
    money of their completed requests; sorted by completed."""
    source = Requests(filters, scope, BY_MASTER)
    r = (
        select(
            source.master_id.label("master_id"),
            *source.group_counts(),
            source.completed_sum("result").label("revenue"),
            source.completed_sum("master_handover").label("handover"),
            source.completed_sum("net_amount").label("net"),
        )
        .where(source.with_master, *source.where)
        .group_by(source.master_id)
        .subquery("r")
    )
    # The latest update among the master's requests of the range: their newest update first
    # (ix_requests_master_id_updated_at), the first one the range and the reader's cities admit.
    last_activity = (
        select(Request.updated_at)
        .where(Request.master_id == User.id, *_requests_where(filters, scope))
        .order_by(Request.updated_at.desc())
        .limit(1)
        .correlate(User)
        .scalar_subquery()
    )

    def z(column):
        return func.coalesce(column, 0)

    completed = z(r.c.completed)
    stmt = (
        _masters().with_only_columns(
            User.id, User.full_name, User.city_id, City.name.label("city_name"), User.status,
            *(z(r.c[key]).label(key) for key in ("requests", *GROUPS, "revenue", "handover", "net")),
            last_activity.label("last_activity"),
        )
        .outerjoin(City, City.id == User.city_id)
        .outerjoin(r, r.c.master_id == User.id)
        .where(*_cities(User.city_id, filters, scope))
        .order_by(completed.desc(), z(r.c.requests).desc(), User.full_name, User.id)
    )
    rows = []
    for values in Session.execute(stmt):
        counts = _counts(values)
        rows.append({
            "id": values.id,
            "full_name": values.full_name,
            "city_id": values.city_id,
            "city_name": values.city_name,
            "status": values.status,
            **counts,
            "revenue": _money(values.revenue),
            "handover": _money(values.handover),
            "net": _money(values.net),
            "completion_rate": rate(counts["completed"], counts["requests"]),
            "last_activity": values.last_activity,
        })
    summary: dict[str, Any] = {
        "masters": len(rows),
        "active_masters": sum(1 for row in rows if row["status"] == "active"),
        **_int_totals(rows, ("requests", *GROUPS)),
        **_money_totals(rows, ("revenue", "handover", "net")),
    }
    summary["completion_rate"] = rate(summary["completed"], summary["requests"])
    return {"rows": rows, "summary": summary}


# ---- advertising --------------------------------------------------------------------------------

NO_CAMPAIGN = "Без рекламной кампании"


def advertising(filters: Filters, scope: Scope) -> dict[str, Any]:
    """Per campaign of the scope (and any campaign the visible requests came from), plus the
    requests without a campaign; sorted by requests."""
    source = Requests(filters, scope, BY_CAMPAIGN)
    per_campaign = {
        values.campaign_id: values
        for values in Session.execute(
            select(
                source.campaign_id.label("campaign_id"),
                source.count().label("requests"),
                source.count_in("completed").label("completed"),
                source.completed_sum("result").label("revenue"),
            )
            .where(*source.where)
            .group_by(source.campaign_id)
        )
    }
    with_requests = [key for key in per_campaign if key is not None]
    in_scope = _cities(AdvertisingCampaign.city_id, filters, scope)
    campaigns = select(
        AdvertisingCampaign.id, AdvertisingCampaign.name, AdvertisingCampaign.city_id,
        City.name.label("city_name"), AdvertisingCampaign.phone_number, AdvertisingCampaign.is_active,
    ).join(City, City.id == AdvertisingCampaign.city_id)
    if in_scope:
        condition = and_(*in_scope)
        if with_requests:
            condition = or_(condition, AdvertisingCampaign.id.in_(with_requests))
        campaigns = campaigns.where(condition)

    def figures(values) -> dict[str, Any]:
        requests = int(values.requests) if values is not None else 0
        completed = int(values.completed) if values is not None else 0
        return {
            "requests": requests,
            "completed": completed,
            "conversion": rate(completed, requests),
            "revenue": _money(values.revenue) if values is not None else ZERO,
        }

    rows = [
        {
            "id": campaign.id,
            "name": campaign.name,
            "city_id": campaign.city_id,
            "city_name": campaign.city_name,
            "phone_number": campaign.phone_number,
            "is_active": campaign.is_active,
            **figures(per_campaign.get(campaign.id)),
        }
        for campaign in Session.execute(campaigns)
    ]
    rows.append({
        "id": None, "name": NO_CAMPAIGN, "city_id": None, "city_name": None, "phone_number": None,
        "is_active": None, **figures(per_campaign.get(None)),
    })
    rows.sort(key=lambda row: (-row["requests"], -row["completed"], row["id"] is None, row["name"], row["id"] or 0))
    summary: dict[str, Any] = {
        "campaigns": len(rows) - 1,
        **_int_totals(rows, ("requests", "completed")),
        **_money_totals(rows, ("revenue",)),
    }
    summary["conversion"] = rate(summary["completed"], summary["requests"])
    return {"rows": rows, "summary": summary}


# ---- cash ---------------------------------------------------------------------------------------

def cash(filters: Filters, scope: Scope) -> dict[str, Any]:
    """The cash book over the range, per city and per transaction type, with each city's balance
    before `date_from` (opening) and at the end of `date_to` (closing); one pass (GROUPING SETS)."""
    cash = Transactions(filters, scope, with_start=False)
    in_range = cash.day >= filters.date_from if filters.date_from else None
    opening = cash.balance(~in_range) if in_range is not None else literal_column("0")
    stmt = (
        select(
            cash.city_id,
            cash.type_id,
            func.grouping(cash.city_id).label("by_city"),
            func.grouping(cash.type_id).label("by_type"),
            cash.income(in_range).label("income"),
            cash.expense(in_range).label("expense"),
            cash.count(in_range).label("count"),
            opening.label("opening"),
        )
        .where(*cash.where)
        .group_by(func.grouping_sets(tuple_(cash.city_id), tuple_(cash.type_id), tuple_()))
    )
    cities_rows, types_rows, summary = [], [], None
    for values in Session.execute(stmt):
        income, expense = _money(values.income), -_money(values.expense)
        figures = {"income": income, "expense": expense, "balance": income - expense,
                   "count": int(values._mapping["count"])}
        opening_balance = _money(values.opening)
        with_balances = {"opening_balance": opening_balance, **figures,
                         "closing_balance": opening_balance + figures["balance"]}
        if values.by_city == 0:
            cities_rows.append({"city_id": values.city_id, "city_name": None, **with_balances})
        elif values.by_type == 0:
            types_rows.append({"transaction_type_id": values.transaction_type_id, "name": None, **figures})
        else:
            summary = with_balances
    if summary is None:  # never: the empty grouping set always yields a row
        summary = {"opening_balance": ZERO, "income": ZERO, "expense": ZERO, "balance": ZERO, "count": 0,
                   "closing_balance": ZERO}
    city_names = _names(City, (row["city_id"] for row in cities_rows))
    for row in cities_rows:
        row["city_name"] = city_names.get(row["city_id"])
    type_names = _names(TransactionType, (row["transaction_type_id"] for row in types_rows))
    for row in types_rows:
        row["name"] = type_names.get(row["transaction_type_id"])
    # Types with nothing in the range only carried history into the opening balance.
    types_rows = [row for row in types_rows if row["count"]]
    cities_rows.sort(key=lambda row: (-row["closing_balance"], row["city_name"] or "", row["city_id"]))
    types_rows.sort(key=lambda row: (row["name"] or "", row["transaction_type_id"]))
    return {"cities": cities_rows, "types": types_rows, "summary": summary}
