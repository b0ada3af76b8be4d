"""A light client checks one account's state against the state root with the standalone verifier."""

from stf import codec
from stf.proof import Proof, verify_proof
from stf.state import account_key, prove_account
from stf.tx import PlaceOrder, Transfer
from stf_helpers import BTC_USD, USD, Chain, make_key


def test_account_proof_verifies_against_the_block_state_root() -> None:
    chain = Chain(accounts=3)
    a, b = chain.keys[0], chain.keys[1]
    chain.block(chain.tx(a, Transfer(b.address, USD, 123)), chain.tx(b, PlaceOrder(BTC_USD, True, 1000, 2, 0, None, 0, False)))
    root = chain.block().state_root
    value, proof = prove_account(chain.state, b.address)
    proof = Proof.from_wire(codec.decode(codec.encode(proof.to_wire()), 1 << 20))  # as a client receives it
    assert verify_proof(root, account_key(b.address), value, proof)
    balances, holds, _agents, _schedule, *_perp = codec.decode(value, len(value))
    assert dict(balances)[USD] == chain.balance(b, USD) and dict(holds)[USD] == 2000


def test_invalid_account_proof_with_a_tampered_balance() -> None:
    chain = Chain(accounts=2)
    root = chain.block().state_root
    value, proof = prove_account(chain.state, chain.keys[0].address)
    balances, *rest = codec.decode(value, len(value))
    forged = codec.encode([[[asset, amount + 1] for asset, amount in balances], *rest])
    assert not verify_proof(root, account_key(chain.keys[0].address), forged, proof)


def test_absent_account_is_proven_absent() -> None:
    chain = Chain(accounts=2)
    root = chain.block().state_root
    stranger = make_key(999).address
    value, proof = prove_account(chain.state, stranger)
    assert value is None
    assert verify_proof(root, account_key(stranger), None, proof)
    assert not verify_proof(root, account_key(chain.keys[0].address), None, prove_account(chain.state, chain.keys[0].address)[1])
