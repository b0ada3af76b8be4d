"""The chaos campaign's checker: every node's store, read offline after a clean stop, against what was promised.

Contract (each function takes `ChainStore`s, or anything with the same readers, keyed by node index):

- `read_chain(store)` -> `NodeChain`: the latest height, the lowest stored block height (1, or above the snapshot
  a state-synced store started from), and per height the SHA-256 of the block bytes and the app hash.
- `find_forks(chains)`: every height that two or more nodes hold and on which they disagree (block bytes or
  app hash), each `{"height", "block": {node: hash}, "app_hash": {node: hash}}`. A node that is behind simply
  holds fewer heights: only the heights it holds are compared.
- `find_lost(stores, acks)`: every acknowledged transaction (`Ack(tx_hash, height, ...)`, the height the
  `broadcast_tx_commit` answer gave) that some node holding that height does not have at that height, in its tx
  index and in the block's transactions; also one that no node holds a height for. Each `{"hash", "height",
  "node", "found"}` where `found` is the indexed height, "not in block", or None.
- `read_evidence(store, params)`: the double-signing offences recorded in the node's committed state
  (stf/evidence.py), each `{"validator", "height", "round", "vote_type"}`; `parse_evidence_rpc(result)` reads the
  `evidence` RPC's answer into the same form; `summarize_evidence(offences)` counts them per validator.
- `judge(summary)` -> (exit code, one-line reason or None): 1 for the first failure among: a node that exited on
  its own, or with an error when stopped with SIGTERM (exit 3 is a fork signal: AppHashMismatch), a fork, a lost
  transaction, no acknowledged transaction at all, a block committed during a 2-2 split (`commits_during`), a
  stall beyond the bound, a fault after which the network did not catch up, and a byzantine fault without its
  offence recorded (`evidence.by_validator`); else 0.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from stf.block import decode_block
from stf.constants import VOTE_PRECOMMIT, VOTE_PREVOTE
from stf.errors import KabutoError
from stf.params import ChainParams

VOTE_TYPES = {VOTE_PREVOTE: "prevote", VOTE_PRECOMMIT: "precommit"}


@dataclass(slots=True)
class NodeChain:
    node: int
    height: int
    first_block: int
    blocks: dict[int, bytes] = field(default_factory=dict)
    app_hashes: dict[int, bytes] = field(default_factory=dict)


def read_chain(node: int, store: Any) -> NodeChain:
    meta = store.latest()
    height = 0 if meta is None else meta.height
    chain = NodeChain(node, height, height + 1)
    for h, wire in store.iterate_blocks(1, height):
        chain.blocks[h] = hashlib.sha256(wire).digest()
        chain.first_block = min(chain.first_block, h)
    for h in range(0, height + 1):
        app_hash = store.get_app_hash(h)
        if app_hash is not None:
            chain.app_hashes[h] = app_hash
    return chain


def find_forks(chains: Iterable[NodeChain]) -> list[dict]:
    chains = list(chains)
    heights = sorted({h for c in chains for h in c.blocks} | {h for c in chains for h in c.app_hashes})
    forks = []
    for h in heights:
        blocks = {c.node: c.blocks[h].hex() for c in chains if h in c.blocks}
        app_hashes = {c.node: c.app_hashes[h].hex() for c in chains if h in c.app_hashes}
        if len(set(blocks.values())) > 1 or len(set(app_hashes.values())) > 1:
            forks.append({"height": h, "block": blocks, "app_hash": app_hashes})
    return forks


def _block_tx_hashes(store: Any, height: int) -> set[str] | None:
    wire = store.get_block(height)
    if wire is None:
        return None
    try:
        return {hashlib.sha256(tx).hexdigest() for tx in decode_block(wire).txs}
    except KabutoError:
        return None


def find_lost(stores: Mapping[int, Any], acks: Iterable[Any]) -> tuple[list[dict], int]:
    """(lost acknowledgements, number of (ack, node) pairs checked)."""
    latest = {}
    for node, store in stores.items():
        meta = store.latest()
        latest[node] = 0 if meta is None else meta.height
    cache: dict[tuple[int, int], set[str] | None] = {}
    lost, checked = [], 0
    for ack in acks:
        holders = [node for node in sorted(stores) if latest[node] >= ack.height]
        if not holders:
            lost.append({"hash": ack.tx_hash, "height": ack.height, "node": None, "found": "no node holds that height"})
            continue
        for node in holders:
            store = stores[node]
            if store.get_block(ack.height) is None and store.get_app_hash(ack.height) is None:
                continue  # below a state-synced node's snapshot: it never held that block
            checked += 1
            location = store.get_tx_location(bytes.fromhex(ack.tx_hash))
            if location is None or location.height != ack.height:
                lost.append({"hash": ack.tx_hash, "height": ack.height, "node": node,
                             "found": None if location is None else location.height})
                continue
            key = (node, ack.height)
            if key not in cache:
                cache[key] = _block_tx_hashes(store, ack.height)
            if cache[key] is None or ack.tx_hash not in cache[key]:
                lost.append({"hash": ack.tx_hash, "height": ack.height, "node": node, "found": "not in block"})
    return lost, checked


def read_evidence(store: Any, params: ChainParams) -> list[dict]:
    state = store.load_state(params)
    offences = []
    for (validator, height), records in sorted(state.evidence.items()):
        for (round_, vote_type), recorded_at in sorted(records.items()):
            offences.append({"validator": validator.hex(), "height": height, "round": round_,
                             "vote_type": VOTE_TYPES.get(vote_type, vote_type), "recorded_at": recorded_at})
    return offences


def summarize_evidence(offences: list[dict], count: int | None = None, shown: int = 10) -> dict:
    """`{"count", "by_validator": {address: offences}, "offences": the first `shown`}`."""
    by_validator: dict[str, int] = {}
    for offence in offences:
        by_validator[offence["validator"]] = by_validator.get(offence["validator"], 0) + 1
    return {"count": len(offences) if count is None else count, "by_validator": dict(sorted(by_validator.items())),
            "offences": offences[:shown]}


def parse_evidence_rpc(result: Any) -> list[dict]:
    """The `evidence` RPC's offences, whatever the wrapping (a list, or an object with a list)."""
    items = result
    if isinstance(result, dict):
        items = next((v for k, v in result.items() if isinstance(v, list)), [])
    offences = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        validator = item.get("validator") or item.get("address") or item.get("validator_address") or ""
        vote_type = item.get("vote_type", item.get("type"))
        if isinstance(vote_type, int):
            vote_type = VOTE_TYPES.get(vote_type, vote_type)
        offences.append({"validator": str(validator).lower(), "height": _int(item.get("height")),
                         "round": _int(item.get("round")), "vote_type": vote_type})
    return offences


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def judge(summary: Mapping[str, Any]) -> tuple[int, str | None]:
    """(0, None) when the campaign passed, else (1, the first failure in one line)."""
    exits = (summary.get("errors") or {}).get("node_exits") or []
    if exits:
        first = exits[0]
        signal = " (AppHashMismatch: a fork signal)" if first.get("code") == 3 else ""
        if first.get("on") == "stop":
            return 1, f"node {first['node']} answered SIGTERM with exit code {first['code']}{signal}"
        return 1, f"node {first['node']} exited on its own with code {first['code']}{signal}"
    if summary.get("forks"):
        height = summary["fork_heights"][0]["height"] if summary.get("fork_heights") else "?"
        return 1, f"{summary['forks']} fork(s): nodes disagree first at height {height}"
    if summary.get("lost"):
        first = summary["lost_txs"][0] if summary.get("lost_txs") else {}
        return 1, (f"{summary['lost']} acknowledged transaction(s) lost, e.g. {first.get('hash', '?')[:16]} "
                   f"at height {first.get('height')} on node {first.get('node')}")
    if not summary.get("acknowledged"):
        return 1, "no transaction was acknowledged: the load never got through"
    for fault in summary.get("faults", {}).get("list", []):
        if fault.get("commits_during"):
            return 1, (f"{fault['commits_during']} block(s) committed during the 2-2 split at {fault['start_s']} s, "
                       f"where no side holds more than 2/3 of the power")
    if summary.get("max_stall_s", 0) > summary.get("stall_bound_s", float("inf")):
        return 1, f"the chain stalled {summary['max_stall_s']:.1f} s (bound {summary['stall_bound_s']:.1f} s)"
    for fault in summary.get("faults", {}).get("list", []):
        if fault.get("caught_up_s") is None:
            return 1, f"after the {fault['kind']} fault healed at {fault['end_s']} s the network did not catch up"
    if summary.get("byzantine_validators"):
        recorded = set((summary.get("evidence") or {}).get("by_validator") or {})
        missing = [v for v in summary["byzantine_validators"] if v not in recorded]
        if missing:
            return 1, f"validator {missing[0]} double-signed but no offence of it was recorded as evidence"
    return 0, None
