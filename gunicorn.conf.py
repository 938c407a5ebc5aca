"""gunicorn settings for the API (read from the working directory, or with `-c gunicorn.conf.py`).

Command-line options override these. What must hold for every deployment lives here:
- Prometheus multiprocess mode: every worker writes its metric values to files in
  PROMETHEUS_MULTIPROC_DIR and /metrics sums them; the directory is created and emptied when the
  master starts (stale files would add a previous run's counts) and a dead worker's live gauges
  are removed.
- Address, port and worker count come from settings.py (API_HOST, API_PORT, API_WORKERS), checked
  there: a malformed value stops the master at start with the setting's name.
- The access log is leadline's own (api/middleware.py: request id, path without query string);
  gunicorn's is off. If a deployment turns it on anyway, its format leaves out the query string,
  which may carry phone numbers.
"""
import os
import shutil
import tempfile

from settings import settings

bind = f"{settings.API_HOST}:{settings.API_PORT}"
workers = settings.API_WORKERS  # API_WORKERS (old name WORKERS); unset: the cores
# Two requests at once per worker (API_THREADS): a thread waits on PostgreSQL or Redis while the other
# runs; 1 is the plain sync worker.
threads = settings.API_THREADS
worker_class = "gthread" if threads > 1 else "sync"
timeout = 60
graceful_timeout = 20
# A worker is replaced after this many requests (a guard against slow leaks). Replacing one costs
# about a second of building the app, so the number is large: at 2,000 requests/s over five
# workers a low limit would keep a worker restarting every few seconds and halve the throughput.
max_requests = 50000
max_requests_jitter = 5000
accesslog = None
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'


def _empty(directory: str) -> None:
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


# Set before any worker imports prometheus_client: it picks its value storage at import time.
# Without a configured directory each master gets a fresh one of its own.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="leadline-metrics-")


def on_starting(server):
    _empty(os.environ["PROMETHEUS_MULTIPROC_DIR"])  # counts of a previous run must not be added


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.basename(directory).startswith("leadline-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)


def post_worker_init(worker):
    from storage.backend import get_storage  # S3: boto3 and its client built now, not by the first upload

    get_storage().warm()


def worker_exit(server, worker):
    from api.metrics import http_counts  # loaded in the worker: push its last request counts

    http_counts.flush()
