"""Infrastructure every domain uses: the declarative base, the engine and session with the unit of
work, Redis, migrations, readiness probes, business time, vocabularies, domain errors, phones."""
