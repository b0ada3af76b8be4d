"""BanList (node/p2p/bans.py) on a fake clock: expiry, re-ban keeps the later time, bounded size."""

from node.p2p.bans import Ban, BanList


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ban_expires_at_its_time() -> None:
    clock = FakeClock()
    bans = BanList(clock)
    assert bans.ban_for(b"a", 10, "bad frame") == 110.0
    assert bans.is_banned(b"a") and bans.get_ban(b"a") == Ban(110.0, "bad frame")
    clock.now = 109.999
    assert bans.is_banned(b"a")
    clock.now = 110.0
    assert not bans.is_banned(b"a") and len(bans) == 0


def test_reban_keeps_the_later_expiry() -> None:
    clock = FakeClock()
    bans = BanList(clock)
    bans.ban(b"a", until=200.0, reason="first")
    bans.ban(b"a", until=150.0, reason="shorter")
    assert bans.get_ban(b"a") == Ban(200.0, "first")
    bans.ban(b"a", until=300.0, reason="longer")
    assert bans.get_ban(b"a") == Ban(300.0, "longer")


def test_unban_and_prune() -> None:
    clock = FakeClock()
    bans = BanList(clock)
    bans.ban_for(b"a", 1, "x")
    bans.ban_for(b"b", 5, "x")
    bans.ban_for(b"c", 5, "x")
    bans.unban(b"c")
    clock.now += 2
    assert bans.prune() == 1
    assert [bans.is_banned(n) for n in (b"a", b"b", b"c")] == [False, True, False]


def test_capacity_drops_expired_then_soonest_ending_ban() -> None:
    clock = FakeClock()
    bans = BanList(clock, capacity=3)
    bans.ban(b"old", until=101.0, reason="x")
    bans.ban(b"b", until=500.0, reason="x")
    bans.ban(b"a", until=500.0, reason="x")
    clock.now = 200.0
    bans.ban(b"new", until=900.0, reason="x")  # "old" expired: dropped first
    assert len(bans) == 3 and not bans.is_banned(b"old")
    bans.ban(b"newer", until=900.0, reason="x")  # then the soonest to end, ties by node id: "a"
    assert [bans.is_banned(n) for n in (b"a", b"b", b"new", b"newer")] == [False, True, True, True]
