"""Memory of the idle `make run` stack: resident (RSS) and proportional (PSS) memory per process.

    python -m bench.memory                 # start the stack as `make run` does, measure, stop it
    python -m bench.memory --attach PID    # measure a running stack: PID of its `flask ... stack`

Started here, the stack runs exactly as `make run` runs it (`flask --app api stack`, default
settings) with embedded PostgreSQL and Redis under a var folder of its own (a temporary one unless
`--var-dir`) and free ports, so it can run beside another stack. The script waits until the API is
ready and both workers answer, then until the stack is idle (its processes together use less than
`--idle-cores` of a core over 5 s, at most `--idle-wait` seconds), and prints every process of the
stack's tree (the `flask ... stack` process and all its descendants) with its role, RSS, PSS and
USS, the totals per role and over the stack. The embedded PostgreSQL and Redis are not the stack's
children (they outlive it) and are printed apart, not counted in the total.

RSS counts the pages a process shares (a forked pool child, code of the same libraries) in every
process that maps them, so the RSS total is what the issue's budget is about and the most
pessimistic figure; PSS divides each shared page among its sharers and sums to what the machine
really holds.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import psutil

from bench.support import REPO_ROOT, machine_info, start_stack, stop_stack, tree, wait_ready

MB = 2 ** 20


def measure(root: psutil.Process) -> list[dict]:
    rows = []
    for process, name in tree(root):
        try:
            info = process.memory_full_info()
            rows.append({"role": name, "pid": process.pid, "process": process.name(),
                         "threads": process.num_threads(), "rss_mb": info.rss / MB, "pss_mb": info.pss / MB,
                         "uss_mb": info.uss / MB})
        except psutil.Error:
            continue
    return rows


def services(var_dir: Path) -> list[dict]:
    """The embedded PostgreSQL (postmaster and backends) and Redis, if this var folder runs them."""
    rows = []
    try:
        postmaster = psutil.Process(int((var_dir / "pg" / "postmaster.pid").read_text().split()[0]))
        processes = [("postgres", postmaster), *(("postgres", p) for p in postmaster.children())]
    except (OSError, ValueError, psutil.Error):
        processes = []
    try:
        processes.append(("redis", psutil.Process(int((var_dir / "redis" / "redis.pid").read_text()))))
    except (OSError, ValueError, psutil.Error):
        pass
    for name, process in processes:
        try:
            info = process.memory_full_info()
            rows.append({"role": name, "pid": process.pid, "rss_mb": info.rss / MB, "pss_mb": info.pss / MB})
        except psutil.Error:
            continue
    return rows


def tree_cpu_seconds(root: psutil.Process) -> float:
    total = 0.0
    for process, _name in tree(root):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def wait_idle(root: psutil.Process, idle_cores: float, timeout: float) -> float:
    """Wait until the tree uses less than `idle_cores` over a 5 s window; returns the last figure."""
    deadline = time.monotonic() + timeout
    while True:
        before, started = tree_cpu_seconds(root), time.monotonic()
        time.sleep(5)
        cores = (tree_cpu_seconds(root) - before) / (time.monotonic() - started)
        if cores < idle_cores or time.monotonic() > deadline:
            return cores


def report(rows: list[dict], service_rows: list[dict], idle: float) -> dict:
    print(f"{'role':<11} {'pid':>7} {'process':<16} {'thr':>4} {'RSS MB':>8} {'PSS MB':>8} {'USS MB':>8}")
    for row in rows:
        print(f"{row['role']:<11} {row['pid']:>7} {row['process'][:16]:<16} {row['threads']:>4} "
              f"{row['rss_mb']:>8.1f} {row['pss_mb']:>8.1f} {row['uss_mb']:>8.1f}")
    roles: dict[str, dict] = {}
    for row in rows:
        entry = roles.setdefault(row["role"], {"processes": 0, "rss_mb": 0.0, "pss_mb": 0.0})
        entry["processes"] += 1
        entry["rss_mb"] += row["rss_mb"]
        entry["pss_mb"] += row["pss_mb"]
    print(f"\n{'role':<11} {'procs':>5} {'RSS MB':>8} {'PSS MB':>8}")
    for name, entry in roles.items():
        print(f"{name:<11} {entry['processes']:>5} {entry['rss_mb']:>8.1f} {entry['pss_mb']:>8.1f}")
    total_rss, total_pss = sum(r["rss_mb"] for r in rows), sum(r["pss_mb"] for r in rows)
    print(f"{'stack':<11} {len(rows):>5} {total_rss:>8.1f} {total_pss:>8.1f}   (idle: {idle:.3f} cores)")
    if service_rows:
        print(f"{'(embedded)':<11} {len(service_rows):>5} {sum(r['rss_mb'] for r in service_rows):>8.1f} "
              f"{sum(r['pss_mb'] for r in service_rows):>8.1f}   PostgreSQL and Redis, not counted above")
    return {"machine": machine_info(), "processes": rows, "roles": roles, "total_rss_mb": total_rss,
            "total_pss_mb": total_pss, "idle_cores": idle, "embedded_services": service_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attach", type=int, help="PID of a running `flask --app api stack`")
    parser.add_argument("--var-dir", type=Path,
                        help="embedded services' folder (started stack; a temporary one by default)")
    parser.add_argument("--settle", type=float, default=20, help="seconds to wait after ready before the idle check")
    parser.add_argument("--idle-cores", type=float, default=0.05)
    parser.add_argument("--idle-wait", type=float, default=120)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    if args.attach:
        root = psutil.Process(args.attach)
        var_dir = Path(root.environ().get("LEADLINE_VAR_DIR") or REPO_ROOT / "var")
        time.sleep(args.settle)
        idle = wait_idle(root, args.idle_cores, args.idle_wait)
        figures = report(measure(root), services(var_dir), idle)
    else:
        temporary = None if args.var_dir else tempfile.TemporaryDirectory(prefix="leadline-memory-")
        var_dir = args.var_dir or Path(temporary.name) / "var"
        log_path = var_dir.parent / "memory-stack.log"
        var_dir.mkdir(parents=True, exist_ok=True)
        process, env = start_stack(var_dir, log_path)
        try:
            wait_ready(process, f"http://127.0.0.1:{env['API_PORT']}/api", log_path)
            time.sleep(args.settle)
            root = psutil.Process(process.pid)
            idle = wait_idle(root, args.idle_cores, args.idle_wait)
            figures = report(measure(root), services(var_dir), idle)
        finally:
            stop_stack(process, env)
            if temporary is not None:
                temporary.cleanup()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
