"""Money of a request: computed on the server, kept to the kopeck."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from models.core.errors import Invalid
from settings import settings

CENT = Decimal("0.01")
# The amounts a person enters on a request, by the names the request page shows them.
AMOUNT_LABELS = {"result": "Итог", "expenses": "Расходы", "master_handover": "Сдача мастера"}


def to_money(value: Decimal | int | str) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def request_money(result: Decimal | None, expenses: Decimal | None,
                  share: Decimal | None = None) -> tuple[Decimal, Decimal]:
    """(net_amount, master_handover): net = result − expenses; handover = net × MASTER_SHARE."""
    net = to_money((result or Decimal(0)) - (expenses or Decimal(0)))
    return net, to_money(net * (settings.MASTER_SHARE if share is None else share))


def entered_amount(name: str, value: Any) -> Decimal | None:
    """An amount entered on a request (result, expenses, an explicit handover): a finite, non-negative
    number with at most two decimal places, at most MAX_REQUEST_AMOUNT. Anything else is refused
    (422) naming the field; None stays None."""
    if value is None:
        return None
    label = AMOUNT_LABELS.get(name, name)

    def refuse(message: str) -> Invalid:
        return Invalid(f"{label}: {message}", code="invalid_amount", errors={name: [message]})

    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise refuse("сумма должна быть числом")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise refuse("сумма должна быть числом") from None
    if not number.is_finite():
        raise refuse("сумма должна быть числом")
    if number < 0:
        raise refuse("сумма не может быть отрицательной")
    if number > settings.MAX_REQUEST_AMOUNT:
        limit = f"{settings.MAX_REQUEST_AMOUNT:,.2f}".replace(",", " ").removesuffix(".00")
        raise refuse(f"сумма не может быть больше {limit} ₽")
    if number != number.quantize(CENT):
        raise refuse("не более двух знаков после запятой")
    return number.quantize(CENT)
