"""The resume policy of watch_timeline, shared by the sync and async clients."""

from __future__ import annotations

import grpc

from fanline_client._options import RESUMABLE_WATCH_CODES, ClientOptions


class WatchBackoff:
    """When to resume a watch that ended, and how long to wait first.

    An attempt that received a response was live: after it ends the watch resumes after the
    initial delay (a reader that fell behind catches up at once). Each further attempt that
    ends without receiving anything doubles the delay, up to `watch_max_backoff_s`, so a
    server that is refusing watchers is not hammered; after `watch_max_failures` of those in
    a row the watch gives up and raises the last error."""

    def __init__(self, options: ClientOptions) -> None:
        self._options = options
        self._delay = options.watch_initial_backoff_s
        self._empty_failures = 0  # attempts in a row that ended without receiving anything
        self._live = False  # the current attempt has received something

    def received(self) -> None:
        self._live = True

    def delay_after(self, error: grpc.RpcError) -> float:
        """Seconds to wait before resuming after `error`; re-raises it when it is not a code
        the watch resumes from, or when the failures in a row exceed the limit."""
        code = error.code() if callable(getattr(error, "code", None)) else None
        if code not in RESUMABLE_WATCH_CODES:
            raise error
        if self._live:
            self._live = False
            self._empty_failures = 0
            self._delay = self._options.watch_initial_backoff_s
        else:
            self._empty_failures += 1
            limit = self._options.watch_max_failures
            if limit is not None and self._empty_failures > limit:
                raise error
        delay = self._delay
        self._delay = min(self._delay * 2, self._options.watch_max_backoff_s)
        return delay
