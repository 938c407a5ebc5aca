"""Report filters, the JSON shapes of the reports, and their CSV columns."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.fields import LenientDate, LocalDateTime, Money, OptionalId, Text
from models.core.base import MAX_INT4
from models.core.enums import REQUEST_STATUSES

DATE_ERROR = "Дата должна быть в формате ГГГГ-ММ-ДД"
FORMATS = ("json", "csv")


class OptionalChoice(fields.String):
    """One of a fixed list; '' means not chosen."""

    def __init__(self, choices, error: str, **kwargs):
        kwargs.setdefault("allow_none", True)
        kwargs.setdefault("metadata", {})["enum"] = list(choices)
        super().__init__(**kwargs)
        self.choices = frozenset(choices)
        self.choice_error = error

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if text == "":
            return None
        if text not in self.choices:
            raise ValidationError(self.choice_error)
        return text


def _id_in_range(value: int | None) -> None:
    # A validator runs on the None that '' became, so validate.Range cannot be used here.
    if value is not None and not 1 <= value <= MAX_INT4:
        raise ValidationError("Некорректный идентификатор города")


class ReportArgs(Schema):
    date_from = LenientDate(error_messages={"invalid": DATE_ERROR},
                            metadata={"description": "first day, business-local, inclusive (YYYY-MM-DD)"})
    date_to = LenientDate(error_messages={"invalid": DATE_ERROR},
                          metadata={"description": "last day, business-local, inclusive (YYYY-MM-DD)"})
    city_id = OptionalId(
        validate=_id_in_range,
        error_messages={"invalid": "Идентификатор города должен быть числом"},
        metadata={"description": "one city; empty for every city of the reader's scope"},
    )
    format = OptionalChoice(FORMATS, "Формат должен быть json или csv",
                            metadata={"description": "csv for a file Excel opens (UTF-8 with BOM, `;`)"})

    @validates_schema
    def range_in_order(self, data, **kwargs):
        first, last = data.get("date_from"), data.get("date_to")
        if first and last and first > last:
            raise ValidationError("Дата начала позже даты окончания", field_name="date_to")


class RoiArgs(ReportArgs):
    group = OptionalChoice(("campaign", "city", "month"), "Группировка: campaign, city или month",
                           metadata={"description": "rows per campaign and line (default), per city or per month"})


class CallcenterArgs(ReportArgs):
    status = OptionalChoice(REQUEST_STATUSES, "Неизвестный статус заявки")
    search = Text(validate=validate.Length(max=100, error="Строка поиска длиннее 100 символов"),
                  metadata={"description": "client name or phone digits"})


# ---- JSON shapes --------------------------------------------------------------------------------

class GroupCountsSchema(Schema):
    requests = fields.Integer()
    completed = fields.Integer(metadata={"description": "Готово"})
    in_progress = fields.Integer(metadata={"description": "В работе, Принял, В пути"})
    waiting = fields.Integer(metadata={"description": "Новая, Ожидает, Ожидает принятия"})
    cancelled = fields.Integer(metadata={"description": "Отказ, НеЗаказ"})


class DashboardSchema(Schema):
    requests_total = fields.Integer()
    created_today = fields.Integer(metadata={"description": "created today, business-local day"})
    completed = fields.Integer()
    in_progress = fields.Integer()
    waiting = fields.Integer()
    new = fields.Integer()
    cancelled = fields.Integer()
    income = Money(metadata={"description": "Σ positive amounts of the cash book"})
    expense = Money(metadata={"description": "Σ negative amounts, as a positive number"})
    balance = Money(metadata={"description": "income − expense"})
    active_masters = fields.Integer()
    cities = fields.Integer()
    completion_rate = fields.Float()
    revenue = Money(metadata={"description": "Σ result of completed requests"})
    handover = Money(metadata={"description": "Σ master_handover of completed requests"})


class StatusCountsSchema(GroupCountsSchema):
    conversion = fields.Float()
    by_status = fields.Dict(keys=fields.String(), values=fields.Integer(),
                            metadata={"description": "every status, zero-filled"})


class CallcenterCitySchema(StatusCountsSchema):
    city_id = fields.Integer()
    city_name = fields.String(allow_none=True)


class CallcenterOperatorSchema(StatusCountsSchema):
    call_center_name = fields.String(allow_none=True)


class CallcenterDaySchema(StatusCountsSchema):
    date = fields.Date()


class CallcenterSchema(Schema):
    totals = fields.Nested(StatusCountsSchema)
    cities = fields.List(fields.Nested(CallcenterCitySchema))
    operators = fields.List(fields.Nested(CallcenterOperatorSchema))
    days = fields.List(fields.Nested(CallcenterDaySchema))


class CityFiguresSchema(GroupCountsSchema):
    income = Money()
    expense = Money()
    balance = Money()
    active_masters = fields.Integer()
    revenue = Money()
    average_check = Money()
    completion_rate = fields.Float()


class CityRowSchema(CityFiguresSchema):
    city_id = fields.Integer()
    city_name = fields.String()


class CitySummarySchema(CityFiguresSchema):
    cities = fields.Integer()


class CitiesSchema(Schema):
    rows = fields.List(fields.Nested(CityRowSchema))
    summary = fields.Nested(CitySummarySchema)


class MasterFiguresSchema(GroupCountsSchema):
    revenue = Money()
    handover = Money()
    net = Money()
    completion_rate = fields.Float()


class MasterRowSchema(MasterFiguresSchema):
    id = fields.Integer()
    full_name = fields.String()
    city_id = fields.Integer(allow_none=True)
    city_name = fields.String(allow_none=True)
    status = fields.String()
    last_activity = LocalDateTime()


class MasterSummarySchema(MasterFiguresSchema):
    masters = fields.Integer()
    active_masters = fields.Integer()


class MastersSchema(Schema):
    rows = fields.List(fields.Nested(MasterRowSchema))
    summary = fields.Nested(MasterSummarySchema)


class CampaignFiguresSchema(Schema):
    requests = fields.Integer()
    completed = fields.Integer()
    conversion = fields.Float()
    revenue = Money()


class CampaignRowSchema(CampaignFiguresSchema):
    id = fields.Integer(allow_none=True, metadata={"description": "null: requests without a campaign"})
    name = fields.String()
    city_id = fields.Integer(allow_none=True)
    city_name = fields.String(allow_none=True)
    phone_number = fields.String(allow_none=True)
    is_active = fields.Boolean(allow_none=True)


class CampaignSummarySchema(CampaignFiguresSchema):
    campaigns = fields.Integer()


class AdvertisingSchema(Schema):
    rows = fields.List(fields.Nested(CampaignRowSchema))
    summary = fields.Nested(CampaignSummarySchema)


class CashFiguresSchema(Schema):
    income = Money()
    expense = Money()
    balance = Money()
    count = fields.Integer()


class CashBalancesSchema(CashFiguresSchema):
    opening_balance = Money(metadata={"description": "balance before date_from"})
    closing_balance = Money(metadata={"description": "balance at the end of date_to"})


class CashCitySchema(CashBalancesSchema):
    city_id = fields.Integer()
    city_name = fields.String()


class CashTypeSchema(CashFiguresSchema):
    transaction_type_id = fields.Integer()
    name = fields.String()


class CashSchema(Schema):
    cities = fields.List(fields.Nested(CashCitySchema))
    types = fields.List(fields.Nested(CashTypeSchema))
    summary = fields.Nested(CashBalancesSchema)


class RoiFiguresSchema(Schema):
    calls = fields.Integer(metadata={"description": "inbound calls"})
    unique_callers = fields.Integer(metadata={"description": "distinct numbers among the inbound calls"})
    missed = fields.Integer(metadata={"description": "inbound calls nobody answered"})
    called_back = fields.Integer(metadata={"description": "missed calls followed within the range by an answered "
                                                          "call (inbound or outbound) with the number"})
    requests = fields.Integer()
    completed = fields.Integer(metadata={"description": "Готово"})
    revenue = Money(metadata={"description": "Σ result of completed requests"})
    income = Money(metadata={"description": "company income: Σ master_handover of completed requests"})
    spend = Money(metadata={"description": "campaign spend in the range, periods prorated by days"})
    cost_per_call = Money(allow_none=True, metadata={"description": "spend / calls; null without calls"})
    cost_per_request = Money(allow_none=True, metadata={"description": "spend / requests"})
    cost_per_completed = Money(allow_none=True, metadata={"description": "spend / completed"})
    romi = fields.Float(allow_none=True, metadata={"description": "(income − spend) / spend × 100, %, one decimal; "
                                                                  "null when spend is 0"})


class RoiRowSchema(RoiFiguresSchema):
    campaign_id = fields.Integer(allow_none=True, metadata={"description": "null: «Без кампании» (group=campaign)"})
    campaign_name = fields.String(allow_none=True)
    line = fields.String(allow_none=True, metadata={"description": "the tracking line (normalised digits)"})
    city_id = fields.Integer(allow_none=True)
    city_name = fields.String(allow_none=True)
    month = fields.String(allow_none=True, metadata={"description": "YYYY-MM (group=month)"})


class RoiSchema(Schema):
    group = fields.String()
    date_from = fields.Date(allow_none=True)
    date_to = fields.Date(allow_none=True)
    rows = fields.List(fields.Nested(RoiRowSchema))
    summary = fields.Nested(RoiFiguresSchema)


# ---- CSV columns: (key, header) -----------------------------------------------------------------

GROUP_COLUMNS = [
    ("requests", "Заявок"),
    ("completed", "Выполнено"),
    ("in_progress", "В работе"),
    ("waiting", "Ожидают"),
    ("cancelled", "Отменено"),
]

DASHBOARD_COLUMNS = [
    ("requests_total", "Заявок"),
    ("created_today", "Создано сегодня"),
    ("completed", "Выполнено"),
    ("in_progress", "В работе"),
    ("waiting", "Ожидают"),
    ("new", "Новые"),
    ("cancelled", "Отменено"),
    ("income", "Приход"),
    ("expense", "Расход"),
    ("balance", "Баланс"),
    ("active_masters", "Активных мастеров"),
    ("cities", "Городов"),
    ("completion_rate", "Выполнение, %"),
    ("revenue", "Выручка"),
    ("handover", "Сдача мастеров"),
]

CALLCENTER_COLUMNS = [
    ("section", "Раздел"),
    ("key", "Значение"),
    *GROUP_COLUMNS,
    ("conversion", "Конверсия, %"),
    *((f"status:{status}", status) for status in REQUEST_STATUSES),
]

CITIES_COLUMNS = [
    ("city_name", "Город"),
    *GROUP_COLUMNS,
    ("income", "Приход"),
    ("expense", "Расход"),
    ("balance", "Баланс"),
    ("active_masters", "Активных мастеров"),
    ("revenue", "Выручка"),
    ("average_check", "Средний чек"),
    ("completion_rate", "Выполнение, %"),
]

MASTERS_COLUMNS = [
    ("id", "ID"),
    ("full_name", "Мастер"),
    ("city_name", "Город"),
    ("status", "Статус"),
    *GROUP_COLUMNS,
    ("revenue", "Выручка"),
    ("handover", "Сдача"),
    ("net", "Чистыми"),
    ("completion_rate", "Выполнение, %"),
    ("last_activity", "Последняя активность"),
]

ADVERTISING_COLUMNS = [
    ("id", "ID"),
    ("name", "Рекламная кампания"),
    ("city_name", "Город"),
    ("phone_number", "Телефон"),
    ("requests", "Заявок"),
    ("completed", "Выполнено"),
    ("conversion", "Конверсия, %"),
    ("revenue", "Выручка"),
]

CASH_COLUMNS = [
    ("section", "Раздел"),
    ("name", "Название"),
    ("opening_balance", "Остаток на начало"),
    ("income", "Приход"),
    ("expense", "Расход"),
    ("balance", "Сальдо"),
    ("closing_balance", "Остаток на конец"),
    ("count", "Операций"),
]

ROI_FIGURE_COLUMNS = [
    ("calls", "Звонков"),
    ("unique_callers", "Уникальных абонентов"),
    ("missed", "Пропущено"),
    ("called_back", "Перезвонили"),
    ("requests", "Заявок"),
    ("completed", "Выполнено"),
    ("revenue", "Выручка"),
    ("income", "Доход компании"),
    ("spend", "Расход на рекламу"),
    ("cost_per_call", "Цена звонка"),
    ("cost_per_request", "Цена заявки"),
    ("cost_per_completed", "Цена выполненной заявки"),
    ("romi", "ROMI, %"),
]

ROI_KEY_COLUMNS = {
    "campaign": [("campaign_id", "ID"), ("campaign_name", "Рекламная кампания"), ("line", "Линия"),
                 ("city_name", "Город")],
    "city": [("city_name", "Город")],
    "month": [("month", "Месяц")],
}
