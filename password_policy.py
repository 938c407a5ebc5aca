"""The password policy: what a new password must be, as a pure function of the text.

A neutral module, importing no package of the project, so that both the domain (models/people/
passwords.py, which re-exports it beside the hashing) and settings.py (production refuses a weak
FLOWER_PASSWORD or ADMIN_PASSWORD at load time) apply the same rules without an import cycle.
"""
from __future__ import annotations

import re
import sys
from functools import lru_cache

MIN_LENGTH = 10
MAX_LENGTH = 256
# The production secrets an operator types (ADMIN_PASSWORD, FLOWER_PASSWORD) are held to more.
MIN_OPERATOR_LENGTH = 12


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of zxcvbn's list (leaked-password corpora), lower case.

    Loaded on first use only (the API's processes set passwords rarely), and the module that ships
    the list, which holds other large word lists too, is dropped again once the set is built."""
    name = "zxcvbn.frequency_lists"
    loaded = name in sys.modules
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    words = frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])
    if not loaded:
        sys.modules.pop(name, None)
    return words


_KEYBOARD_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm", "йцукенгшщзхъ", "фывапролджэ", "ячсмитьбю")
_TRAILING = re.compile(r"[\d\W_]+$")


def _is_sequence(text: str) -> bool:
    """A run along a keyboard row or the alphabet (either way), e.g. "qwertyuiop", "1234567890"."""
    if len(text) < 4:
        return False
    rows = _KEYBOARD_ROWS + ("abcdefghijklmnopqrstuvwxyz", "абвгдеёжзийклмнопрстуфхцчшщъыьэюя")
    return any(text in row or text in row[::-1] for row in rows) or all(
        ord(b) - ord(a) == ord(text[1]) - ord(text[0]) and abs(ord(b) - ord(a)) <= 1
        for a, b in zip(text, text[1:])
    )


def password_problem(password: str, *, min_length: int = MIN_LENGTH) -> str | None:
    """Why `password` may not be used (a sentence in Russian), or None when it is good enough."""
    if len(password) < min_length:
        return f"Пароль должен содержать не менее {min_length} символов"
    if len(password) > MAX_LENGTH:
        return f"Пароль должен содержать не более {MAX_LENGTH} символов"
    lowered = password.lower()
    if len(set(lowered)) < 4 or _is_sequence(lowered):
        return "Пароль слишком простой: не используйте повторы и последовательности символов"
    common = common_passwords()
    base = _TRAILING.sub("", lowered)
    if lowered in common or (base != lowered and (base in common or _is_sequence(base))):
        return "Этот пароль слишком распространён, выберите другой"
    return None
