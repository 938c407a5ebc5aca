"""Money of a request (SPEC §2): computed on the server, kept to the kopeck."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from settings import settings

CENT = Decimal("0.01")


def to_money(value: Decimal | int | str) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def request_money(result: Decimal | None, expenses: Decimal | None,
                  share: Decimal | None = None) -> tuple[Decimal, Decimal]:
    """(net_amount, master_handover): net = result − expenses; handover = net × MASTER_SHARE."""
    net = to_money((result or Decimal(0)) - (expenses or Decimal(0)))
    return net, to_money(net * (settings.MASTER_SHARE if share is None else share))
