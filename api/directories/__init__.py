"""Directories (cities, roles, request types, directions, transaction types) and campaigns."""
