"""Rules of campaign spend: what a period is, what an amount may be, and how spend is prorated.

A period is a calendar month ("2026-03") or a range of days, both ends inclusive. An amount is
non-negative with at most two decimal places (the field refuses a third). Spend over a period that
straddles a report's range counts in proportion to the days inside it:
amount × days in the range / days of the period, summed exactly and rounded to the kopeck once per
report row.
"""
from __future__ import annotations

import calendar
import re
from datetime import date
from decimal import Decimal
from typing import Any

from models.core.errors import Invalid

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
MONTH_FORMAT = "Месяц в формате ГГГГ-ММ"
PERIOD_REQUIRED = "Укажите месяц (month) или период (date_from и date_to)"
PERIOD_TWICE = "Укажите либо месяц, либо период, но не то и другое"
PERIOD_REVERSED = "Дата начала периода позже даты окончания"
NEGATIVE = "Сумма не может быть отрицательной"
MAX_PERIOD_DAYS = 3660  # ten years: a longer period is a typo


def month_period(text: str) -> tuple[date, date]:
    """("2026-03") → (2026-03-01, 2026-03-31); a bad month is refused naming the field."""
    match = MONTH.match(text.strip()) if isinstance(text, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12 or not 1900 <= int(match.group(1)) <= 2100:
        raise Invalid(f"Месяц: {MONTH_FORMAT}", code="validation_error", errors={"month": [MONTH_FORMAT]})
    year, month = int(match.group(1)), int(match.group(2))
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def spend_values(body: dict[str, Any], current: tuple[date, date] | None = None) -> dict[str, Any]:
    """The columns a create (`current` None) or a partial update sets from its body: the period from
    `month` or from `date_from`/`date_to` (an update may move one end), checked in order; the amount
    non-negative. Raises Invalid with the field."""
    values: dict[str, Any] = {}
    month = body.get("month")
    has_dates = body.get("date_from") is not None or body.get("date_to") is not None
    if month is not None and has_dates:
        raise Invalid(f"Период: {PERIOD_TWICE}", code="validation_error", errors={"month": [PERIOD_TWICE]})
    if month is not None:
        values["date_from"], values["date_to"] = month_period(month)
    elif has_dates or current is None:
        first = body.get("date_from") or (current[0] if current else None)
        last = body.get("date_to") or (current[1] if current else None)
        if first is None or last is None:
            missing = "date_from" if first is None else "date_to"
            raise Invalid(f"Период: {PERIOD_REQUIRED}", code="validation_error", errors={missing: [PERIOD_REQUIRED]})
        values["date_from"], values["date_to"] = first, last
    if "date_from" in values:
        if values["date_from"] > values["date_to"]:
            raise Invalid(f"Период: {PERIOD_REVERSED}", code="validation_error",
                          errors={"date_to": [PERIOD_REVERSED]})
        if (values["date_to"] - values["date_from"]).days + 1 > MAX_PERIOD_DAYS:
            message = f"Период не длиннее {MAX_PERIOD_DAYS} дней"
            raise Invalid(f"Период: {message}", code="validation_error", errors={"date_to": [message]})
    if "amount" in body:
        if body["amount"] is None:
            raise Invalid("Сумма: обязательное поле", code="validation_error", errors={"amount": ["Обязательное поле"]})
        if body["amount"] < 0:
            raise Invalid(f"Сумма: {NEGATIVE}", code="validation_error", errors={"amount": [NEGATIVE]})
        values["amount"] = body["amount"]
    elif current is None:
        raise Invalid("Сумма: обязательное поле", code="validation_error", errors={"amount": ["Обязательное поле"]})
    if "comment" in body:
        values["comment"] = body["comment"]
    return values


def overlap_days(start: date, end: date, first: date | None, last: date | None) -> int:
    """Days of [start, end] inside [first, last] (None: open on that side)."""
    low = max(start, first) if first else start
    high = min(end, last) if last else end
    return max((high - low).days + 1, 0)


def prorated(amount: Decimal, start: date, end: date, first: date | None, last: date | None) -> Decimal:
    """The part of `amount` (spent over [start, end]) that falls within [first, last], unrounded."""
    inside = overlap_days(start, end, first, last)
    if inside == 0:
        return Decimal(0)
    total = (end - start).days + 1
    return amount if inside == total else amount * inside / total
