"""Demo data for `flask --app api seed-demo` (placeholder until written)."""


def seed(request_count: int = 400, random_seed: int = 0) -> dict[str, int]:
    raise NotImplementedError
