"""Beat's scheduler: redbeat's, waiting out a Redis outage and never running beside another beat.

redbeat (2.4.2) renews its single-instance lock at every tick; with Redis gone the renewal raises
ConnectionError and beat exits, and a lock that could not be taken at start leaves `lock` None for
the next tick to fail on (sibson/redbeat#285, open). Here a tick that cannot reach Redis is logged
and tried again a few seconds later, with nothing sent meanwhile. When Redis is back the lock is
renewed only while it still holds this beat's token: if it expired during the outage this beat
takes it again if it is free, and if another beat took it, this one steps back and waits for it as
a beat started second does, sending nothing. An entry whose time passed during the outage runs once
when Redis is back (redbeat keeps its last run in Redis), not once per missed interval.
"""
from __future__ import annotations

import logging

from celery.beat import Scheduler as CeleryScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


class Scheduler(RedBeatScheduler):
    _redis_down = False
    _standing_by = False

    def tick(self, min=min, **kwargs):
        try:
            if self.lock_key and self.lock is None and not self._take_lock():
                return self.max_interval  # another beat runs: wait for the lock, send nothing
            interval = super().tick(min=min, **kwargs)
        except LockError:  # the renewal found another token (or none): the lock is no longer ours
            log.warning("beat: the lock expired while Redis was away; stepping back until it is ours again")
            self.lock = None
            return 0.1 if self._take_lock() else self.max_interval
        except REDIS_DOWN as exc:
            if not self._redis_down:
                log.warning("beat: Redis unreachable (%s); nothing is sent until it is back", type(exc).__name__)
            self._redis_down = True
            return self.max_interval
        if self._redis_down:
            log.warning("beat: Redis is back; beating again")
            self._redis_down = False
        return interval

    def _take_lock(self) -> bool:
        """Take the lock if it is free (as redbeat does at start, without blocking); True when taken."""
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # renew to, not by, the timeout
        if not lock.acquire(blocking=False):
            if not self._standing_by:
                log.warning("beat: another beat holds the lock; waiting for it")
            self._standing_by = True
            return False
        self.lock, self._standing_by = lock, False
        log.info("beat: Acquired lock")
        return True

    def close(self):
        try:
            super().close()
        except REDIS_DOWN:
            log.warning("beat: Redis unreachable at exit; the lock expires by itself in %s s", self.lock_timeout)
            self.lock = None
            CeleryScheduler.close(self)
