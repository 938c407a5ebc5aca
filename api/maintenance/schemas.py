"""A maintenance task's newest run and newest completed report."""
from __future__ import annotations

from marshmallow import Schema, fields

from api.jobs.schemas import JobSchema


class MaintenanceReportSchema(Schema):
    name = fields.String()
    title = fields.String()
    last_run = fields.Nested(JobSchema, allow_none=True, metadata={"description": "the newest run, any outcome"})
    report = fields.Nested(JobSchema, allow_none=True, metadata={"description": "the newest completed run"})
