"""State sync: a node with an empty store starts from a peer's snapshot instead of replaying every block.

`run_state_sync(home, store, ...)` runs before the node is built (node/validator.py), with its own short-lived
P2P switch on the node's listen address, and returns the height it installed (0: nothing installed, block sync
from genesis follows). It is tried only when `[storage] state_sync` is true and the store is empty.

Steps (wire in node/sync.py; every check failing makes it give up on that peer, with a ban for a malformed
or unverifiable answer):

1. Wait until every configured peer is connected (at most `discover_s`) and has told its height (MSG_STATUS,
   which every node sends on connect). If no peer is above height 0 there is nothing to sync: return at once
   (a whole localnet starting together). Else ask the peers that are ahead for their snapshots
   (MSG_SNAPSHOTS_REQUEST) and take the highest height above 0 (ties: the smallest node id).
2. Fetch block `H + 1` and its commit certificate (MSG_BLOCKS_REQUEST) and verify the certificate against the
   validator set (more than 2/3 of the power signed exactly those bytes). That header's `app_hash` is the state
   root after `H` (the header of a block commits the state it builds on), so it must equal the snapshot's app
   hash: this is what makes the snapshot trustworthy, not the peer.
3. Fetch every chunk (MSG_CHUNK_REQUEST), check the entry count and entries hash against the manifest, install
   the entries into a fresh `stf.state.State` and require that its root is the certified app hash and its height
   `H`.
4. `ChainStore.save_synced_state` writes the state, a snapshot at `H` and the meta record in one batch. The node
   then starts at height `H + 1` and block-syncs from there.

While it runs, the temporary switch answers the sync requests of others as an empty store would (no
snapshots, no blocks) and tells its height as 0, so two fresh nodes never wait on each other.

Known limits: one peer serves the whole snapshot (no parallel chunk download); a validator that state-syncs has
no WAL history for heights it may have signed before (as after `kabuto reset`).
"""

import asyncio
import logging
import time

from consensus.commit import verify_certificate
from consensus.errors import ConsensusError
from consensus.messages import compute_value_hash
from consensus.validators import ValidatorSet
from node.app import decode_certificate
from node.config import parse_address, parse_peer
from node.home import Home
from node.p2p.bans import BanList
from node.p2p.connection import ConnectionConfig, Peer
from node.p2p.dialer import Backoff
from node.p2p.frames import Message
from node.p2p.switch import PeerAddress, Switch
from node.storage import ChainStore
from node.storage.schema import compute_entries_hash
from node.sync import (
    MSG_BLOCKS, MSG_BLOCKS_REQUEST, MSG_CHUNK, MSG_CHUNK_REQUEST, MSG_SNAPSHOTS, MSG_SNAPSHOTS_REQUEST, MSG_STATUS,
    SyncProtocolError, decode_blocks_payload,
)
from stf.block import decode_block
from stf.errors import KabutoError
from stf.state import State, apply_entries, export_entries, initialize_state

log = logging.getLogger("node.statesync")

STATE_SYNC_BACKOFF = Backoff(base_s=0.1, cap_s=1.0, stable_s=10.0)


class StateSyncClient:
    """Requests to peers and their answers, one outstanding request per (peer, answer type)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.peer_heights: dict[bytes, int] = {}
        self._waiting: dict[tuple[bytes, int], asyncio.Future] = {}

    def on_connect(self, peer: Peer) -> None:
        peer.send(MSG_STATUS, [0])

    def on_direct(self, peer: Peer, message: Message) -> None:
        """Answers of peers; requests of peers are answered as an empty store (nothing to serve yet)."""
        if message.type == MSG_STATUS:
            payload = message.payload
            if isinstance(payload, list) and len(payload) == 1 and _is_uint(payload[0]):
                self.peer_heights[peer.node_id] = payload[0]
            return
        if message.type == MSG_SNAPSHOTS_REQUEST:
            peer.send(MSG_SNAPSHOTS, [])
            return
        if message.type == MSG_BLOCKS_REQUEST:
            peer.send(MSG_BLOCKS, [])
            return
        if message.type == MSG_CHUNK_REQUEST:
            payload = message.payload
            if isinstance(payload, list) and len(payload) == 2:
                peer.send(MSG_CHUNK, [payload[0], payload[1], 0, []])
            return
        future = self._waiting.get((peer.node_id, message.type))
        if future is not None and not future.done():
            future.set_result(message.payload)

    async def ask(self, peer: Peer, msg_type: int, payload: object, answer_type: int) -> object:
        key = (peer.node_id, answer_type)
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            if not peer.send(msg_type, payload):
                raise SyncProtocolError("peer closed")
            return await asyncio.wait_for(future, self.timeout_s)
        finally:
            self._waiting.pop(key, None)


def _is_uint(x: object) -> bool:
    return type(x) is int and x >= 0


def decode_snapshots(payload: object) -> list[tuple[int, bytes, int, bytes]]:
    if not isinstance(payload, list) or len(payload) > 1000:
        raise SyncProtocolError("snapshots: a list")
    out = []
    for row in payload:
        if (not isinstance(row, list) or len(row) != 4 or not _is_uint(row[0]) or type(row[1]) is not bytes
                or not _is_uint(row[2]) or type(row[3]) is not bytes):
            raise SyncProtocolError("snapshots: [height, app_hash, entry_count, entries_hash] rows")
        out.append((row[0], row[1], row[2], row[3]))
    return out


async def fetch_snapshot(
    client: StateSyncClient, peer: Peer, snapshot: tuple[int, bytes, int, bytes], home: Home,
    validators: ValidatorSet,
) -> tuple[State, bytes]:
    """The verified state at the snapshot's height and the hash of its last block (see the module contract)."""
    height, app_hash, entry_count, entries_hash = snapshot
    chain_id = home.genesis.params.chain_id
    answer = decode_blocks_payload(await client.ask(peer, MSG_BLOCKS_REQUEST, [height + 1, height + 1], MSG_BLOCKS))
    if len(answer) != 1 or answer[0][0] != height + 1:
        raise SyncProtocolError(f"no block {height + 1} to certify snapshot {height}")
    _, block_wire, cert_wire = answer[0]
    try:
        cert = decode_certificate(cert_wire)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise SyncProtocolError(f"undecodable certificate: {exc}") from None
    try:
        if cert.height != height + 1 or compute_value_hash(block_wire) != cert.value_hash:
            raise SyncProtocolError(f"certificate is not for block {height + 1}")
        verify_certificate(cert, validators, chain_id)
        header = decode_block(block_wire).header
    except (ConsensusError, KabutoError) as exc:
        raise SyncProtocolError(f"block {height + 1}: {exc}") from None
    if header.height != height + 1 or header.app_hash != app_hash:
        raise SyncProtocolError(f"snapshot {height}'s app hash is not the one block {height + 1} commits to")
    entries: list[tuple[bytes, bytes]] = []
    index, total = 0, 1
    while index < total:
        chunk = await client.ask(peer, MSG_CHUNK_REQUEST, [height, index], MSG_CHUNK)
        if (not isinstance(chunk, list) or len(chunk) != 4 or chunk[:2] != [height, index] or not _is_uint(chunk[2])
                or chunk[2] == 0 or not isinstance(chunk[3], list)):
            raise SyncProtocolError(f"chunk {index} of snapshot {height} is malformed or missing")
        total = chunk[2]
        for pair in chunk[3]:
            if not isinstance(pair, list) or len(pair) != 2 or type(pair[0]) is not bytes or type(pair[1]) is not bytes:
                raise SyncProtocolError("chunk entries are [key, value] byte pairs")
            entries.append((pair[0], pair[1]))
        index += 1
    if compute_entries_hash(entries) != (entry_count, entries_hash):
        raise SyncProtocolError(f"snapshot {height} entries do not match its manifest")
    state = State(home.genesis.params)
    try:
        root = apply_entries(state, entries)
    except (KabutoError, ValueError, TypeError, KeyError) as exc:
        raise SyncProtocolError(f"snapshot {height} entries do not decode: {exc!r}") from None
    if root != app_hash or state.height != height:
        raise SyncProtocolError(f"snapshot {height} does not rebuild its certified app hash")
    return state, header.prev_hash


async def sync_from_peers(
    switch: Switch, client: StateSyncClient, home: Home, store: ChainStore, validators: ValidatorSet,
    discover_s: float, expected_peers: int,
) -> int:
    deadline = time.monotonic() + discover_s
    while time.monotonic() < deadline:
        told = [node for node in switch.peers if node in client.peer_heights]
        if len(told) >= expected_peers:
            break
        await asyncio.sleep(0.05)
    ahead = sorted((node, peer) for node, peer in switch.peers.items() if client.peer_heights.get(node, 0) > 0)
    if not ahead:
        log.info("state sync: no peer is past genesis; starting from genesis")
        return 0
    offers: list[tuple[int, bytes, tuple, Peer]] = []
    for node_id, peer in ahead:
        try:
            for snapshot in decode_snapshots(await client.ask(peer, MSG_SNAPSHOTS_REQUEST, [], MSG_SNAPSHOTS)):
                offers.append((snapshot[0], node_id, snapshot, peer))
        except (SyncProtocolError, TimeoutError) as exc:
            log.info("state sync: no snapshots from %s: %s", node_id.hex()[:12], exc)
    for height, node_id, snapshot, peer in sorted(offers, key=lambda o: (-o[0], o[1])):
        try:
            state, block_hash = await fetch_snapshot(client, peer, snapshot, home, validators)
        except SyncProtocolError as exc:
            peer.disconnect(f"state sync: {exc}", ban=True)
            continue
        except TimeoutError:
            continue
        genesis_root = initialize_state(home.genesis).merkle.root()
        store.save_synced_state(home.genesis.params.chain_id, genesis_root, export_entries(state), height,
                                block_hash, snapshot[1])
        log.info("state sync: installed snapshot %d from %s", height, node_id.hex()[:12])
        return height
    return 0


async def run_state_sync(
    home: Home, store: ChainStore, validators: ValidatorSet, *, discover_s: float = 3.0, timeout_s: float = 5.0,
) -> int:
    """Try state sync with a temporary switch (see the module contract); returns the installed height or 0."""
    config = home.config
    host, port = parse_address(config.p2p.listen, "p2p.listen")
    peers = [PeerAddress(bytes.fromhex(n), h, p) for n, h, p in (parse_peer(x, "p2p.peers") for x in config.p2p.peers)]
    if not peers:
        return 0
    client = StateSyncClient(timeout_s)
    switch = Switch(home.node_key, home.genesis.params.chain_id, lambda sender, message: None,
                    config=ConnectionConfig(max_frame_size=config.p2p.max_frame_bytes,
                                            ban_seconds=config.p2p.ban_seconds),
                    backoff=STATE_SYNC_BACKOFF, bans=BanList(time.monotonic), on_direct=client.on_direct,
                    on_connect=client.on_connect)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(switch.run(host, port, peers))
        await switch.listening.wait()
        try:
            return await sync_from_peers(switch, client, home, store, validators, discover_s, len(peers))
        finally:
            switch.stop()
