"""A background job as the API shows it, and the answer to work accepted with 202."""
from __future__ import annotations

from marshmallow import Schema, fields


class JobSchema(Schema):
    id = fields.UUID()
    kind = fields.String()
    status = fields.String(metadata={"enum": ["queued", "running", "succeeded", "failed"]})
    params = fields.Dict()
    result = fields.Dict(allow_none=True)
    error = fields.String(allow_none=True)
    attempts = fields.Integer()
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class JobAcceptedSchema(Schema):
    job_id = fields.UUID()
    status = fields.String()
