"""Phone numbers are stored and compared as digits with the country code: `79123456789`."""
from __future__ import annotations

import re

_NON_DIGITS = re.compile(r"\D+")


def normalize_phone(raw: str | None) -> str | None:
    """`+7 (912) 345-67-89`, `8 912 345 67 89`, `9123456789` -> `79123456789`.

    Numbers that are not Russian mobile/landline shapes are kept as their digits (foreign numbers,
    short extensions). Returns None when there are no digits at all.
    """
    if raw is None:
        return None
    digits = _NON_DIGITS.sub("", str(raw))
    if not digits:
        return None
    if len(digits) == 10:
        return "7" + digits
    if len(digits) == 11 and digits[0] == "8":
        return "7" + digits[1:]
    return digits
