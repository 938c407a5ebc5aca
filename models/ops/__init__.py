"""Operations: jobs, alerts and their rules."""
