"""The digest's chart: requests and completed jobs per day, as a PNG.

matplotlib (Agg backend: no display, no GUI toolkit) costs a worker some 40-60 MB once imported,
and a worker process keeps what it imported until it is recycled. The digest needs it once a day,
so the chart is drawn in a short-lived child process (`render_png`): this file run as a script,
which imports nothing but the standard library and matplotlib. The worker's memory does not move.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

TIMEOUT_SECONDS = 60
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ChartError(RuntimeError):
    pass


def render_png(days: list[dict[str, Any]], title: str) -> bytes:
    """`days`: [{"date": "2026-12-01", "requests": 5, "completed": 2}, ...] in order."""
    with tempfile.TemporaryDirectory(prefix="leadline-chart-") as config_dir:
        env = {"PATH": os.environ.get("PATH", ""), "MPLBACKEND": "Agg", "MPLCONFIGDIR": config_dir,
               "LANG": "C.UTF-8"}
        done = subprocess.run([sys.executable, "-I", os.path.abspath(__file__)],
                              input=json.dumps({"days": days, "title": title}).encode(),
                              capture_output=True, timeout=TIMEOUT_SECONDS, env=env, check=False)
    if done.returncode != 0 or not done.stdout.startswith(PNG_SIGNATURE):
        raise ChartError(f"chart not drawn (exit {done.returncode}): {done.stderr.decode(errors='replace')[-300:]}")
    return done.stdout


def draw(days: list[dict[str, Any]], title: str) -> bytes:
    """The PNG itself (in the child process)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # a Figure without pyplot: no global state, no GUI

    labels = [d["date"][8:10] + "." + d["date"][5:7] for d in days]
    requests = [d["requests"] for d in days]
    completed = [d["completed"] for d in days]
    figure = Figure(figsize=(8, 4), dpi=100)
    axes = figure.add_subplot()
    positions = range(len(days))
    axes.bar([p - 0.2 for p in positions], requests, width=0.4, label="Заявки", color="#4e79a7")
    axes.bar([p + 0.2 for p in positions], completed, width=0.4, label="Выполнено", color="#59a14f")
    axes.set_xticks(list(positions), labels, rotation=45, ha="right", fontsize=8)
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_title(title)
    axes.legend(loc="upper left")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


if __name__ == "__main__":
    spec = json.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(draw(spec["days"], spec["title"]))
