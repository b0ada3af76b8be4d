"""The admission pipeline (node/submit.py): batched signature checks off the loop, outcomes per caller, relay to
every peer but the source in frame-sized MSG_TX_BATCH messages, and the refusals of a peer's batch."""

import asyncio

import pytest

from genesis import minimal_genesis, validate_genesis
from node.mempool import Mempool, MempoolLimits
from node.submit import (
    MAX_TX_BATCH, MSG_TX_BATCH, NodeSubmitter, TxBatchError, make_tx_gossip, parse_tx_batch,
)
from node.telemetry import NodeMetrics
from node.verify import VerifyPool, VerifyWorkersLost
from stf.crypto import PrivateKey
from stf.state import State, initialize_state
from stf.tx import Transfer, sign_transaction

USD = 0
KEYS = [PrivateKey(i.to_bytes(32, "big")) for i in range(1, 6)]
PEER_A, PEER_B, PEER_C = b"\xaa" * 20, b"\xbb" * 20, b"\xcc" * 20


def make_state() -> State:
    balances = [(k.address.hex(), USD, 10**12) for k in KEYS]
    return initialize_state(validate_genesis(minimal_genesis(balances=balances)))


def pay(state: State, key: PrivateKey, nonce_offset: int) -> bytes:
    return sign_transaction(key, state.params.chain_id, state.time_ms + nonce_offset,
                            [Transfer(KEYS[-1].address, USD, 1)])


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[tuple[bytes, bytes | None]]] = []

    def __call__(self, items: list[tuple[bytes, bytes | None]]) -> None:
        self.batches.append(list(items))

    @property
    def wires(self) -> list[bytes]:
        return [wire for batch in self.batches for wire, _ in batch]


def make_submitter(state: State, **options) -> tuple[NodeSubmitter, Mempool, Recorder]:
    """Signatures checked on the loop unless the test asks for worker processes."""
    mempool, gossip = Mempool(MempoolLimits(max_txs_per_sender=5_000)), Recorder()
    options.setdefault("verify_workers", 0)
    return NodeSubmitter(mempool, lambda: state, gossip, NodeMetrics(), **options), mempool, gossip


@pytest.mark.parametrize("workers", [0, 2])
def test_submit_admits_in_batches_answers_each_caller_and_gossips_once(workers: int) -> None:
    state = make_state()
    submitter, mempool, gossip = make_submitter(state, verify_workers=workers)
    wires = [pay(state, KEYS[i % 4], 1 + i) for i in range(300)]

    async def run() -> list:
        try:
            return await asyncio.gather(*(submitter.submit(w) for w in wires))
        finally:
            await submitter.aclose()
    results = asyncio.run(run())
    assert [r.code for r in results] == ["ok"] * 300 and len(mempool) == 300
    assert gossip.wires == wires and all(source is None for b in gossip.batches for _, source in b)
    assert submitter.batches < 10 and len(submitter) == 0   # batched, not one verification call per transaction


def test_duplicates_share_one_outcome_and_pending_ones_are_known() -> None:
    state = make_state()
    submitter, mempool, gossip = make_submitter(state)
    wire = pay(state, KEYS[0], 1)

    async def run() -> list:
        first = await asyncio.gather(submitter.submit(wire), submitter.submit(wire))
        return [*first, await submitter.submit(wire)]
    codes = [r.code for r in asyncio.run(run())]
    assert codes == ["ok", "ok", "already_in_mempool"] and gossip.wires == [wire]
    submitter.close()


def test_invalid_signature_nonce_and_bytes_are_refused_with_their_codes() -> None:
    state = make_state()
    submitter, mempool, gossip = make_submitter(state)
    good = pay(state, KEYS[0], 1)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    reused = sign_transaction(KEYS[0], state.params.chain_id, state.time_ms + 1, [Transfer(KEYS[1].address, USD, 2)])

    async def run() -> list:
        return [await submitter.submit(x) for x in (forged, b"\x01garbage", good, reused, "text")]
    codes = [r.code for r in asyncio.run(run())]
    assert codes == ["bad_signature", "malformed_transaction", "ok", "nonce_already_pending", "malformed_transaction"]
    assert gossip.wires == [good] and len(mempool) == 1
    submitter.close()


def test_a_peers_transactions_are_relayed_to_the_others_and_never_answered() -> None:
    state = make_state()
    submitter, mempool, gossip = make_submitter(state)
    wires = [pay(state, KEYS[1], 1 + i) for i in range(5)]

    async def run() -> None:
        for wire in wires:
            submitter.receive(wire, PEER_A)
        submitter.receive(wires[0], PEER_B)     # a second copy while queued: dropped
        while len(submitter):
            await asyncio.sleep(0.01)
        submitter.receive(wires[1], PEER_C)     # already pending: dropped at once
        await asyncio.sleep(0)
    asyncio.run(run())
    assert len(mempool) == 5 and gossip.batches == [[(w, PEER_A) for w in wires]]
    submitter.close()


def test_a_full_queue_refuses_submissions_and_drops_peers_transactions() -> None:
    state = make_state()
    submitter, mempool, gossip = make_submitter(state, max_queue=2)
    wires = [pay(state, KEYS[2], 1 + i) for i in range(4)]

    async def run() -> list:
        tasks = [asyncio.ensure_future(submitter.submit(w)) for w in wires[:3]]
        await asyncio.sleep(0)       # the first two are queued before the worker runs
        submitter.receive(wires[3], PEER_A)
        return [r.code for r in await asyncio.gather(*tasks)]
    assert asyncio.run(run()) == ["ok", "ok", "mempool_full"]
    assert submitter.dropped_from_peers == 1 and len(mempool) == 2
    submitter.close()


def test_expedite_admits_a_proposals_transactions_ahead_of_the_queue_and_each_once() -> None:
    state = make_state()
    submitter, mempool, gossip = make_submitter(state, max_batch=10)
    queued = [pay(state, KEYS[1], 1 + i) for i in range(30)]
    unseen, pending = pay(state, KEYS[2], 1), pay(state, KEYS[3], 1)
    mempool.admit(pending, state)

    async def run() -> tuple[int, int]:
        for wire in queued:
            submitter.receive(wire, PEER_A)
        await submitter.expedite([queued[25], pending, unseen, queued[29], 7], PEER_B)   # 7: not bytes, ignored
        at_return = len(mempool)   # the queue's worker has not run a batch yet: only what expedite took
        while len(submitter):
            await asyncio.sleep(0.01)
        return at_return, submitter.batches
    at_return, batches = asyncio.run(run())
    assert at_return == 4 and len(mempool) == 32     # the three it lacked (and the one already pending)
    relayed = [wire for wire, _ in gossip.batches[0]]
    assert relayed == [queued[25], unseen, queued[29]] and dict(gossip.batches[0])[unseen] == PEER_B
    assert sorted(gossip.wires) == sorted(queued + [unseen])   # each admitted and relayed once: no second copy
    assert dict(gossip.batches[0])[queued[25]] == PEER_A and batches == 1 + 3   # 28 left: batches of 10, 10, 8
    submitter.close()


class GatedPool:
    """A stand-in VerifyPool: records each request's size, holds it until `gate` is set, then answers every check
    valid, or (with `lose`) raises VerifyWorkersLost as when `aclose` killed the workers meanwhile."""

    def __init__(self, lose: bool = False) -> None:
        self.gate, self.checked, self.lose, self.closed = asyncio.Event(), [], lose, False

    async def verify(self, checks):
        self.checked.append(len(checks))
        await self.gate.wait()
        if self.lose:
            raise VerifyWorkersLost("verify worker 1 is gone (IncompleteReadError)")
        return [True] * len(checks)

    def close(self) -> None:
        self.closed = True


def test_expedite_waits_for_a_batch_already_under_way_instead_of_checking_again() -> None:
    state = make_state()
    wire = pay(state, KEYS[0], 1)

    async def run() -> tuple:
        pool = GatedPool()
        submitter, mempool, _ = make_submitter(state, pool=pool, verify_workers=1)
        submitter.receive(wire, PEER_A)
        while not pool.checked:               # the queue's worker took it and is checking its signature
            await asyncio.sleep(0.001)
        expediting = asyncio.ensure_future(submitter.expedite([wire], PEER_B))
        await asyncio.sleep(0.02)
        waiting = not expediting.done()
        pool.gate.set()
        await asyncio.wait_for(expediting, 5)
        return waiting, pool.checked, wire in mempool.verified()
    assert asyncio.run(run()) == (True, [1], True)


class FakePeer:
    def __init__(self) -> None:
        self.sent: list[tuple[int, list[bytes]]] = []

    def send(self, msg_type: int, payload: list[bytes]) -> bool:
        self.sent.append((msg_type, payload))
        return True


def test_gossip_skips_the_source_and_splits_batches_to_fit_a_frame() -> None:
    peers = {PEER_A: FakePeer(), PEER_B: FakePeer()}
    wires = [bytes([i]) * 1000 for i in range(20)]
    gossip = make_tx_gossip(lambda: peers, max_frame_bytes=4096 + 5 * 1003)
    gossip([(w, PEER_A if i % 2 else None) for i, w in enumerate(wires)])
    to_b = [wire for msg_type, chunk in peers[PEER_B].sent for wire in chunk]
    assert to_b == wires and all(msg_type == MSG_TX_BATCH and len(chunk) <= 5 for msg_type, chunk in peers[PEER_B].sent)
    assert [w for _, chunk in peers[PEER_A].sent for w in chunk] == wires[::2]


def test_parse_tx_batch_accepts_an_array_of_wires() -> None:
    assert parse_tx_batch([b"a", b"b"]) == [b"a", b"b"]


@pytest.mark.parametrize("payload", [[], b"tx", None, [b"a", "b"], [b"a", 1], [b"x"] * (MAX_TX_BATCH + 1)])
def test_invalid_tx_batch_is_a_protocol_violation(payload) -> None:
    with pytest.raises(TxBatchError):
        parse_tx_batch(payload)


def test_invalid_tx_batch_from_a_peer_bans_it_and_a_good_one_is_queued() -> None:
    from node.p2p.frames import Message
    from node.validator import route_direct
    state = make_state()
    submitter, mempool, gossip = make_submitter(state)

    class Peer:
        node_id = PEER_A
        closed: list = []

        def disconnect(self, reason: str, ban: bool = False) -> None:
            self.closed.append((reason, ban))

    async def run() -> None:
        peer = Peer()
        route_direct(None, None, None, peer, Message(MSG_TX_BATCH, [b"a", 7]), submitter)
        assert peer.closed and peer.closed[0][1] is True and "malformed transaction batch" in peer.closed[0][0]
        route_direct(None, None, None, peer, Message(MSG_TX_BATCH, [pay(state, KEYS[0], 1)]), submitter)
        while len(submitter):
            await asyncio.sleep(0.01)
    asyncio.run(run())
    assert len(mempool) == 1 and gossip.batches[0][0][1] == PEER_A
    submitter.close()


def test_a_validators_transaction_is_not_relayed_to_other_validators_but_reaches_other_peers() -> None:
    full_node = b"\xdd" * 20
    peers = {PEER_A: FakePeer(), PEER_B: FakePeer(), full_node: FakePeer()}
    validators = {PEER_A, PEER_B}
    gossip = make_tx_gossip(lambda: peers, 1 << 20, lambda node_id: node_id in validators)
    gossip([(b"from rpc", None), (b"from validator a", PEER_A), (b"from full node", full_node)])
    sent = {node_id: [w for _, chunk in peer.sent for w in chunk] for node_id, peer in peers.items()}
    assert sent[PEER_A] == [b"from rpc", b"from full node"]
    assert sent[PEER_B] == [b"from rpc", b"from full node"]
    assert sent[full_node] == [b"from rpc", b"from validator a"]


def test_a_lost_worker_pool_is_replaced_and_the_batch_checked_on_the_loop() -> None:
    class LostPool:
        closed = False

        async def verify(self, checks):
            raise VerifyWorkersLost("verify worker 1 is gone (IncompleteReadError)")

        def close(self) -> None:
            self.closed = True
    state = make_state()
    pool = LostPool()
    submitter, mempool, gossip = make_submitter(state, pool=pool, verify_workers=1)
    good = pay(state, KEYS[0], 1)
    forged = pay(state, KEYS[1], 2)[:-1] + b"\x00"

    async def run() -> list[str]:
        return [r.code for r in await asyncio.gather(submitter.submit(good), submitter.submit(forged))]
    assert asyncio.run(run()) == ["ok", "bad_signature"]
    assert pool.closed and submitter._pool is None and len(mempool) == 1


def test_verify_pool_answers_in_order_across_workers_and_a_killed_worker_is_reported() -> None:
    import os
    import signal
    key = KEYS[0]
    messages = [b"m%d" % i for i in range(200)]
    checks = [(key.public_key, m, key.sign(m)) for m in messages]
    checks[7] = (key.public_key, b"other", checks[7][2])
    checks[150] = (KEYS[1].public_key, messages[150], checks[150][2])

    async def run() -> tuple[list[bool], list[bool], str]:
        pool = VerifyPool(2, split_min=64)
        try:
            split, small = await pool.verify(checks), await pool.verify(checks[:10])
            assert len(pool.pids) == 2
            os.kill(pool.pids[0], signal.SIGKILL)
            with pytest.raises(VerifyWorkersLost) as lost:
                await pool.verify(checks)
            return split, small, str(lost.value)
        finally:
            await pool.aclose()
    split, small, lost = asyncio.run(run())
    assert split == [i not in (7, 150) for i in range(200)] and small == split[:10]
    assert "is gone" in lost


def test_a_cancelled_expedite_answers_the_callers_waiting_on_its_batch() -> None:
    state = make_state()
    wire = pay(state, KEYS[0], 1)

    async def run() -> tuple:
        pool = GatedPool()
        submitter, mempool, _ = make_submitter(state, pool=pool, verify_workers=1)
        expediting = asyncio.ensure_future(submitter.expedite([wire], PEER_A))
        while not pool.checked:
            await asyncio.sleep(0.001)
        waiting = asyncio.ensure_future(submitter.submit(wire))   # shares the batch's outcome
        await asyncio.sleep(0.01)
        expediting.cancel()
        result = await asyncio.wait_for(waiting, 5)
        return result.code, len(submitter), wire in mempool.verified()
    assert asyncio.run(run()) == ("internal", 0, False)


def test_a_cancelled_verify_request_kills_the_workers_so_no_answer_is_read_by_the_next() -> None:
    key = KEYS[0]
    big = [(key.public_key, b"m%d" % i, key.sign(b"m%d" % i)) for i in range(2_000)]
    small = [big[0], (key.public_key, b"other", big[0][2])]

    async def run() -> tuple[list[bool], bool]:
        pool = VerifyPool(1)
        try:
            await pool.start()
            first = pool.pids
            request = asyncio.ensure_future(pool.verify(big))
            await asyncio.sleep(0.01)      # sent, its answer not read yet
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)
            answer = await pool.verify(small)
            return answer, pool.pids != first
        finally:
            await pool.aclose()
    assert asyncio.run(run()) == ([True, False], True)   # new workers, the right answer


def test_a_closed_submitter_starts_no_verify_workers_and_a_batch_under_way_is_checked_on_the_loop() -> None:
    state = make_state()
    good, later = pay(state, KEYS[0], 1), pay(state, KEYS[0], 2)

    async def run() -> tuple:
        pool = GatedPool(lose=True)
        submitter, mempool, _ = make_submitter(state, pool=pool, verify_workers=1)
        submitting = asyncio.ensure_future(submitter.submit(good))
        while not pool.checked:
            await asyncio.sleep(0.001)
        submitter.close()                  # the node stops while the batch is in the worker
        pool.gate.set()
        first = await submitting
        second = await submitter.submit(later)
        return first.code, second.code, pool.closed, submitter._pool, len(pool.checked)
    assert asyncio.run(run()) == ("ok", "ok", True, None, 1)


def test_a_verify_worker_exits_when_its_node_is_killed() -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    script = (
        "import asyncio, time\n"
        "from node.verify import VerifyPool\n"
        "async def main():\n"
        "    pool = VerifyPool(1)\n"
        "    await pool.start()\n"
        "    print(pool.pids[0], flush=True)\n"
        "    time.sleep(60)\n"
        "asyncio.run(main())\n")
    root = Path(__file__).resolve().parents[2]
    node = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(node.stdout.readline())
        os.kill(worker, 0)                       # alive while the node is
        node.send_signal(signal.SIGKILL)
        node.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(worker, signal.SIGKILL)
            raise AssertionError("the verify worker outlived its killed node")
    finally:
        node.kill()
