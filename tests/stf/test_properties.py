"""Property tests over random blocks of every action: the invariants hold after every block, and a block diff
installed on the pre-state reaches exactly the post-state (same entries, same root)."""

from hypothesis import HealthCheck, given, settings, strategies as st

from invariants import check_invariants, compute_supply, update_supply
from random_flow import make_flow_chain, random_blocks
from stf import codec
from stf.state import State, apply_entries, export_entries, initialize_state
from stf.block import apply_block, make_block


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_invariants_hold_after_every_block(seed: int) -> None:
    chain = make_flow_chain()
    supply = compute_supply(chain.state)
    for txs in random_blocks(seed, chain, blocks=12, txs_per_block=8):
        result = chain.block(*txs)
        update_supply(supply, result.events)
        check_invariants(chain.state, supply)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_block_diff_takes_the_pre_state_to_the_post_state(seed: int) -> None:
    chain = make_flow_chain()
    follower = initialize_state(chain.genesis)
    for txs in random_blocks(seed, chain, blocks=10, txs_per_block=8):
        result = chain.block(*txs)
        diff = codec.decode(result.diff_wire(chain.state.height), 1 << 30)
        height, block_hash, state_root, _events, entries = diff
        root = apply_entries(follower, [(k, v) for k, v in entries])
        assert (height, block_hash) == (chain.state.height, chain.state.last_block_hash)
        assert root == state_root == result.state_root
        assert export_entries(follower) == export_entries(chain.state)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 12))
def test_state_installed_from_diffs_executes_the_next_block_identically(seed: int, installed: int) -> None:
    """Indexes rebuilt from entries (books, heaps, client ids) must behave exactly like executed ones."""
    chain = make_flow_chain()
    follower = initialize_state(chain.genesis)
    blocks = random_blocks(seed, chain, blocks=installed + 1, txs_per_block=10)
    for _ in range(installed):
        apply_entries(follower, chain.block(*next(blocks)).entries)
    txs = next(blocks)
    block = make_block(chain.state, chain.time_ms + 1000, txs)
    expected = chain.block(*txs)
    replayed = apply_block(follower, block)
    assert replayed.events == expected.events
    assert replayed.receipts == expected.receipts
    assert replayed.state_root == expected.state_root


def test_a_snapshot_installs_into_an_empty_state() -> None:
    chain = make_flow_chain()
    for txs in random_blocks(3, chain, blocks=8, txs_per_block=8):
        chain.block(*txs)
    fresh = State(chain.genesis.params)
    assert apply_entries(fresh, export_entries(chain.state)) == chain.state.merkle.root()
    assert export_entries(fresh) == export_entries(chain.state)
