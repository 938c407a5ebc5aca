"""The heavy worker's pool: no process while idle, one as soon as work arrives.

The heavy queue's work (validations, the mailbox import, maintenance) comes in bursts minutes apart,
and a prefork child holds ~90 MB doing nothing between them. `make run` starts the heavy worker with
`--autoscale 1,0`: celery's autoscaler forks the child when a task is received (a fork of the
already loaded parent: milliseconds) and this subclass lets it go after HEAVY_POOL_KEEPALIVE seconds
without work instead of celery's 30, so the idle stack keeps one heavy process. The child is still a
prefork process: hard time limits and a lost child's task handed back (acks late, reject on worker
lost) work as before. `--concurrency N` (compose) keeps N children for good, as usual.
"""
from __future__ import annotations

from celery.worker.autoscale import Autoscaler as CeleryAutoscaler

# Long enough for one burst (an upload's validation, the next one queued behind it) to reuse the
# child, short enough that a child forked by a periodic task is gone long before the next one.
HEAVY_POOL_KEEPALIVE = 10.0


class Autoscaler(CeleryAutoscaler):
    def __init__(self, *args, **kwargs) -> None:
        kwargs["keepalive"] = HEAVY_POOL_KEEPALIVE
        super().__init__(*args, **kwargs)
