"""Refusals of the domain rules, whoever calls them (a route, a task, an import).

A rule raises one of these with a sentence a person can read (Russian, as the SPA shows it), a
stable code and, for invalid values, the fields concerned. The API answers them as 403 and 422;
a task records them as its failure.
"""
from __future__ import annotations


class RuleViolation(Exception):
    status = 400

    def __init__(self, detail: str, *, code: str, errors: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.errors = errors


class Forbidden(RuleViolation):
    """The caller may not do this (403)."""

    status = 403


class Invalid(RuleViolation):
    """The values break a rule of the domain (422)."""

    status = 422


class NotFound(RuleViolation):
    """What the caller asked for does not exist, or is not theirs to see (404)."""

    status = 404
