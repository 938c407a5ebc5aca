"""Shapes of the file endpoints: the 202 of an upload, a file's state, the owner of a generic upload."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from models.core.base import MAX_INT4
from storage.kinds import KINDS, OWNER_TYPES

# OpenAPI request body of every upload (parsed by storage/upload.py, not by webargs: it streams).
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary", "description": "the document"}},
            }
        }
    },
}


class UploadAcceptedSchema(Schema):
    file_id = fields.Integer()
    job_id = fields.UUID()
    status = fields.String(metadata={"enum": ["pending"]})
    file_path = fields.String(allow_none=True)


class FileSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"enum": list(KINDS)})
    file_type = fields.String()
    status = fields.String(metadata={"enum": ["pending", "ready", "rejected"]})
    reject_reason = fields.String(allow_none=True, metadata={"description": "why it was refused, in Russian"})
    original_name = fields.String()
    size_bytes = fields.Integer(allow_none=True)
    sniffed_type = fields.String(allow_none=True)
    sha256 = fields.String(allow_none=True)
    file_path = fields.String(allow_none=True, metadata={"description": "relative to the media root, when ready"})
    request_id = fields.Integer(allow_none=True)
    transaction_id = fields.Integer(allow_none=True)
    replaced_by_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    validated_at = fields.DateTime(allow_none=True)


class FileOwnerQuery(Schema):
    """Owner and kind of `POST /api/files`: in the query string, or as form fields before the file."""

    class Meta:
        unknown = EXCLUDE

    owner_type = fields.String(validate=validate.OneOf(OWNER_TYPES), load_default=None)
    owner_id = fields.Integer(validate=validate.Range(min=1, max=MAX_INT4), load_default=None)
    kind = fields.String(validate=validate.OneOf(list(KINDS)), load_default=None)
