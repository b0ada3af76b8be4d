"""Property tests over random perp flows with oracle moves, funding, triggers and liquidations: after every
block value is conserved exactly, long and short open interest are equal, indexes and reserved margins match,
and no account ends a block below maintenance margin without a liquidation event; block diffs take the
pre-state to the post-state."""

from hypothesis import HealthCheck, given, settings, strategies as st

from invariants import check_invariants, check_perp_invariants, compute_supply, update_supply
from perp_flow import BLOCK_MS, make_perp_flow_chain, random_perp_blocks
from stf import codec
from stf.block import apply_block, make_block
from stf.events import AdlEvent, FundingEvent, LiquidationEvent, TriggerEvent
from stf.state import apply_entries, export_entries, initialize_state


def run_checked(seed: int, blocks: int, txs_per_block: int = 10) -> list:
    chain = make_perp_flow_chain(seed)
    supply = compute_supply(chain.state)
    seen = []
    for txs in random_perp_blocks(seed, chain, blocks, txs_per_block):
        result = chain.block(*txs, advance_ms=BLOCK_MS)
        update_supply(supply, result.events)
        check_invariants(chain.state, supply)
        check_perp_invariants(chain.state, result.events)
        seen.extend(type(e) for e in result.events)
    return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_perp_invariants_hold_after_every_block(seed: int) -> None:
    run_checked(seed, blocks=40)


def test_the_flow_reaches_funding_triggers_and_every_liquidation_stage() -> None:
    """The flow is only a good test if it exercises what it claims: over a few seeds, funding is paid,
    triggers fire, and liquidations happen through the book, by the backstop and by ADL."""
    kinds = set()
    stages = set()
    for seed in range(6):
        chain = make_perp_flow_chain(seed)
        for txs in random_perp_blocks(seed, chain, 40, 10):
            for event in chain.block(*txs, advance_ms=BLOCK_MS).events:
                kinds.add(type(event))
                if type(event) is LiquidationEvent:
                    stages.add(event.stage)
    assert {FundingEvent, TriggerEvent, LiquidationEvent, AdlEvent} <= kinds
    assert stages == {0, 1, 2}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_perp_block_diff_takes_the_pre_state_to_the_post_state(seed: int) -> None:
    chain = make_perp_flow_chain(seed)
    follower = initialize_state(chain.genesis)
    apply_entries(follower, export_entries(chain.state))
    for txs in random_perp_blocks(seed, chain, 20, 10):
        result = chain.block(*txs, advance_ms=BLOCK_MS)
        _height, _hash, state_root, _events, entries = codec.decode(result.diff_wire(chain.state.height), 1 << 30)
        assert apply_entries(follower, [(k, v) for k, v in entries]) == state_root == result.state_root
    assert export_entries(follower) == export_entries(chain.state)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(2, 20))
def test_perp_state_installed_from_diffs_executes_the_next_block_identically(seed: int, installed: int) -> None:
    chain = make_perp_flow_chain(seed)
    follower = initialize_state(chain.genesis)
    apply_entries(follower, export_entries(chain.state))
    blocks = random_perp_blocks(seed, chain, installed + 1, 10)
    for _ in range(installed):
        apply_entries(follower, chain.block(*next(blocks), advance_ms=BLOCK_MS).entries)
    txs = [*next(blocks), chain.oracle_tx()]
    block = make_block(chain.state, chain.time_ms + BLOCK_MS, txs)
    expected = chain.block(*txs, advance_ms=BLOCK_MS, oracle=False)
    replayed = apply_block(follower, block)
    assert replayed.events == expected.events
    assert replayed.receipts == expected.receipts
    assert replayed.state_root == expected.state_root
