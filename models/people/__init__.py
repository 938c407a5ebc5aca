"""Users and their passwords."""
