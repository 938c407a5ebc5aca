"""Moving in from the old FastAPI backend: read its database and media folder, import them into
leadline (idempotent, resumable), report what was refused or differs, and verify the result."""
