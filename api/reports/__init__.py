"""Reports computed on the server: dashboard, call centre, cities, masters, campaigns, cash."""
