"""Starting the import of the old backend, and what the last one did."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates_schema

from api.jobs.schemas import JobSchema


class ImportStartSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    dry_run = fields.Boolean(load_default=False, metadata={"description": "check everything, write nothing"})
    source = fields.Raw(load_only=True, metadata={"description": "refused: the source is LEGACY_DATABASE_URL"})
    media = fields.Raw(load_only=True, metadata={"description": "refused: the folder is LEGACY_MEDIA_DIR"})

    @validates_schema
    def _no_addresses(self, data, **_kwargs):
        problems = {name: ["Задаётся настройкой сервера, не запросом"] for name in ("source", "media") if name in data}
        if problems:
            raise ValidationError(problems)


class ImportStateSchema(Schema):
    configured = fields.Boolean(metadata={"description": "LEGACY_DATABASE_URL is set"})
    last_job = fields.Nested(JobSchema, allow_none=True)
