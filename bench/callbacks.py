"""What the callback queue adds to call folding: the time to fold a call's summary (the event that
finishes a call and hands it to `models/callbacks/rules.after_call_folded`), with the hook and with it
switched off, in alternating rounds on one database.

    python -m bench.callbacks --database-url postgresql://postgres@127.0.0.1:5432/leadline_bench_callbacks

The database is created when missing and migrated to head; its telephony, callback and request tables
are emptied. Each round folds `--calls` summaries in this process, one transaction each, as the worker
does (rules.apply_event inside a unit of work): half missed incoming calls (each opens an item), a
quarter answered incoming calls from numbers that missed earlier and a quarter answered outbound
callbacks to the others (each closes one). Rounds alternate "hook on" and
"hook off" so that the load of a shared machine falls on both alike; the median per-call time of each,
and the difference, are printed. Nothing but PostgreSQL on 127.0.0.1 is contacted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.support import machine_info, prepare_database

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadline_bench_callbacks"
LINE = "74951234567"


def summaries(round_no: int, calls: int, t0: int) -> list[dict]:
    """The summaries of one round: missed, missed again, answered back, called back."""
    out: list[dict] = []
    quarter = max(1, calls // 4)
    phones = [f"7916{round_no:03d}{n:04d}" for n in range(quarter * 2)]
    for n, phone in enumerate(phones):  # half: missed incoming calls
        out.append({"entry_id": f"r{round_no}-m{n}", "call_direction": 1, "from": {"number": phone},
                    "to": {"extension": "200"}, "line_number": LINE, "create_time": t0 + n, "forward_time": 0,
                    "talk_time": 0, "end_time": t0 + n + 30, "entry_result": 0, "disconnect_reason": 1163})
    for n, phone in enumerate(phones[:quarter]):  # a quarter: the number calls again and is answered
        start = t0 + 3600 + n
        out.append({"entry_id": f"r{round_no}-a{n}", "call_direction": 1, "from": {"number": phone},
                    "to": {"extension": "105"}, "line_number": LINE, "create_time": start, "forward_time": start,
                    "talk_time": start + 5, "end_time": start + 60, "entry_result": 1, "disconnect_reason": 1110})
    for n, phone in enumerate(phones[quarter:]):  # a quarter: called back from the softphone
        start = t0 + 3600 + n
        out.append({"entry_id": f"r{round_no}-o{n}", "call_direction": 2, "from": {"extension": "105"},
                    "to": {"number": phone}, "line_number": LINE, "create_time": start, "forward_time": start,
                    "talk_time": start + 9, "end_time": start + 70, "entry_result": 1, "disconnect_reason": 1100})
    return out[:calls]


def fold_round(payloads: list[dict]) -> list[float]:
    from models.core.db import unit_of_work
    from models.telephony import rules

    times = []
    for payload in payloads:
        started = time.perf_counter()
        with unit_of_work():
            rules.apply_event(rules.SUMMARY, payload)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--calls", type=int, default=400, help="summaries folded per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant (alternating)")
    args = parser.parse_args()

    prepare_database(args.database_url)
    os.environ["DATABASE_URL"] = args.database_url
    from sqlalchemy import text

    from models.callbacks import rules as callback_rules
    from models.core.db import configure, unit_of_work
    from models.directories.tables import AdvertisingCampaign, City
    from models.telephony import rules

    configure(args.database_url)
    with unit_of_work() as session:
        session.execute(text("TRUNCATE callback_calls, callbacks, call_legs, calls, request_events, requests, "
                             "transactions, advertising_campaigns, cities RESTART IDENTITY CASCADE"))
        city = City(name="Казань")
        session.add(city)
        session.flush()
        session.add(AdvertisingCampaign(city_id=city.id, name="Авито", phone_number=LINE, phone=LINE))

    hook = callback_rules.after_call_folded
    per_variant: dict[str, list[float]] = {"hook on": [], "hook off": []}
    t0 = int(time.time()) - 7 * 86400
    round_no = 0
    for _ in range(args.rounds):
        for variant in ("hook on", "hook off"):
            rules.callbacks.after_call_folded = hook if variant == "hook on" else (lambda *_args: None)
            round_no += 1
            per_variant[variant].extend(fold_round(summaries(round_no, args.calls, t0 + round_no * 86400)))
    rules.callbacks.after_call_folded = hook
    with unit_of_work(read_only=True) as session:
        items = dict(session.execute(text("SELECT status, count(*) FROM callbacks GROUP BY status")).all())

    info = machine_info()
    print(f"leadline callback queue cost in call folding — {info.get('cpus', '?')} cores {info.get('cpu_model', '')}; "
          f"{args.rounds} rounds × {args.calls} summaries per variant, alternating")
    medians = {}
    for variant, times in per_variant.items():
        medians[variant] = statistics.median(times) * 1000
        p95 = sorted(times)[int(len(times) * 0.95)] * 1000
        print(f"  {variant:8}: median {medians[variant]:.2f} ms per summary, p95 {p95:.2f} ms ({len(times)} folded)")
    print(f"  the hook adds {medians['hook on'] - medians['hook off']:.2f} ms per finished call (median); "
          f"callback items made: {items}")


if __name__ == "__main__":
    main()
