"""The ROI report: what each advertising campaign (and each line without one) brought for what it cost.

Per campaign, city or month over a range of business-local days:
- calls: inbound calls; unique callers: the numbers among them; missed: those nobody answered;
  called back: missed calls followed within the range by an answered call with the number
  (models/reports/call_rollups.called_back_at_sql, the one definition);
- requests, completed (Готово), revenue (Σ result of completed), company income (Σ master_handover of
  completed: what the masters hand over, the income the cash book books on Готово);
- spend: the campaigns' spend over the range, periods that straddle it prorated by days
  (models/advertising/rules.prorated); cost per call, per request, per completed job;
  ROMI = (income − spend) / spend, as a percentage with one decimal, null without spend.

Calls come from the call rollups (call_day_stats, call_day_links: models/reports/call_rollups.py),
requests from the request rollup, like the other reports (models/reports/queries.py), with the same
fallback to the tables while a rollup's days are in another zone. A call belongs to its campaign's
city; calls on a line with no campaign have no city, appear as «Без кампании» per line, and only to
readers who see every city.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable

from sqlalchemy import Date, Integer, String, case, cast, func, select, text, true, tuple_

from models.advertising.rules import prorated
from models.advertising.tables import CampaignSpend
from models.core.business_time import business_tz
from models.core.db import Session
from models.directories.tables import AdvertisingCampaign, City
from models.reports import queries
from models.reports.call_rollups import (
    ANYWHERE,
    CALLED_BACK,
    COUNTS,
    SAME_CITY,
    SAME_SOURCE,
    CallDayLinks,
    CallDayStats,
    table_rows_sql,
)
from models.reports.queries import BY_CAMPAIGN, TOTAL, ZERO, Filters, Requests, Scope
from models.reports.rollups import rollup_zone_matches
from models.requests.money import to_money

GROUPS = ("campaign", "city", "month")
NO_CAMPAIGN = "Без кампании"
NO_CITY = "Без города (линии без кампании)"
MAX_MONTH_ROWS = 240
_TENTH = Decimal("0.1")


@dataclass(frozen=True)
class Key:
    campaign_id: int | None = None
    line: str | None = None
    city_id: int | None = None
    month: date | None = None


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


# ---- calls ----------------------------------------------------------------------------------------

def _call_tables():
    """call_day_stats and call_day_links, or their rows computed from `calls` while the rollups' days
    are in another zone."""
    if queries.USE_ROLLUPS and rollup_zone_matches(Session):
        return CallDayStats.__table__, CallDayLinks.__table__
    zone = business_tz().key.replace("'", "''")
    stats_sql, links_sql = table_rows_sql(f"'{zone}'")
    key = {"day": Date, "city_id": Integer, "campaign_id": Integer, "line": String}
    stats = text(stats_sql).columns(**key, **{name: Integer for name in COUNTS}).subquery("call_stats")
    links = text(links_sql).columns(kind=Integer, **key, ref_day=Date, calls=Integer).subquery("call_links")
    return stats, links


def _keys(table, group: str) -> list:
    if group == "campaign":
        return [table.c.campaign_id, table.c.line]
    if group == "city":
        return [table.c.city_id]
    return [cast(func.date_trunc("month", table.c.day), Date)]


def _key(values, group: str) -> Key:
    if group == "campaign":
        return Key(campaign_id=values[0] or None, line=(values[1] or None) if not values[0] else None)
    if group == "city":
        return Key(city_id=values[0] or None)
    return Key(month=values[0])


def _total(column, condition=None):
    summed = func.sum(column) if condition is None else func.sum(column).filter(condition)
    return func.coalesce(summed, 0)


def _call_figures(filters: Filters, scope: Scope, group: str) -> tuple[dict[Key, dict], int]:
    """{key: calls, unique_callers, missed, called_back}, and the unique callers of the whole range.

    A call is its caller's first in [a, b] when its previous call is before a: first-ever calls (the
    stats) plus the links to a previous day before a; per month, the calls first in their month,
    except in a month the range starts inside. A missed call is called back within the range when
    called back the same day (the stats) or has a callback link up to b (models/reports/call_rollups.py)."""
    stats, links = _call_tables()
    first, last = filters.date_from, filters.date_to
    one_city = scope.city_id is not None or filters.city_id is not None
    overall_first = stats.c.first_city if one_city else stats.c.first_any
    overall_kind = SAME_CITY if one_city else ANYWHERE

    def where(table) -> list:
        conditions = [*queries._cities(table.c.city_id, filters, scope)]  # noqa: SLF001 - the reports' own helper
        if first is not None:
            conditions.append(table.c.day >= first)
        if last is not None:
            conditions.append(table.c.day <= last)
        return conditions

    keys = _keys(stats, group)
    if group == "campaign":
        unique = _total(stats.c.first_source)
    elif group == "city":
        unique = _total(stats.c.first_city)
    else:
        month_first = stats.c.first_month_city if one_city else stats.c.first_month_any
        unique = _total(month_first if first is None else case((keys[0] >= first, month_first), else_=overall_first))
    # One pass: the rows per key, and (the empty grouping set) the range's own first-ever callers.
    stmt = select(*keys, func.grouping(*keys).label("is_total"), _total(stats.c.calls).label("calls"),
                  unique.label("unique_callers"), _total(stats.c.missed).label("missed"),
                  _total(stats.c.called_back_same_day).label("called_back"),
                  _total(overall_first).label("unique_overall"),
                  ).where(*where(stats)).group_by(func.grouping_sets(tuple_(*keys), tuple_()))
    figures: dict[Key, dict] = {}
    unique_total = 0
    for values in Session.execute(stmt):
        if values.is_total:
            unique_total = int(values.unique_overall)
            continue
        figures[_key(values, group)] = {name: int(values._mapping[name])
                                        for name in ("calls", "unique_callers", "missed", "called_back")}

    def add_links(kind: int, condition, name: str, days: list | None = None) -> None:
        link_keys = _keys(links, group)
        conditions = where(links) if days is None else [
            *queries._cities(links.c.city_id, filters, scope), *days]  # noqa: SLF001
        stmt = select(*link_keys, _total(links.c.calls)).where(links.c.kind == kind, condition, *conditions)
        stmt = stmt.group_by(*link_keys)
        for values in Session.execute(stmt):
            row = figures.setdefault(_key(values, group), {**EMPTY_CALLS})
            row[name] += int(values[-1])

    if first is not None:
        if group != "month":
            add_links(SAME_SOURCE if group == "campaign" else SAME_CITY, links.c.ref_day < first, "unique_callers")
        elif first.day != 1:  # the month the range starts inside: first since `first`, not since the 1st
            month_end = min(next_month(first) - timedelta(days=1), last or date.max)
            add_links(overall_kind, links.c.ref_day < first, "unique_callers",
                      days=[links.c.day >= first, links.c.day <= month_end])
        unique_total += int(Session.execute(
            select(_total(links.c.calls)).where(links.c.kind == overall_kind, links.c.ref_day < first,
                                                *where(links))).scalar())
    add_links(CALLED_BACK, links.c.ref_day <= last if last is not None else true(), "called_back")
    return figures, unique_total


# ---- requests -------------------------------------------------------------------------------------

def _request_figures(filters: Filters, scope: Scope, group: str) -> dict[Key, dict]:
    source = Requests(filters, scope, BY_CAMPAIGN if group == "campaign" else TOTAL)
    if group == "campaign":
        keys = [source.campaign_id]
    elif group == "city":
        keys = [source.city_id]
    else:
        keys = [cast(func.date_trunc("month", source.day), Date)]
    stmt = select(*keys, source.count().label("requests"), source.count_in("completed").label("completed"),
                  source.completed_sum("result").label("revenue"),
                  source.completed_sum("master_handover").label("income")).where(*source.where).group_by(*keys)
    figures: dict[Key, dict] = {}
    for values in Session.execute(stmt):
        if group == "campaign":
            key = Key(campaign_id=values[0])
        elif group == "city":
            key = Key(city_id=values[0])
        else:
            key = Key(month=values[0])
        figures[key] = {"requests": int(values.requests), "completed": int(values.completed),
                        "revenue": to_money(values.revenue or 0), "income": to_money(values.income or 0)}
    return figures


# ---- spend ----------------------------------------------------------------------------------------

def _spend(filters: Filters, scope: Scope, group: str) -> dict[Key, Decimal]:
    """Spend per key, prorated by days to the range (and to each month), rounded to the kopeck."""
    where = [*queries._cities(AdvertisingCampaign.city_id, filters, scope)]  # noqa: SLF001
    if filters.date_from is not None:
        where.append(CampaignSpend.date_to >= filters.date_from)
    if filters.date_to is not None:
        where.append(CampaignSpend.date_from <= filters.date_to)
    stmt = (select(CampaignSpend.campaign_id, AdvertisingCampaign.city_id, CampaignSpend.date_from,
                   CampaignSpend.date_to, CampaignSpend.amount)
            .join(AdvertisingCampaign, AdvertisingCampaign.id == CampaignSpend.campaign_id).where(*where))
    sums: dict[Key, Decimal] = defaultdict(Decimal)
    for campaign_id, city_id, start, end, amount in Session.execute(stmt):
        for key, part in _spend_parts(group, campaign_id, city_id, start, end, amount, filters):
            sums[key] += part
    return {key: to_money(value) for key, value in sums.items()}


def _spend_parts(group: str, campaign_id: int, city_id: int, start: date, end: date, amount: Decimal,
                 filters: Filters) -> Iterable[tuple[Key, Decimal]]:
    if group == "campaign":
        yield Key(campaign_id=campaign_id), prorated(amount, start, end, filters.date_from, filters.date_to)
    elif group == "city":
        yield Key(city_id=city_id), prorated(amount, start, end, filters.date_from, filters.date_to)
    else:
        first = max(start, filters.date_from) if filters.date_from else start
        last = min(end, filters.date_to) if filters.date_to else end
        month = month_start(first)
        while month <= last:
            month_last = next_month(month).toordinal() - 1
            low, high = max(first, month), min(last, date.fromordinal(month_last))
            yield Key(month=month), prorated(amount, start, end, low, high)
            month = next_month(month)


# ---- the report -----------------------------------------------------------------------------------

def _ratio(amount: Decimal, count: int) -> Decimal | None:
    return to_money(amount / count) if count else None


def romi(income: Decimal, spend: Decimal) -> float | None:
    """(income − spend) / spend as a percentage with one decimal; None without spend."""
    if not spend:
        return None
    return float(((income - spend) * 100 / spend).quantize(_TENTH, rounding=ROUND_HALF_UP))


EMPTY_CALLS = {"calls": 0, "unique_callers": 0, "missed": 0, "called_back": 0}
EMPTY_REQUESTS = {"requests": 0, "completed": 0, "revenue": ZERO, "income": ZERO}


def _figures(calls: dict, requests: dict, spend: Decimal) -> dict[str, Any]:
    return {
        **calls, **requests, "spend": spend,
        "cost_per_call": _ratio(spend, calls["calls"]),
        "cost_per_request": _ratio(spend, requests["requests"]),
        "cost_per_completed": _ratio(spend, requests["completed"]),
        "romi": romi(requests["income"], spend),
    }


def _months(filters: Filters, seen: Iterable[date]) -> list[date]:
    """Every month of a bounded range (at most MAX_MONTH_ROWS), else the months with figures."""
    if filters.date_from and filters.date_to:
        months, month = [], month_start(filters.date_from)
        while month <= filters.date_to and len(months) < MAX_MONTH_ROWS:
            months.append(month)
            month = next_month(month)
        return sorted(set(months) | set(seen))
    return sorted(set(seen))


def roi(filters: Filters, scope: Scope, group: str = "campaign") -> dict[str, Any]:
    if group not in GROUPS:
        raise ValueError(f"unknown grouping {group!r}")
    by_calls, unique_total = _call_figures(filters, scope, group)
    by_requests = _request_figures(filters, scope, group)
    spend = _spend(filters, scope, group)
    if group == "month":
        keys = [Key(month=m) for m in _months(filters, (k.month for k in (*by_calls, *by_requests, *spend)))]
    else:
        keys = list({*by_calls, *by_requests, *spend})
    # Requests carry no line: those without a campaign go with the calls on no line.
    rows = [{**_labels(key),
             **_figures(by_calls.get(key, EMPTY_CALLS), by_requests.get(key, EMPTY_REQUESTS), spend.get(key, ZERO))}
            for key in keys]
    _name_rows(rows, group)
    rows.sort(key=_order(group))

    counted = ("calls", "missed", "called_back", "requests", "completed")
    summary = {name: sum(row[name] for row in rows) for name in counted}
    summary["unique_callers"] = unique_total
    for name in ("revenue", "income", "spend"):
        summary[name] = sum((row[name] for row in rows), ZERO)
    summary = _figures({k: summary[k] for k in EMPTY_CALLS},
                       {k: summary[k] for k in EMPTY_REQUESTS}, summary["spend"])
    return {"group": group, "date_from": filters.date_from, "date_to": filters.date_to, "rows": rows,
            "summary": summary}


def _labels(key: Key) -> dict[str, Any]:
    return {"campaign_id": key.campaign_id, "campaign_name": None, "line": key.line, "city_id": key.city_id,
            "city_name": None, "month": key.month.strftime("%Y-%m") if key.month else None}


def _name_rows(rows: list[dict], group: str) -> None:
    if group == "campaign":
        ids = {row["campaign_id"] for row in rows if row["campaign_id"]}
        campaigns = {}
        if ids:
            stmt = (select(AdvertisingCampaign.id, AdvertisingCampaign.name, AdvertisingCampaign.phone,
                           AdvertisingCampaign.phone_number, AdvertisingCampaign.city_id, City.name)
                    .join(City, City.id == AdvertisingCampaign.city_id).where(AdvertisingCampaign.id.in_(ids)))
            campaigns = {values[0]: values for values in Session.execute(stmt)}
        for row in rows:
            found = campaigns.get(row["campaign_id"])
            if found is None:
                row["campaign_name"] = NO_CAMPAIGN
                continue
            _, name, phone, phone_number, city_id, city_name = found
            row.update(campaign_name=name, line=phone or phone_number, city_id=city_id, city_name=city_name)
    elif group == "city":
        ids = {row["city_id"] for row in rows if row["city_id"]}
        names = dict(Session.execute(select(City.id, City.name).where(City.id.in_(ids))).all()) if ids else {}
        for row in rows:
            row["city_name"] = names.get(row["city_id"]) if row["city_id"] else NO_CITY


def _order(group: str):
    if group == "month":
        return lambda row: row["month"]
    if group == "city":
        return lambda row: (row["city_id"] is None, row["city_name"] or "", row["city_id"] or 0)
    return lambda row: (row["campaign_id"] is None, -row["requests"], -row["calls"], row["campaign_name"] or "",
                        row["line"] or "~", row["campaign_id"] or 0)
