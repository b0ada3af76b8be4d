"""In-process tests of the node's application (`node.app.ChainApp`) and block sync's verification
(`node.sync.BlockSync.verify_entry`): proposals, validity, commits into the store, the divergence stop, and
every rejection of a fetched block."""

import hashlib
import os

import pytest

from consensus.commit import CommitCertificate
from consensus.messages import PRECOMMIT, Vote
from consensus.validators import ValidatorSet
from genesis import localnet_genesis, validate_genesis
from node.app import AppHashMismatch, ChainApp, decode_certificate, encode_certificate, encode_receipts
from node.mempool import Mempool
from node.storage import ChainStore, MemoryKV
from node.sync import BlockSync, SyncProtocolError, decode_blocks_payload
from node.telemetry import NodeMetrics
from rpc.views import InMemoryChainView
from stf.block import decode_block, make_block
from stf import codec
from stf.crypto import PrivateKey
from stf.errors import ResultCode
from stf.receipts import ActionResult, Receipt
from stf.state import export_entries, initialize_state
from stf.tx import Faucet, sign_transaction

CHAIN = "kabuto-localnet"
KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(4)]


def make_app() -> ChainApp:
    genesis = validate_genesis(localnet_genesis(CHAIN))
    state = initialize_state(genesis)
    store = ChainStore(MemoryKV())
    store.save_genesis(CHAIN, export_entries(state), state.merkle.root())
    published = []
    app = ChainApp(store.load_state(genesis.params), store, Mempool(), None, NodeMetrics(), KEYS[0].address,
                   lambda block, result, messages: published.append(block.header.height), 1 << 20)
    app.view = InMemoryChainView(app.state)
    app.published = published
    app.clock_ms = lambda: genesis.genesis_time_ms + 1000  # block time near genesis, as transactions' nonces
    return app


def certify(value: bytes, height: int, signers: list[PrivateKey], round_: int = 0) -> CommitCertificate:
    value_hash = hashlib.sha256(value).digest()
    votes = sorted((Vote(PRECOMMIT, height, round_, value_hash, k.address, 1000).signed(k, CHAIN) for k in signers),
                   key=lambda v: v.validator)
    return CommitCertificate(height, round_, value_hash, tuple(votes))


def faucet_tx(time_ms: int) -> bytes:
    return sign_transaction(PrivateKey(os.urandom(32)), CHAIN, time_ms + 1, [Faucet(0, 10**6)])


def test_proposal_is_valid_and_commits_into_store_view_and_mempool() -> None:
    app = make_app()
    wire = faucet_tx(app.state.time_ms)
    app.mempool.admit(wire, app.state)
    value = app.propose_value(1, 0, None)
    block = decode_block(value)
    assert block.txs == (wire,) and block.header.proposer == KEYS[0].address
    assert app.validate_value(1, value)
    assert not app.validate_value(2, value)  # the block of another height
    assert app.commit(1, value, certify(value, 1, KEYS[:3])) == ()
    assert app.height == 1 and app.store.get_latest().height == 1
    assert app.store.get_block(1) == value
    assert decode_certificate(app.store.get_commit(1)) == certify(value, 1, KEYS[:3])
    assert app.store.get_app_hash(1) == app.state.merkle.root()
    assert len(app.mempool) == 0 and app.view.latest_height() == 1 and app.published == [1]
    assert app.store.get_tx_location(hashlib.sha256(wire).digest()).height == 1


def test_commit_reuses_the_check_of_the_value_it_validated(monkeypatch) -> None:
    import stf.block as block_module
    app = make_app()
    app.mempool.admit(faucet_tx(app.state.time_ms), app.state)
    value = app.propose_value(1, 0, None)
    assert app.validate_value(1, value)
    calls = []
    real = block_module.check_block
    monkeypatch.setattr(block_module, "check_block", lambda *args: calls.append(1) or real(*args))
    app.commit(1, value, certify(value, 1, KEYS[:3]))
    assert calls == [] and app.height == 1
    # a decided value this node never validated is checked in full
    app.mempool.admit(faucet_tx(app.state.time_ms + 1), app.state)
    other = app.propose_value(2, 0, None)
    app.commit(2, other, certify(other, 2, KEYS[:3]))
    assert calls == [1] and app.height == 2


def test_receipts_are_stored_in_their_wire_form() -> None:
    receipts = (
        Receipt(b"\x01" * 32, (ActionResult(ResultCode.OK, 7, 3), ActionResult(ResultCode.INSUFFICIENT_BALANCE))),
        Receipt(b"\x02" * 32, (ActionResult(ResultCode.OK, 2**64 - 1, 10**12),)),
        Receipt(b"\x03" * 32, ()),
    )
    assert encode_receipts(receipts) == codec.encode([r.to_wire() for r in receipts])


def test_proposal_time_never_goes_back() -> None:
    app = make_app()
    app.clock_ms = lambda: 5  # a clock far behind the genesis time
    block = decode_block(app.propose_value(1, 0, None))
    assert block.header.time_ms == app.state.time_ms + 1


def test_invalid_block_is_rejected_and_a_decided_one_that_does_not_apply_stops_the_node() -> None:
    app = make_app()
    other = initialize_state(validate_genesis({**localnet_genesis(CHAIN), "balances": [
        {"address": "ab" * 20, "asset": 0, "amount": 5}]}))
    foreign = make_block(other, other.time_ms + 1, [], KEYS[1].address).to_wire()  # builds on another app hash
    assert not app.validate_value(1, foreign)
    assert not app.validate_value(1, b"\x01garbage")
    with pytest.raises(AppHashMismatch, match="stopping rather than fork"):
        app.commit(1, foreign, certify(foreign, 1, KEYS[:3]))
    assert app.store.get_latest().height == 0  # nothing was stored


def make_sync(app: ChainApp) -> BlockSync:
    validators = ValidatorSet.from_genesis([(k.public_key, 10) for k in KEYS])
    return BlockSync(app, app.store, None, validators, CHAIN, NodeMetrics(), lambda: {}, max_frame_bytes=1 << 20)


def test_sync_verifies_a_fetched_block_and_its_certificate() -> None:
    app = make_app()
    sync = make_sync(app)
    value = app.propose_value(1, 0, None)
    cert = certify(value, 1, KEYS[:3])
    assert sync.verify_entry(1, value, encode_certificate(cert)) == cert


@pytest.mark.parametrize("case", ["garbage", "other_height", "other_value", "no_quorum", "unknown_signer",
                                  "bad_signature"])
def test_invalid_sync_entry(case: str) -> None:
    app = make_app()
    sync = make_sync(app)
    value = app.propose_value(1, 0, None)
    cert = certify(value, 1, KEYS[:3])
    if case == "garbage":
        cert_wire = b"\xc1\xff"
    elif case == "other_height":
        cert_wire = encode_certificate(certify(value, 2, KEYS[:3]))
    elif case == "other_value":
        cert_wire = encode_certificate(certify(value + b"x", 1, KEYS[:3]))
    elif case == "no_quorum":
        cert_wire = encode_certificate(certify(value, 1, KEYS[:2]))
    elif case == "unknown_signer":
        cert_wire = encode_certificate(certify(value, 1, KEYS[:2] + [PrivateKey(b"\x09" * 32)]))
    else:
        votes = list(cert.precommits)
        first = votes[0]
        votes[0] = Vote(first.vote_type, first.height, first.round, first.value_hash, first.validator,
                        first.timestamp_ms, b"\x00" * 64)
        cert_wire = encode_certificate(CommitCertificate(1, 0, cert.value_hash, tuple(votes)))
    with pytest.raises(SyncProtocolError):
        sync.verify_entry(1, value, cert_wire)


def test_sync_of_a_certified_block_on_another_state_stops_the_node() -> None:
    app = make_app()
    sync = make_sync(app)
    other = initialize_state(validate_genesis({**localnet_genesis(CHAIN), "balances": [
        {"address": "ab" * 20, "asset": 0, "amount": 5}]}))
    foreign = make_block(other, other.time_ms + 1, [], KEYS[1].address).to_wire()
    with pytest.raises(AppHashMismatch, match="diverged"):
        sync.verify_entry(1, foreign, encode_certificate(certify(foreign, 1, KEYS[:3])))


@pytest.mark.parametrize("payload", [None, {}, [[1, b"x"]], [["1", b"x", b"y"]], [[1, "x", b"y"]],
                                     [[-1, b"x", b"y"]], [[1, b"x", b"y"]] * 51])
def test_invalid_blocks_payload(payload: object) -> None:
    with pytest.raises(SyncProtocolError):
        decode_blocks_payload(payload)
