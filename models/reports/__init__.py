"""The reports' queries and the daily rollups they read."""
