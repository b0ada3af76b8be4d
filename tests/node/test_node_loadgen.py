"""The load generator (node/loadgen.py): argument and mix parsing, pacing, the percentile and summary math, the
order flow, answer counting, refusals as one line with exit 2, and one short run against a real validator."""

import asyncio
import json
import socket
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import node.loadgen as loadgen
from genesis import minimal_genesis, validate_genesis
from node.loadgen import (
    BlockWatcher, LoadConfig, LoadgenError, MarketInfo, OrderFlow, Prepared, Sender, compute_accounts,
    compute_block_figures, compute_due, compute_mid, compute_percentile, endpoints_from_home, main, name_error,
    parse_args, parse_mix, parse_rate, probe_chain, resolve_markets, run_load, summarize, validate_config,
)
from node.home import make_localnet
from rpc.client.wallet import NonceSource, Wallet
from rpc.methods import make_router
from rpc.server import make_app
from rpc.views import InMemoryChainView
from stf.state import initialize_state
from stf.tx import CancelByClientId, MarketOrder, PlaceOrder
from test_node_network import Net

SUMMARY_KEYS = {
    "target_rate", "duration_s", "submitted", "admitted", "rejected", "committed", "committed_tx_per_s",
    "latency_ms", "blocks", "txs_per_block_mean", "block_interval_ms_mean", "loadgen_cpu_s",
}
BTC_USD = MarketInfo(0, "BTC-USD", False, 1, 1, 1_000_000, (0, 1))
ETH_USD = MarketInfo(1, "ETH-USD", False, 1, 1, 400_000, (0, 2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- arguments ----------------------------------------------------------------------------------------------------

def test_parse_mix_keeps_kind_order_and_weights() -> None:
    assert parse_mix("place=70,cancel=20,market=10") == (("place", 70), ("cancel", 20), ("market", 10))
    assert parse_mix("market=1, place=3") == (("place", 3), ("market", 1))
    assert parse_mix("place=0,market=5") == (("place", 0), ("market", 5))


@pytest.mark.parametrize("text", ["modify=5", "place", "place=-1", "place=1.5", "place=x", "place=0,cancel=0",
                                  "place=1,place=2", ""])
def test_invalid_mix(text: str) -> None:
    with pytest.raises(LoadgenError, match="--mix"):
        parse_mix(text)


def test_parse_rate_number_or_max() -> None:
    assert parse_rate("250") == 250.0
    assert parse_rate("0.5") == 0.5
    assert parse_rate("max") is None


@pytest.mark.parametrize("text", ["0", "-5", "fast", "inf", "nan", ""])
def test_invalid_rate(text: str) -> None:
    with pytest.raises(LoadgenError, match="--rate"):
        parse_rate(text)


@pytest.mark.parametrize("change, flag", [
    ({"duration_s": 0}, "--duration"), ({"accounts": 0}, "--accounts"), ({"drain_s": -1}, "--drain"),
    ({"transport": "udp"}, "--transport"), ({"method": "commit"}, "--method"), ({"batch_max": 0}, "--batch"),
    ({"max_pending": 0}, "--max-pending"), ({"markets": ()}, "--markets"), ({"mix": (("place", 0),)}, "--mix"),
    ({"tick_ms": 0}, "--tick-ms"), ({"tick_ms": 1001}, "--tick-ms"),
])
def test_invalid_config(change: dict, flag: str) -> None:
    with pytest.raises(LoadgenError, match=flag):
        validate_config(LoadConfig(**change))


def test_compute_accounts_one_per_ten_tx_per_s_within_bounds() -> None:
    assert [compute_accounts(r) for r in (1.0, 100.0, 101.0, 2000.0, 50_000.0, None)] == [10, 10, 11, 200, 1000, 1000]


def test_parse_args_reads_every_flag() -> None:
    urls, config, as_json = parse_args([
        "--rpc", "127.0.0.1:1,http://h:2/", "--rate", "max", "--duration", "3", "--accounts", "8", "--seed", "9",
        "--mix", "place=1,market=1", "--markets", "0,ETH-USD", "--transport", "ws", "--method", "async",
        "--drain", "2", "--batch", "10", "--tick-ms", "40", "--connections", "2", "--max-pending", "50", "--json"])
    assert urls == ["http://127.0.0.1:1", "http://h:2"]
    assert config == LoadConfig(rate=None, duration_s=3, accounts=8, seed=9, mix=(("place", 1), ("market", 1)),
                                markets=("0", "ETH-USD"), transport="ws", method="async", drain_s=2, batch_max=10,
                                tick_ms=40, connections=2, max_pending=50)
    assert as_json


def test_invalid_endpoints_missing() -> None:
    with pytest.raises(LoadgenError, match="--rpc URL"):
        parse_args(["--rate", "10"])


def test_invalid_home_without_localnet(tmp_path: Path) -> None:
    with pytest.raises(LoadgenError, match="no localnet"):
        endpoints_from_home(tmp_path)


def test_endpoints_from_home_reads_each_rpc_listen(tmp_path: Path) -> None:
    make_localnet(tmp_path / "net", 3, 23000)
    assert endpoints_from_home(tmp_path / "net") == [f"http://127.0.0.1:{23000 + 2 * i + 1}" for i in range(3)]


def test_main_invalid_argument_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rpc", "127.0.0.1:1", "--mix", "place=1,swap=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loadgen: error: --mix: 'swap=2'") and err.count("\n") == 1


def test_main_unreachable_endpoint_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["--rpc", f"127.0.0.1:{port}", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"loadgen: error: http://127.0.0.1:{port}: cannot reach") and err.count("\n") == 1


def test_invalid_chain_without_faucet_is_refused() -> None:
    genesis = validate_genesis(minimal_genesis(faucet=False))
    view = InMemoryChainView(initialize_state(genesis), genesis=genesis)

    async def scenario() -> None:
        runner = web.AppRunner(make_app(make_router(view), view))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        try:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(LoadgenError, match="no faucet"):
                    await probe_chain(session, [f"http://{host}:{port}"], ["BTC-USD"])
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


# --- pacing and figures -------------------------------------------------------------------------------------------

def test_compute_due_follows_the_clock_without_bursts() -> None:
    rate, sent, elapsed, largest = 300.0, 0, 0.0, 0
    for step in [0.004, 0.011, 0.0, 0.05, 0.007, 0.2, 0.013] * 20:  # irregular ticks, one long stall
        elapsed += step
        due = compute_due(rate, elapsed, sent)
        assert due >= 0
        largest = max(largest, due)
        sent += due
        assert sent == int(rate * elapsed)  # never ahead of the clock, caught up at every tick
    assert largest == int(rate * 0.2) or largest == int(rate * 0.2) + 1  # the stall's backlog, no more
    assert compute_due(rate, 1.0, 1000) == 0  # ahead of the clock: nothing


def test_compute_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert compute_percentile(values, 50) == 50.0
    assert compute_percentile(values, 90) == 90.0
    assert compute_percentile(values, 99) == 99.0
    assert compute_percentile(values, 100) == 100.0
    assert compute_percentile([7.0], 99) == 7.0
    assert compute_percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert compute_percentile([], 50) is None


def test_compute_block_figures_counts_the_window_only() -> None:
    blocks = [(9.9, 1, 0), (10.1, 2, 10), (10.3, 3, 20), (10.6, 4, 30), (11.5, 5, 99)]
    assert compute_block_figures(blocks, 10.0, 11.0) == {
        "blocks": 3, "txs_per_block_mean": 20.0, "block_interval_ms_mean": pytest.approx(233.3, abs=0.1)}
    assert compute_block_figures([], 0.0, 1.0) == {"blocks": 0, "txs_per_block_mean": None,
                                                   "block_interval_ms_mean": None}


def test_summarize_math_and_keys() -> None:
    config = LoadConfig(rate=100.0, duration_s=2.0)
    start = 100.0
    commits = [(100.5, 0.010), (101.0, 0.020), (101.9, 0.030), (102.5, 0.500)]  # the last after the window
    counts = {"submitted": 5, "admitted": 4, "rejected": {"nonce_too_low": 1}, "loadgen_cpu_s": 0.1}
    summary = summarize(config, start, commits, [(100.4, 7, 1), (100.6, 8, 3)], counts)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["committed"] == 4 and summary["committed_in_window"] == 3
    assert summary["committed_tx_per_s"] == 1.5
    assert summary["steady_tx_per_s"] == 1.3  # 101.0 and 101.9, after the first quarter (100.5 is not after it)
    assert summary["latency_ms"] == {"p50": 20.0, "p90": 500.0, "p99": 500.0, "max": 500.0}
    assert summary["rejected"] == {"nonce_too_low": 1}
    assert summary["blocks"] == 2 and summary["txs_per_block_mean"] == 2.0
    assert summary["block_interval_ms_mean"] == 200.0
    assert summary["loadgen_cpu_s"] == 0.1
    assert summary["tick_ms"] == 10
    assert summarize(replace(config, rate=None), start, commits, [], counts)["tick_ms"] is None


def test_summarize_steady_rate_reads_a_sustained_rate_that_the_whole_window_reads_low() -> None:
    # 100/s for 10 s, each committed 300 ms after it was sent: nothing can commit in the first 300 ms.
    config = LoadConfig(rate=100.0, duration_s=10.0)
    commits = [(100.0 + i / 100 + 0.3, 0.3) for i in range(1000)]
    counts = {"submitted": 1000, "admitted": 1000, "rejected": {}, "loadgen_cpu_s": 0.1}
    summary = summarize(config, 100.0, commits, [], counts)
    assert summary["committed"] == 1000 and summary["committed_in_window"] == 971
    assert summary["committed_tx_per_s"] == 97.1
    assert summary["steady_tx_per_s"] == 100.0


def test_summarize_steady_rate_of_a_backlog_is_the_commit_rate() -> None:
    # 200/s offered for 8 s, the chain commits 120/s from the first second on: the backlog only grows.
    config = LoadConfig(rate=200.0, duration_s=8.0)
    commits = [(101.0 + i / 120, 0.0) for i in range(120 * 7)]
    counts = {"submitted": 1600, "admitted": 1600, "rejected": {}, "loadgen_cpu_s": 0.1}
    summary = summarize(config, 100.0, commits, [], counts)
    assert summary["steady_tx_per_s"] == pytest.approx(120.0, abs=0.5)
    assert summary["committed_tx_per_s"] == 105.0


# --- the order flow -----------------------------------------------------------------------------------------------

def wallets(count: int) -> list[Wallet]:
    return [Wallet.from_seed(loadgen.derive_seed(1, i), "kabuto-localnet", nonces=NonceSource(lambda: 1_000))
            for i in range(count)]


def decode_actions(flow: OrderFlow, count: int) -> list[tuple[int, str, list]]:
    """(account, kind, actions) of the next `count` transactions, decoded from their requests."""
    from stf.tx import decode_transaction
    out = []
    for tx in flow.sign(count):
        request = json.loads(tx.entry)
        decoded = decode_transaction(bytes.fromhex(request["params"]["tx"]))
        assert decoded.hash.hex() == tx.hash_hex and request["method"] == "broadcast_tx_sync"
        who = [w.address for w in flow.wallets].index(decoded.signer)
        assert tx.endpoint == who % flow.endpoints
        out.append((who, tx.kind, list(decoded.actions)))
    return out


def test_order_flow_is_deterministic_and_follows_the_mix() -> None:
    first = OrderFlow(wallets(10), [BTC_USD, ETH_USD], parse_mix("place=70,cancel=20,market=10"), 7, 1 << 20, 3)
    second = OrderFlow(wallets(10), [BTC_USD, ETH_USD], parse_mix("place=70,cancel=20,market=10"), 7, 1 << 20, 3)
    assert [t.hash_hex for t in first.sign(200)] == [t.hash_hex for t in second.sign(200)]
    flow = OrderFlow(wallets(10), [BTC_USD, ETH_USD], parse_mix("place=70,cancel=20,market=10"), 7, 1 << 20, 3)
    txs = decode_actions(flow, 2000)
    kinds = {kind: sum(1 for _, k, _ in txs if k == kind) for kind in ("place", "cancel", "market")}
    assert 1200 < kinds["place"] < 1600 and 250 < kinds["cancel"] < 500 and 120 < kinds["market"] < 290
    placed: dict[int, list[tuple[int, int]]] = {}
    for who, kind, actions in txs:
        assert len(actions) == 1
        action = actions[0]
        mid = {0: BTC_USD.mid, 1: ETH_USD.mid}[action.market]
        if kind == "place":
            assert isinstance(action, PlaceOrder)
            assert (action.price < mid) if action.is_buy else (action.price > mid)  # rests off the mid
            assert abs(action.price - mid) <= loadgen.SPREAD_TICKS
            placed.setdefault(who, []).append((action.market, action.client_id))
        elif kind == "cancel":
            assert isinstance(action, CancelByClientId)
            assert (action.market, action.client_id) == placed[who].pop(0)  # its own oldest order
        else:
            assert isinstance(action, MarketOrder)
            assert (action.worst_price > mid) if action.is_buy else (action.worst_price < mid)  # it trades


def test_order_flow_replaces_the_oldest_order_of_a_full_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadgen, "MAX_RESTING", 3)
    flow = OrderFlow(wallets(1), [BTC_USD], parse_mix("place=1"), 1, 100, 1)
    txs = decode_actions(flow, 5)
    assert [len(actions) for _, _, actions in txs] == [1, 1, 1, 2, 2]
    assert txs[3][2][0] == CancelByClientId(0, 101) and txs[3][2][1].client_id == 104
    assert txs[4][2][0] == CancelByClientId(0, 102)


def test_compute_mid_prefers_book_then_oracle_then_last_trade() -> None:
    entry = {"symbol": "X-USD", "tick_size": "10", "last_trade_price": "0", "perp": None}
    empty = {"bids": [], "asks": []}
    assert compute_mid(entry, {"bids": [["99995", "1"]], "asks": [["100013", "1"]]}) == 100000  # on the tick grid
    assert compute_mid(entry, {"bids": [["95", "1"]], "asks": [["113", "1"]]}) == (loadgen.SPREAD_TICKS + 1) * 10
    assert compute_mid({**entry, "perp": {"oracle_price": "500000"}}, empty) == 500000
    assert compute_mid({**entry, "last_trade_price": "77777"}, empty) == 77770
    assert compute_mid(entry, empty) == 10 * loadgen.DEFAULT_MID_TICKS
    assert compute_mid({**entry, "symbol": "ETH-USD", "tick_size": "1"}, empty) == 400_000


def test_resolve_markets_by_id_or_symbol() -> None:
    listed = [{"market": 0, "symbol": "BTC-USD", "halted": False}, {"market": 1, "symbol": "ETH-USD", "halted": True}]
    assert resolve_markets(["0", "BTC-USD"], listed) == [listed[0]]
    with pytest.raises(LoadgenError, match="no market 'DOGE-USD'"):
        resolve_markets(["DOGE-USD"], listed)
    with pytest.raises(LoadgenError, match="halted"):
        resolve_markets(["1"], listed)


# --- answers ------------------------------------------------------------------------------------------------------

def batch(count: int) -> list[Prepared]:
    return [Prepared(f"{i:064x}", "{}", 0, "place") for i in range(count)]


def test_sender_counts_admissions_and_refusals_by_code() -> None:
    watcher = BlockWatcher(None, "")  # type: ignore[arg-type]
    sender = Sender(LoadConfig(), None, watcher)
    txs = batch(4)
    watcher.sent_at.update({tx.hash_hex: 0.0 for tx in txs})
    sender.count_answer(txs, [
        {"id": 0, "result": {"code": "ok"}}, {"id": 1, "result": {"code": "sender_limit"}},
        {"id": 2, "error": {"code": -32005, "message": "rate", "data": {"limit": "requests_per_second_per_ip"}}},
        {"id": 3, "result": {"code": "ok"}}])
    assert sender.admitted == 2
    assert sender.rejected == {"sender_limit": 1, "limit:requests_per_second_per_ip": 1}
    assert set(watcher.sent_at) == {txs[0].hash_hex, txs[3].hash_hex}  # refused ones are never awaited
    whole_body_refused = {"id": None, "error": {"code": -32005, "data": {"limit": "requests_per_second_per_ip"}}}
    sender.count_answer(batch(2), whole_body_refused)
    assert sender.rejected["limit:requests_per_second_per_ip"] == 3
    assert name_error({"code": -32600, "message": "x"}) == "rpc:-32600"


def test_sender_paces_open_loop_in_batches_per_endpoint() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.bodies: list[tuple[int, int, float]] = []

        async def send(self, endpoint: int, body: str) -> list:
            entries = json.loads(body)
            self.bodies.append((endpoint, len(entries), time.monotonic()))
            await asyncio.sleep(0.05)  # slow answers do not hold back the next sends
            return [{"id": e["id"], "result": {"code": "ok"}} for e in entries]

    config = LoadConfig(rate=400.0, duration_s=0.5, batch_max=7)
    flow = OrderFlow(wallets(4), [BTC_USD], parse_mix("place=1,market=1"), 1, 1, 2)
    transport = Recorder()
    sender = Sender(config, transport, BlockWatcher(None, ""))  # type: ignore[arg-type]
    asyncio.run(sender.run_paced(flow, flow.sign(10), 2))
    assert 180 <= sender.submitted <= 200 and sender.admitted == sender.submitted
    assert all(size <= 7 for _, size, _ in transport.bodies)
    assert {endpoint for endpoint, _, _ in transport.bodies} == {0, 1}
    assert sum(size for e, size, _ in transport.bodies if e == 0) == pytest.approx(sender.submitted / 2, abs=2)


# --- live -----------------------------------------------------------------------------------------------------------

def test_node_loadgen_against_a_real_validator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = Net(tmp_path / "net", 1)
    try:
        net.start(0)
        net.wait_height(0, 2, timeout=20)
        url = f"http://127.0.0.1:{net.rpc_port(0)}"
        config = LoadConfig(rate=50.0, duration_s=3.0, accounts=20, drain_s=5.0)
        summary = asyncio.run(asyncio.wait_for(run_load([url], config), 30))
        assert SUMMARY_KEYS <= set(summary)
        assert summary["submitted"] >= 140 and summary["rejected"] == {}
        assert summary["admitted"] == summary["submitted"]
        assert summary["committed"] == summary["submitted"] and summary["uncommitted"] == 0
        assert summary["committed_tx_per_s"] > 30
        latency = summary["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"] < 5000
        assert summary["blocks"] >= 5 and summary["txs_per_block_mean"] > 1
        assert summary["sent_by_kind"]["place"] > summary["sent_by_kind"].get("market", 0) > 0

        # the command, over the WebSocket transport
        assert main(["--rpc", url, "--rate", "40", "--duration", "1", "--accounts", "4", "--transport", "ws",
                     "--drain", "3", "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["transport"] == "ws" and summary["submitted"] >= 30
        assert summary["committed"] == summary["admitted"] == summary["submitted"]
        assert summary["latency_ms"]["p50"] is not None
    finally:
        net.kill_all()
