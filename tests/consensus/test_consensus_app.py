"""The synchronous application helper: validators commit heights through `drive`."""

from consensus.app import drive
from consensus.engine import Engine, EngineConfig
from consensus.events import Broadcast, Committed, ProposalReceived, ScheduleTimeout, VoteReceived
from consensus.messages import Proposal
from consensus.validators import ValidatorUpdate
from consensus.wal import MemoryWAL
from consensus_helpers import TIMEOUTS, make_signers, make_valset


class CounterApp:
    def __init__(self, updates=()) -> None:
        self.committed: list[bytes] = []
        self.updates = updates

    def propose_value(self, height, round_, last_commit):
        assert (last_commit is None) == (height == 1)
        return b"block %d" % height

    def validate_value(self, height, value):
        return value == b"block %d" % height

    def commit(self, height, value, certificate):
        self.committed.append(value)
        return self.updates if height == 1 else ()


def test_lone_validator_commits_one_height_per_committed_event():
    signer = make_signers(1, b"solo")[0]
    valset = make_valset([signer])
    engine = Engine(EngineConfig("solo", TIMEOUTS), signer, 1, valset, valset.next_height_set(), MemoryWAL())
    app = CounterApp()
    driven = drive(engine, app, lambda e: e.start(0), 0)
    assert app.committed == [b"block 1"] and driven.committed == [Committed(1)]
    assert {type(a) for a in driven.actions} <= {Broadcast, ScheduleTimeout}
    for height in (1, 2, 3):
        driven = drive(engine, app, lambda e, c=driven.committed[0]: e.handle(c, 10), 10)
        assert driven.committed == [Committed(height + 1)]
    assert app.committed == [b"block %d" % h for h in (1, 2, 3, 4)]


def test_four_validators_agree_through_drive_with_a_set_change():
    signers = make_signers(4, b"four")
    valset = make_valset(signers)
    newcomer = make_signers(1, b"newcomer")[0]
    apps = [CounterApp((ValidatorUpdate(newcomer.public_key, 1),)) for _ in signers]
    engines = [Engine(EngineConfig("four", TIMEOUTS), s, 1, valset, valset.next_height_set(), MemoryWAL())
               for s in signers]
    queue = [(i, a) for i, e in enumerate(engines) for a in drive(e, apps[i], lambda e: e.start(0), 0).actions]
    while queue:
        i, action = queue.pop(0)
        if not isinstance(action, Broadcast):
            continue
        msg = action.message
        event = ProposalReceived(msg) if isinstance(msg, Proposal) else VoteReceived(msg)
        for j, engine in enumerate(engines):
            if j != i and engine.height == 1:
                driven = drive(engine, apps[j], lambda e: e.handle(event, 1), 1)
                queue += [(j, a) for a in driven.actions]
    assert all(app.committed == [b"block 1"] for app in apps)
    for engine, app in zip(engines, apps):
        drive(engine, app, lambda e: e.handle(Committed(1, app.updates), 2), 2)
        assert engine.next_validators.power_of(newcomer.address) == 1
        assert engine.validators.get(newcomer.address) is None
