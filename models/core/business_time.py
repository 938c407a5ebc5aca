"""Business time zone: local wall-clock times (meeting dates, report days, file names) live here."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from settings import settings


@lru_cache(maxsize=1)
def business_tz() -> ZoneInfo:
    return ZoneInfo(settings.BUSINESS_TZ)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def today_local() -> date:
    return datetime.now(business_tz()).date()


def as_aware(value: datetime) -> datetime:
    """A naive datetime is a wall-clock time in the business time zone."""
    return value.replace(tzinfo=business_tz()) if value.tzinfo is None else value


def to_local(value: datetime) -> datetime:
    return as_aware(value).astimezone(business_tz())


def local_day_sql(column: str = "created_at") -> str:
    """`column` as a business-local date, in SQL. The zone is a literal so that an expression index
    (ix_requests_local_day_status) and the report queries that group by the day match each other."""
    zone = business_tz().key
    if not all(ch.isalnum() or ch in "/_+-" for ch in zone):
        raise ValueError(f"unexpected time zone name {zone!r}")
    return f"((timezone('{zone}', {column}))::date)"


def local_day_start(day: date) -> datetime:
    """The UTC instant a business-local day starts."""
    return datetime.combine(day, time.min, tzinfo=business_tz()).astimezone(timezone.utc)
