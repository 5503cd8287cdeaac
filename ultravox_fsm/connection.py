"""The connection policy: retry budget, backoff and close codes (the CONNECTION table's model).

Backoff is a deadline (`deadline`), never a sleep: the adapter creates the next call when the
engine's timer fires BACKOFF_EXPIRED. The turn table hears about the call through the two
callbacks the session gives it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import commands as cmd
from . import events as ev
from .runner import Core
from .states import Conn

# The API's answer to a priorCallId it cannot use (unknown, expired, another account's call).
PRIOR_REFUSED = frozenset({400, 404, 422})
NORMAL_CLOSE = frozenset({1000, 1001})


@dataclass(eq=False)
class Connection:
    core: Core
    on_live: Callable[[str, bool], None]
    on_lost: Callable[[str], None]
    on_end: Callable[[str, bool], None]
    state: Conn = Conn.CREATING
    call_id: str | None = None
    prior_call_id: str | None = None  # what the call being created was asked to continue
    streak: int = 0  # failed calls in a row (the retry budget)
    flaps: int = 0  # calls in a row that ended before `proven_after` (the backoff's growth)
    proved: bool = False
    live_since: float = 0.0
    deadline: float | None = None  # when the backoff ends
    restart_after_join: bool = False
    retry_reason: str = ""  # why the call after the backoff is made

    # --- guards -----------------------------------------------------------------------------

    def prior_refused(self, data: ev.CallFailed) -> bool:
        return self.prior_call_id is not None and data.status in PRIOR_REFUSED

    def retryable(self, data: ev.CallFailed) -> bool:
        return data.retryable

    def budget_left(self, data: Any) -> bool:
        return self.streak < self.core.options.max_retry or self._proved_now()

    def stale_socket(self, data: ev.SocketClosed) -> bool:
        return data.call_id != self.call_id

    def normal_close(self, data: ev.SocketClosed) -> bool:
        return data.code in NORMAL_CLOSE

    def _proved_now(self) -> bool:
        live = self.state is Conn.LIVE
        return live and (
            self.proved or self.core.now - self.live_since >= self.core.options.proven_after
        )

    # --- effects ----------------------------------------------------------------------------

    def went_live(self, data: ev.Connected) -> None:
        self.call_id = data.call_id
        self.proved = False
        self.live_since = self.core.now

    def announce_live(self, data: ev.Connected) -> None:
        """Once LIVE (a restart it causes must find the call live, to replace it)."""
        stale, self.restart_after_join = self.restart_after_join, False
        self.on_live(data.call_id, stale)

    def retry_without_prior(self, data: ev.CallFailed) -> None:
        self.core.report("prior_call_refused", f"priorCallId refused ({data.detail}); history sent")
        self._start(None, "the prior call was refused; starting over with the history")

    def back_off(self, data: ev.CallFailed) -> None:
        self.retry_reason = f"retry: {data.detail}"
        self._back_off(data.retry_after)

    def give_up(self, data: ev.CallFailed | ev.SocketClosed) -> None:
        if isinstance(data, ev.CallFailed):
            why = f"could not create a call: {data.detail}"
            if data.retryable:
                why += f" ({self.streak + 1} failures in a row)"
        else:
            why = (
                f"the call socket closed ({data.code}) {self.streak + 1} times in a row before "
                "a turn completed"
            )
        self.deadline = None
        self.on_end(why, True)

    def call_ended(self, data: ev.SocketClosed) -> None:
        self.on_end(f"closed by the server, code {data.code}", False)

    def call_lost(self, data: ev.SocketClosed) -> None:
        self.on_lost(f"socket closed with code {data.code}")
        self.retry_reason = f"reconnect: {data.code}"
        self._back_off(None)

    def start_call(self, data: Any) -> None:
        self._start(self.call_id, self.retry_reason)

    def replace_call(self, data: str) -> None:
        self._start(self.call_id, data)

    def mark_stale(self, data: str) -> None:
        """The call being created has the old configuration: replace it once it is live."""
        self.restart_after_join = True

    def prove(self, data: Any) -> None:
        self.proved = True

    def stop(self, data: Any) -> None:
        self.deadline = None

    def ignore(self, data: Any) -> None:
        """Nothing to do."""

    # --- helpers ----------------------------------------------------------------------------

    def _start(self, prior: str | None, reason: str) -> None:
        self.prior_call_id = prior
        self.deadline = None
        self.restart_after_join = False  # this call is built from the options as they are now
        self.core.emit(cmd.StartCall(reason=reason, prior_call_id=prior))

    def _back_off(self, retry_after: float | None) -> None:
        """Exponential and jittered; the server's Retry-After is honoured up to the cap."""
        o = self.core.options
        if self._proved_now():
            self.streak = 0
        live_long = self.state is Conn.LIVE and self.core.now - self.live_since >= o.proven_after
        self.flaps = 0 if live_long else self.flaps + 1
        self.streak += 1
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            delay = min(retry_after, o.max_backoff)
        else:
            if retry_after is not None:
                self.core.report("retry_after", f"Retry-After {retry_after!r} capped")
            n = max(self.streak, self.flaps)  # a call that proves itself, then drops: grow
            base = o.first_retry_delay if n == 1 else o.retry_interval * 2 ** (n - 2)
            delay = min(base, o.max_backoff) * (0.5 + self.core.rng.random())
        self.deadline = self.core.now + delay
