"""The reference lists (cities, roles, request types, directions, transaction types) and the
advertising campaigns."""
