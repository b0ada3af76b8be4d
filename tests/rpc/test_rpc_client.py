"""The client SDK (rpc/client/) against a real server over a real chain (the LiveNode of test_rpc_live.py):
sign and submit, query, verify proofs, and keep a book and an account from the streams through gaps and
reconnects."""

import asyncio
import contextlib
import random
from typing import Any

import pytest

from rpc.client import (
    AccountStream, BookStream, KabutoClient, NonceSource, ProofError, RpcCallError, StreamClient, TxRejected, Wallet,
    approve_agent, cancel, cancel_all, cancel_by_client_id, faucet, market_order, modify, oracle_price, place,
    revoke_agent, schedule_cancel, transfer, withdraw, collateral_transfer, set_leverage, isolated_margin,
    place_trigger, cancel_trigger, govern,
)
from rpc.client.client import compute_tx_root, parse_account_proof
from rpc.server import SERVER
from rpc.submit import COMMIT_TIMEOUT
from rpc.subscriptions import CLOSE_GOING_AWAY
from stf.errors import ResultCode
from stf.tx import TIF_ALO, TIF_IOC, decode_transaction, validate_signature
from test_rpc_live import BTC, BTC_USD, ETH_USD, USD, LiveNode, run, serve

SEEDS = [(i + 1).to_bytes(32, "big") for i in range(8)]


def wallets(node: LiveNode, count: int) -> list[Wallet]:
    return [Wallet.from_seed(SEEDS[i], node.chain_id) for i in range(count)]


async def produce_blocks(node: LiveNode, stop: asyncio.Event, interval: float = 0.01) -> None:
    """A block every `interval` with whatever was admitted, as a node would."""
    while not stop.is_set():
        await asyncio.sleep(interval)
        node.block()


# --- signing, without a server --------------------------------------------------------------------------------


def test_every_action_builder_signs_what_the_chain_decodes() -> None:
    wallet = Wallet.from_seed(SEEDS[0], "kabuto-test", nonces=NonceSource(lambda: 1_767_225_600_000))
    other = bytes(range(20))
    actions = [
        transfer(other, USD, 5), withdraw(BTC, 7, b"dest"), faucet(USD, 10), approve_agent(other),
        revoke_agent(other), place(BTC_USD, True, 999_000, 5, client_id=9), market_order(BTC_USD, False, 2, 990_000),
        cancel(BTC_USD, 4), cancel_by_client_id(BTC_USD, 9), cancel_all(), cancel_all(ETH_USD),
        modify(BTC_USD, 4, 999_100, 3), schedule_cancel(1_767_225_700_000), schedule_cancel(None),
        oracle_price([(ETH_USD, 30_000), (BTC_USD, 1_000_000)]),
        collateral_transfer(10), collateral_transfer(3, to_perp=False), set_leverage(10, 20, is_cross=False),
        isolated_margin(10, 7, add=False), place_trigger(10, False, 9_000_000, take_profit=True),
        cancel_trigger(10, 12), govern(5, 1, 10, [[b"taker_fee_bps", 9]]),
    ]
    signed = wallet.sign(*actions)
    tx = decode_transaction(signed.wire)
    validate_signature(tx, "kabuto-test")
    assert tx.actions == tuple(actions) and tx.hash == signed.hash and tx.account == wallet.address
    assert tx.actions[14].prices == ((BTC_USD, 1_000_000), (ETH_USD, 30_000))  # sorted as the protocol requires
    agent = Wallet.from_seed(SEEDS[1], "kabuto-test", account=wallet.address)
    agent_tx = decode_transaction(agent.sign(cancel_all()).wire)
    assert agent_tx.account == wallet.address and agent_tx.signer == agent.address != wallet.address
    with pytest.raises(ValueError):
        Wallet.from_seed(b"short", "kabuto-test")


def test_nonces_are_strictly_increasing_even_when_the_clock_stalls_or_steps_back() -> None:
    times = iter([100, 100, 100, 90, 200, 150])
    source = NonceSource(lambda: next(times))
    assert [source.next() for _ in range(6)] == [100, 101, 102, 103, 200, 201]


# --- HTTP client ----------------------------------------------------------------------------------------------


def test_sign_submit_and_see_the_order_in_open_orders() -> None:
    node = LiveNode()
    alice, bob = wallets(node, 2)

    async def scenario() -> None:
        stop = asyncio.Event()
        async with serve(node), KabutoClient(node.url) as client, asyncio.TaskGroup() as tasks:
            tasks.create_task(produce_blocks(node, stop))
            status = await client.status()
            assert status.chain_id == "kabuto-test" and not status.catching_up
            committed = await client.submit_and_wait(alice.sign(place(BTC_USD, True, 999_000, 5, client_id=7)))
            assert [r.code for r in committed.results] == [ResultCode.OK]
            order_id = committed.results[0].order_id
            [order] = await client.open_orders(alice.address)
            assert (order.order_id, order.price, order.size_lots, order.client_id, order.is_buy) == (
                order_id, 999_000, 5, 7, True)
            assert (await client.order_status(address=alice.address, client_id=7))["status"] == "open"
            balances = await client.balances(alice.address)
            assert balances[USD].hold > 0 and balances[USD].available == balances[USD].balance - balances[USD].hold
            taker = await client.submit_and_wait(bob.sign(market_order(BTC_USD, False, 2, 999_000)), timeout_ms=5000)
            assert taker.results[0].filled_lots == 2
            fills, cursor = await client.fills(alice.address)
            assert [(f.order_id, f.size_lots, f.is_maker, f.is_buy) for f in fills] == [(order_id, 2, True, True)]
            assert cursor is None and (await client.trades("BTC-USD"))[0].maker == alice.address
            await client.submit_and_wait(alice.sign(cancel_by_client_id(BTC_USD, 7)))
            assert await client.open_orders(alice.address) == []
            stop.set()

    run(scenario)


def test_submit_refusals_and_commit_timeout_raise_typed_errors() -> None:
    node = LiveNode(commit_timeout_seconds=0.1)
    alice = wallets(node, 1)[0]

    async def scenario() -> None:
        async with serve(node), KabutoClient(node.url) as client:
            signed = alice.sign(place(BTC_USD, True, 999_000, 1))
            forged = signed.wire[:-1] + bytes([signed.wire[-1] ^ 1])
            with pytest.raises(TxRejected) as refused:
                await client.submit(forged)
            assert refused.value.code == "bad_signature"
            with pytest.raises(TxRejected) as refused:
                await client.submit_and_wait(forged)
            assert refused.value.code == "bad_signature"
            with pytest.raises(RpcCallError) as timed_out:
                await client.submit_and_wait(signed)
            assert timed_out.value.code == COMMIT_TIMEOUT
            assert await client.broadcast_async(alice.sign(cancel_all())) != signed.hash

    run(scenario)


def test_account_proof_verifies_and_a_tampered_one_is_refused() -> None:
    node = LiveNode()
    alice = wallets(node, 1)[0]

    async def scenario() -> None:
        async with serve(node), KabutoClient(node.url) as client:
            node.block(alice.sign(place(BTC_USD, True, 999_000, 5)).wire)
            status = await client.status()
            proof = await client.get_account_proof(alice.address, trusted_root=status.app_hash)
            assert proof.balances[USD] == 10**12 and proof.holds[USD] > 0 and proof.height == 1
            absent = await client.get_account_proof(bytes(20))
            assert absent.value is None and absent.balances == {}
            raw = await client.call("account_proof", {"address": alice.address.hex()})
            with pytest.raises(ProofError):
                parse_account_proof(raw, trusted_root=bytes(32))
            tampered = dict(raw, value=raw["value"][:-2] + ("00" if raw["value"][-2:] != "00" else "01"))
            with pytest.raises(ProofError):
                parse_account_proof(tampered)
            sibling = raw["proof"][1][0][0]
            bent = dict(raw, proof=[raw["proof"][0], [[("ff" if sibling[:2] != "ff" else "00") + sibling[2:],
                                                       *raw["proof"][1][0][1:]], *raw["proof"][1][1:]]])
            with pytest.raises(ProofError):
                parse_account_proof(bent)

    run(scenario)


# --- streams --------------------------------------------------------------------------------------------------


def random_action(rng: random.Random, node: LiveNode, wallet: Wallet) -> Any:
    market = rng.choice((BTC_USD, ETH_USD))
    mid = 1_000_000 if market == BTC_USD else 30_000
    account = node.state.accounts.get(wallet.address)
    own = sorted(account.orders) if account else []
    roll = rng.random()
    if roll < 0.6:
        is_buy = rng.random() < 0.5
        offset = rng.randint(-5, 60)
        price = mid - offset if is_buy else mid + offset
        return place(market, is_buy, price, rng.randint(1, 20), rng.choice((0, 0, TIF_IOC, TIF_ALO)))
    if roll < 0.68:
        return market_order(market, rng.random() < 0.5, rng.randint(1, 30), mid + rng.choice((-40, 40)))
    if roll < 0.88 and own:
        order = account.orders[rng.choice(own)]
        return cancel(order.market_id, order.order_id)
    if roll < 0.97 and own:
        order = account.orders[rng.choice(own)]
        return modify(order.market_id, order.order_id, order.price + rng.randint(-2, 2),
                      max(1, order.size_lots + rng.randint(-5, 5)))
    return cancel_all(rng.choice((None, market)))


def test_book_and_account_streams_equal_the_queries_after_many_random_orders() -> None:
    node = LiveNode(accounts=6)
    traders = wallets(node, 6)
    rng = random.Random(6)

    async def scenario() -> None:
        async with serve(node), KabutoClient(node.url) as client, StreamClient(node.ws_url) as stream:
            books = {m: await BookStream.open(stream, m) for m in (BTC_USD, ETH_USD)}
            accounts = [await AccountStream.open(stream, w.address) for w in traders[:3]]
            orders = 0
            for _ in range(60):
                for _ in range(rng.randint(3, 12)):
                    wallet = rng.choice(traders)
                    actions = [random_action(rng, node, wallet) for _ in range(rng.randint(1, 3))]
                    await client.submit(wallet.sign(*actions))
                    orders += len(actions)
                height = node.block()
                await asyncio.sleep(0)
            assert orders > 700
            for market, book in books.items():
                await book.wait_for_seq(height)
                served = await client.book(market, depth=50)
                assert served["seq"] == book.seq == height
                assert (book.book.get_bids(), book.book.get_asks()) == (served["bids"], served["asks"])
                assert book.gaps == book.mismatches == book.resyncs == 0
                assert len(served["bids"]) > 5 and len(served["asks"]) > 5
            for wallet, account in zip(traders, accounts):
                served = {o.order_id: (o.market, o.is_buy, o.price, o.size_lots)
                          for o in await client.open_orders(wallet.address)}
                balances = await client.balances(wallet.address)

                def local(account: AccountStream = account) -> dict[int, tuple[int, bool, int, int]]:
                    return {o.order_id: (o.market, o.is_buy, o.price, o.size_lots) for o in account.orders.values()}

                with contextlib.suppress(TimeoutError):  # the last block's messages may still be on their way
                    await account.wait_until(lambda: local() == served and account.balances == balances, 5)
                assert local() == served and account.balances == balances
                assert len(account.events) > 20 and len(served) > 0

    run(scenario, limit=40)


def test_an_injected_gap_makes_the_book_resync_by_itself() -> None:
    node = LiveNode()
    alice, bob = wallets(node, 2)

    async def scenario() -> None:
        async with serve(node), KabutoClient(node.url) as client, StreamClient(node.ws_url) as stream:
            book = await BookStream.open(stream, BTC_USD)
            node.block(alice.sign(place(BTC_USD, True, 999_000, 5)).wire)
            await book.wait_for_seq(1)
            node.skip_book_once = True  # block 2's diff never reaches the subscribers
            node.block(bob.sign(place(BTC_USD, False, 1_001_000, 4)).wire)
            height = node.block(alice.sign(place(BTC_USD, True, 999_500, 2)).wire)  # prev_seq 2 != local 1
            await book.wait_until(lambda: book.resyncs == 1 and book.seq == height)
            assert book.gaps == 1 and book.mismatches == 0
            served = await client.book(BTC_USD, depth=50)
            assert (book.book.get_bids(), book.book.get_asks()) == (served["bids"], served["asks"])
            assert served["asks"] == [(1_001_000, 4)]  # the level the missed diff carried
            height = node.block(bob.sign(cancel_all()).wire)
            await book.wait_for_seq(height)
            assert book.book.get_asks() == [] and book.resyncs == 1

    run(scenario)


def test_reconnect_resubscribes_and_the_book_continues() -> None:
    node = LiveNode()
    alice = wallets(node, 1)[0]

    async def scenario() -> None:
        async with serve(node), KabutoClient(node.url) as client, StreamClient(node.ws_url) as stream:
            book = await BookStream.open(stream, BTC_USD)
            blocks: list[str] = []
            await stream.subscribe("blocks", lambda m: blocks.append(m["header"]["height"]))
            node.block(alice.sign(place(BTC_USD, True, 999_000, 5)).wire)
            await book.wait_for_seq(1)
            for session in list(node.app[SERVER].sessions):
                session.request_close(CLOSE_GOING_AWAY, "server shutting down")
            while stream.connections < 2 or not stream.is_connected:
                await asyncio.sleep(0.01)
            assert stream.last_close_code == CLOSE_GOING_AWAY
            await book.wait_until(lambda: book.book.is_synced)
            height = node.block(alice.sign(place(BTC_USD, True, 998_000, 1)).wire)
            await book.wait_for_seq(height)
            served = await client.book(BTC_USD, depth=50)
            assert book.book.get_bids() == served["bids"] == [(999_000, 5), (998_000, 1)]
            while blocks[-1:] != [str(height)]:
                await asyncio.sleep(0.01)
            assert blocks == ["1", "2"]  # the blocks subscription came back too
            answer = await stream.call("broadcast_tx_sync", {"tx": alice.sign(cancel_all()).wire.hex()})
            assert answer["code"] == "ok"  # submission over the same WebSocket

    run(scenario)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 8])
def test_tx_inclusion_proof_leads_to_the_block_txs_root(count: int) -> None:
    node = LiveNode(accounts=8)
    traders = wallets(node, 8)

    async def scenario() -> None:
        async with serve(node), KabutoClient(node.url) as client:
            signed = [w.sign(place(BTC_USD, True, 990_000 + i, 1)) for i, w in enumerate(traders[:count])]
            node.block(*(s.wire for s in signed))
            header = (await client.block(1))["header"]
            for s in signed:
                raw = await client.tx(s.hash)  # checks the proof against the block header
                assert compute_tx_root(s.hash, raw["proof"]["path"]).hex() == header["txs_root"]
                assert raw["proof"]["total"] == count
            raw = await client.call("tx", {"hash": signed[0].hash.hex()})
            if raw["proof"]["path"]:
                side, sibling = raw["proof"]["path"][0]
                bent = [[side, ("00" if sibling[:2] != "00" else "11") + sibling[2:]], *raw["proof"]["path"][1:]]
                assert compute_tx_root(signed[0].hash, bent).hex() != header["txs_root"]

    run(scenario)


def test_stream_client_gives_up_connecting_after_its_timeout() -> None:
    async def scenario() -> None:
        with pytest.raises(ConnectionError):
            async with StreamClient("ws://127.0.0.1:9/websocket", connect_timeout=0.2, reconnect_delay=0.01):
                pass

    run(scenario)


def test_a_refused_subscription_raises_and_is_not_kept() -> None:
    node = LiveNode(accounts=1)

    async def scenario() -> None:
        async with serve(node), StreamClient(node.ws_url) as stream:
            with pytest.raises(RpcCallError) as refused:
                await stream.subscribe("trades", lambda message: None, market=99)
            assert refused.value.data == {"param": "market"}
            with pytest.raises(RpcCallError):
                await stream.subscribe("blocks", lambda message: None, from_height=5)
            kept = await stream.subscribe("blocks", lambda message: None)
            assert kept.id is not None and [s.channel for s in stream.subscriptions] == ["blocks"]

    run(scenario)
