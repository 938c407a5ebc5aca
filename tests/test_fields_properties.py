"""Property-based tests of the input fields: any input is either accepted as a sound value or
refused with a ValidationError (which the API turns into a 422) — never another exception."""
from __future__ import annotations

import unicodedata
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError

from api.fields import LenientDate, LocalDateTime, Money, OptionalId, Phone, Text
from api.guards import find_control_character
from api.requests.schemas import RequestCreateSchema, RequestQuerySchema, RequestUpdateSchema
from models.core.phones import normalize_phone
from models.requests.money import request_money

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def outcome(field, value):
    try:
        return field.deserialize(value)
    except ValidationError:
        return ValidationError


@given(anything)
def test_money_accepts_numbers_or_refuses(value):
    result = outcome(Money(allow_none=True), value)
    assert result is ValidationError or result is None or (
        isinstance(result, Decimal) and result.is_finite() and result == result.quantize(Decimal("0.01")))


@given(st.decimals(min_value=-10**9, max_value=10**9, places=2, allow_nan=False))
def test_money_strings_and_numbers_agree(amount):
    field = Money()
    assert field.deserialize(str(amount)) == amount
    assert field.deserialize(float(amount)) == amount
    assert field.serialize("x", {"x": amount}) == float(amount)


@given(anything)
def test_optional_id(value):
    result = outcome(OptionalId(), value)
    assert result is ValidationError or result is None or (isinstance(result, int) and result > 0)


@given(anything)
def test_dates_and_datetimes(value):
    day = outcome(LenientDate(), value)
    assert day is ValidationError or day is None or isinstance(day, date)
    result = outcome(LocalDateTime(), value)
    assert result is ValidationError or result is None or result.tzinfo is not None


@given(st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2090, 1, 1),
                    timezones=st.just(timezone.utc)))
def test_meeting_date_round_trip_is_stable(moment):
    """What the API sends, read back the way the SPA reads it (first 19 chars as local time, sent
    as UTC), lands on the same instant."""
    field = LocalDateTime()
    sent = field.serialize("m", {"m": moment})
    wall_clock = sent[:19]
    received = field.deserialize(wall_clock)  # the SPA's local time equals business time here
    assert abs(received - moment) < timedelta(seconds=1)
    assert field.deserialize(sent) == moment


@given(st.text(max_size=40))
def test_phone_is_normalised_or_refused(text):
    result = outcome(Phone(), text)
    if result is not ValidationError:
        digits = normalize_phone(result)
        assert digits.isdigit() and 5 <= len(digits) <= 15


class TextBody(Schema):
    line = Text(allow_none=True)
    notes = Text(allow_none=True, multiline=True)


@given(st.text(max_size=50), st.sampled_from(["line", "notes"]))
def test_text_never_keeps_a_control_character(text, name):
    """What the parser of every endpoint lets through to a Text field (api/guards.py) comes out
    trimmed, with no control character; a note may keep its line breaks."""
    if find_control_character({name: text}, TextBody()) is not None:
        return
    result = outcome(TextBody().fields[name], text)
    allowed = "\t\n\r" if name == "notes" else ""
    assert result is ValidationError or result is None or (
        result == result.strip() and not any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in allowed
                                             for ch in result))


@given(st.decimals(min_value=0, max_value=10**8, places=2), st.decimals(min_value=0, max_value=10**8, places=2))
def test_request_money(result, expenses):
    net, handover = request_money(result, expenses, Decimal("0.5"))
    assert net == result - expenses
    assert abs(handover * 2 - net) <= Decimal("0.01")


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(sorted(RequestCreateSchema().fields) + ["junk"]), anything, max_size=8))
def test_request_schemas_never_crash(body):
    for schema in (RequestCreateSchema(), RequestUpdateSchema(partial=True)):
        try:
            schema.load(body)
        except ValidationError as exc:
            assert exc.messages


@given(st.dictionaries(st.sampled_from(sorted(RequestQuerySchema().fields)), st.text(max_size=12), max_size=6))
def test_request_query_never_crashes(query):
    try:
        RequestQuerySchema().load(query)
    except ValidationError as exc:
        assert exc.messages
