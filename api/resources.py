"""Small helpers every resource uses: load-or-404, commit-or-409, the body a delete answers."""
from __future__ import annotations

from typing import TypeVar

from psycopg import errors as pg_errors
from sqlalchemy.exc import IntegrityError

from api.errors import ApiError
from models.core.base import MAX_INT4
from models.core.db import Session

T = TypeVar("T")


def get_or_404(model: type[T], ident: int, detail: str = "Запись не найдена", *, for_update: bool = False,
               max_id: int = MAX_INT4) -> T:
    """The row, or 404 with `detail`; ids outside the key's range are simply not found (max_id:
    MAX_INT8 for bigint keys)."""
    if not isinstance(ident, int) or ident <= 0 or ident > max_id:
        raise ApiError(404, detail, code="not_found")
    # FOR UPDATE OF the row itself: eager-loaded relationships are outer joins.
    obj = Session.get(model, ident, with_for_update={"of": model} if for_update else None)
    if obj is None:
        raise ApiError(404, detail, code="not_found")
    return obj


def commit_or_409(in_use: str = "Запись используется и не может быть удалена",
                  duplicate: str = "Такая запись уже существует",
                  invalid_reference: str = "Ссылка на несуществующую запись") -> None:
    """Commit; turn integrity violations into a 409 with a reason instead of a 500."""
    try:
        Session.commit()
    except IntegrityError as exc:
        Session.rollback()
        cause = exc.orig
        if isinstance(cause, pg_errors.ForeignKeyViolation):
            # Deleting a referenced row, or pointing at a row that does not exist.
            if "is still referenced" in str(cause):
                raise ApiError(409, in_use, code="in_use") from None
            raise ApiError(409, invalid_reference, code="invalid_reference") from None
        if isinstance(cause, pg_errors.UniqueViolation):
            raise ApiError(409, duplicate, code="duplicate") from None
        if isinstance(cause, pg_errors.CheckViolation):
            raise ApiError(422, "Недопустимое значение поля", code="validation_error") from None
        raise ApiError(409, "Конфликт данных", code="conflict") from None


def deleted(message: str = "Удалено") -> dict[str, str]:
    return {"message": message}
