"""Requests (заявки): their tables, the money of a request, and the rules every change goes through."""
