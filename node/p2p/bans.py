"""Temporary bans of peers by node id, on an injected clock.

A peer is banned after it broke the wire protocol once it was authenticated (a `FrameError` in the connection
layer). Handshake failures never ban: the identity was not proven. A ban is an expiry time on the `clock`
passed in (`time.monotonic` in the node, a fake clock in tests, so no test sleeps). Re-banning keeps the later
expiry. The list is bounded: at `capacity` entries, expired bans are dropped first, then the ban that ends
soonest (ties broken by node id), so a flood of throwaway identities cannot grow memory without limit.

Known limit: the length prefix and the MAC are checked before the sender is proven, so an attacker on the network
path who injects bytes into a session gets the honest peer banned (`FrameTooLarge`, `MalformedFrame`,
`FrameAuthenticationFailed`). Only `MalformedMessage` and `UnexpectedMessage` come from an authenticated frame
and prove the peer itself misbehaved. The ban is short and the same attacker could cut the connection anyway.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ban:
    until: float
    reason: str


class BanList:
    def __init__(self, clock: Callable[[], float], *, capacity: int = 4096) -> None:
        self.clock = clock
        self.capacity = capacity
        self._bans: dict[bytes, Ban] = {}

    def __len__(self) -> int:
        return len(self._bans)

    def ban(self, node_id: bytes, *, until: float, reason: str) -> None:
        current = self._bans.get(node_id)
        if current is not None and current.until >= until:
            return
        self._bans[node_id] = Ban(until, reason)
        if len(self._bans) > self.capacity:
            self._evict()

    def ban_for(self, node_id: bytes, seconds: float, reason: str) -> float:
        """Ban for `seconds` from now; returns the expiry time."""
        until = self.clock() + seconds
        self.ban(node_id, until=until, reason=reason)
        return until

    def unban(self, node_id: bytes) -> None:
        self._bans.pop(node_id, None)

    def get_ban(self, node_id: bytes) -> Ban | None:
        """The ban in force on `node_id` now, or None (an expired ban is removed)."""
        entry = self._bans.get(node_id)
        if entry is not None and entry.until <= self.clock():
            del self._bans[node_id]
            return None
        return entry

    def is_banned(self, node_id: bytes) -> bool:
        return self.get_ban(node_id) is not None

    def prune(self) -> int:
        """Drop expired bans; returns how many."""
        now = self.clock()
        expired = [node_id for node_id, entry in self._bans.items() if entry.until <= now]
        for node_id in expired:
            del self._bans[node_id]
        return len(expired)

    def _evict(self) -> None:
        self.prune()
        while len(self._bans) > self.capacity:
            soonest = min(self._bans.items(), key=lambda item: (item[1].until, item[0]))[0]
            del self._bans[soonest]
