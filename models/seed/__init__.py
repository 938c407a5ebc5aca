"""Demo data for a new installation (not domain rules)."""
