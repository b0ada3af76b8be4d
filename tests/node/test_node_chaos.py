"""scripts/chaos: the fault plan, the proxy and the iptables rules, the store checker, and a short campaign.

The unit tests need no node: the plan is a pure function of its seed, the proxy runs between plain asyncio
sockets on loopback, and the checker reads chain stores on `MemoryKV` filled with real blocks (one forged).
The campaign tests run `python -m node.chaos` on a real 4-validator localnet: a short one here (about two
minutes, every fault kind this build supports), a longer one marked slow (run from scripts/test with -m slow).
"""

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genesis import minimal_genesis, validate_genesis
from node.chaos import CommitLog, available_kinds, render_with_debug
from node.chaos_check import (
    find_forks, find_lost, judge, parse_evidence_rpc, read_chain, read_evidence, summarize_evidence,
)
from node.chaos_faults import (
    HALTING, KINDS, compute_max_stall, compute_resume_s, impaired_at, make_schedule,
)
from node.chaos_load import Ack
from node.chaos_net import Firewall, LinkProxy, ProxyNet, iptables_usable
from node.config import ConfigError, NodeConfig, render_config
from node.storage import ChainStore, MemoryKV
from stf.block import apply_block, make_block
from stf.crypto import PrivateKey
from stf.constants import VOTE_PREVOTE
from stf.state import export_entries, initialize_state, record_evidence
from stf.tx import TIF_GTC, PlaceOrder, sign_transaction

ROOT = Path(__file__).resolve().parents[2]


# --- the plan ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_schedule_one_impaired_at_a_time(seed: int) -> None:
    plan = make_schedule(seed, 90.0, 4)
    assert plan == make_schedule(seed, 90.0, 4)  # the seed decides everything
    assert {fault.kind for fault in plan} == set(KINDS)  # the first pass covers every kind
    for before, after in zip(plan, plan[1:]):
        assert after.at_s >= before.busy_until_s() - 1e-9 > before.end_s  # healed and settled before the next
    for fault in plan:
        assert fault.end_s <= 90.0 - 3.0
        if fault.kind in HALTING:
            assert sorted(fault.targets + fault.others) == [0, 1, 2, 3] and len(fault.targets) == 2
        else:
            assert len(fault.targets) == 1 and fault.others == () and 0 <= fault.targets[0] < 4
    splits = [(f.at_s, f.end_s) for f in plan if f.kind in HALTING]
    for tenth in range(900):
        t = tenth / 10
        impaired = impaired_at(plan, t)
        assert len(impaired) <= 1 or any(s <= t < e for s, e in splits)


def test_schedule_params_and_subsets() -> None:
    plan = make_schedule(5, 300.0, 7, ("delay", "skew", "split"))
    assert {f.kind for f in plan} == {"delay", "skew", "split"}
    assert all(f.param in (-5000, 5000) for f in plan if f.kind == "skew")
    assert all(f.param > 0 for f in plan if f.kind == "delay")
    assert all(len(f.targets) == 3 and len(f.others) == 4 for f in plan if f.kind == "split")
    kinds = ("delay", "skew", "split")
    assert make_schedule(5, 300.0, 7, kinds) != make_schedule(6, 300.0, 7, kinds)
    assert make_schedule(1, 5.0, 4) == []  # no room for any fault


def test_invalid_schedule_with_fewer_than_four_validators() -> None:
    with pytest.raises(ValueError, match="at least 4 validators"):
        make_schedule(1, 60.0, 3)


def test_invalid_schedule_with_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown fault kind 'flood'"):
        make_schedule(1, 60.0, 4, ("kill", "flood"))


def test_max_stall_leaves_out_expected_halts() -> None:
    commits = [1.0, 1.2, 1.4, 6.0, 6.2, 9.0]
    assert compute_max_stall(commits, [], 0.0, 10.0) == pytest.approx(4.6)  # 1.4 -> 6.0
    assert compute_max_stall(commits, [(1.5, 5.0)], 0.0, 10.0) == pytest.approx(2.8)  # 6.2 -> 9.0 is longest now
    assert compute_max_stall(commits, [(1.5, 5.0), (6.3, 8.9)], 0.0, 9.5) == pytest.approx(1.0)  # heal to commit
    assert compute_max_stall([1.0], [], 0.0, 30.0) == pytest.approx(29.0)  # a chain that never came back counts
    assert compute_resume_s(commits, 5.0) == pytest.approx(1.0)
    assert compute_resume_s(commits, 9.5) is None


# --- the proxy --------------------------------------------------------------------------------------------------

async def start_echo() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def echo_once(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 2.0) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def test_proxy_forwards_cuts_and_heals() -> None:
    async def scenario() -> None:
        server, port = await start_echo()
        link = LinkProxy(0, 1, port)
        await link.start()
        try:
            assert await echo_once(link.port) == b"ping"
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            writer.write(b"live")
            assert await reader.readexactly(4) == b"live"
            link.cut()
            assert await read_until_closed(reader) == b""  # the live connection is closed
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)  # accepted, then dropped
            writer.write(b"x")
            assert await read_until_closed(reader) == b""
            writer.close()
            assert link.refused >= 1
            link.heal()
            assert await echo_once(link.port, b"again") == b"again"
        finally:
            await link.close()
            server.close()

    asyncio.run(scenario())


def test_proxy_delay_holds_bytes_in_order() -> None:
    async def scenario() -> None:
        server, port = await start_echo()
        link = LinkProxy(0, 1, port)
        await link.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            link.set_delay(250)
            started = time.monotonic()
            for i in range(5):
                writer.write(bytes([i]) * 10)
                await writer.drain()
            data = await asyncio.wait_for(reader.readexactly(50), 5)
            elapsed = time.monotonic() - started
            assert data == b"".join(bytes([i]) * 10 for i in range(5))
            assert elapsed >= 0.45  # held 250 ms on the way there and 250 ms back
            link.set_delay(0)
            started = time.monotonic()
            writer.write(b"fast")
            assert await reader.readexactly(4) == b"fast"
            assert time.monotonic() - started < 0.4
            writer.close()
        finally:
            await link.close()
            server.close()

    asyncio.run(scenario())


def test_proxy_net_cuts_directed_links_isolates_and_splits() -> None:
    async def scenario() -> None:
        servers = [await start_echo() for _ in range(4)]
        net = ProxyNet([port for _, port in servers])
        await net.start()
        try:
            async def reachable(src: int, dst: int) -> bool:
                try:
                    return await echo_once(net.proxy_port(src, dst), timeout=1.0) == b"ping"
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    return False

            async def matrix() -> set[tuple[int, int]]:
                return {(i, j) for i in range(4) for j in range(4) if i != j and await reachable(i, j)}

            everything = {(i, j) for i in range(4) for j in range(4) if i != j}
            assert await matrix() == everything
            net.cut_link(0, 1, both=False)
            assert await matrix() == everything - {(0, 1)}  # directed: 1 still dials 0
            net.heal_all()
            net.isolate(2)
            assert await matrix() == {(i, j) for i, j in everything if 2 not in (i, j)}
            net.heal_all()
            net.split((0, 3), (1, 2))
            assert await matrix() == {(0, 3), (3, 0), (1, 2), (2, 1)}
            net.heal_all()
            assert await matrix() == everything
        finally:
            await net.close()
            for server, _ in servers:
                server.close()

    asyncio.run(scenario())


class FakeRun:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kwargs):
        self.calls.append(argv[3:])  # after "iptables -w 5"
        ok = not (argv[3] == "-D" and argv[4] == "INPUT" and sum(c[:2] == ["-D", "INPUT"] for c in self.calls) > 1)
        return subprocess.CompletedProcess(argv, 0 if ok else 1, "", "")


def test_firewall_rules_in_a_dedicated_chain() -> None:
    run = FakeRun()
    wall = Firewall("KABUTO-CHAOS-7", runner=run)
    wall.install()
    wall.block([31000, 31001])
    wall.block([31000])  # already blocked: no second rule
    wall.unblock([31001])
    wall.remove()
    wall.remove()  # idempotent
    assert run.calls == [
        ["-N", "KABUTO-CHAOS-7"],
        ["-I", "INPUT", "-i", "lo", "-j", "KABUTO-CHAOS-7"],
        ["-A", "KABUTO-CHAOS-7", "-p", "tcp", "--dport", "31000", "-j", "DROP"],
        ["-A", "KABUTO-CHAOS-7", "-p", "tcp", "--sport", "31000", "-j", "DROP"],
        ["-A", "KABUTO-CHAOS-7", "-p", "tcp", "--dport", "31001", "-j", "DROP"],
        ["-A", "KABUTO-CHAOS-7", "-p", "tcp", "--sport", "31001", "-j", "DROP"],
        ["-D", "KABUTO-CHAOS-7", "-p", "tcp", "--dport", "31001", "-j", "DROP"],
        ["-D", "KABUTO-CHAOS-7", "-p", "tcp", "--sport", "31001", "-j", "DROP"],
        ["-D", "INPUT", "-i", "lo", "-j", "KABUTO-CHAOS-7"],
        ["-D", "INPUT", "-i", "lo", "-j", "KABUTO-CHAOS-7"],
        ["-F", "KABUTO-CHAOS-7"],
        ["-X", "KABUTO-CHAOS-7"],
    ]


@pytest.mark.skipif(not iptables_usable(), reason="needs root and a working iptables")
def test_iptables_partition_stalls_a_live_connection_and_heals() -> None:
    async def scenario(wall: Firewall) -> None:
        server, port = await start_echo()
        net = ProxyNet([port, port], wall)
        await net.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", net.proxy_port(0, 1))
            writer.write(b"a")
            assert await reader.readexactly(1) == b"a"
            net.cut_link(0, 1, both=False)
            writer.write(b"b")
            with pytest.raises(TimeoutError):  # dropped by the kernel: nothing comes back, nothing is closed
                await asyncio.wait_for(reader.readexactly(1), 1.0)
            net.heal_all()
            assert await asyncio.wait_for(reader.readexactly(1), 10.0) == b"b"  # TCP retransmits once healed
            writer.close()
        finally:
            await net.close()
            server.close()

    wall = Firewall(f"KABUTO-CHAOS-T{os.getpid()}")
    try:
        wall.install()
        asyncio.run(scenario(wall))
    finally:
        wall.remove()
    listed = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    assert wall.chain not in listed


# --- the checker --------------------------------------------------------------------------------------------------

KEYS = [PrivateKey((i + 1).to_bytes(32, "big")) for i in range(2)]
GENESIS = validate_genesis(minimal_genesis(balances=[(k.address.hex(), a, 10**12) for k in KEYS for a in (0, 1)]))


def build_store(heights: int, fork_at: int | None = None, offence_at: int | None = None,
                ) -> tuple[ChainStore, list[tuple[int, str]]]:
    """A store with `heights` real blocks of one order each; from `fork_at` on, the block times differ; at
    `offence_at` the block also records a double-signing offence of KEYS[0] (as a ReportEvidence would)."""
    store = ChainStore(MemoryKV())
    state = initialize_state(GENESIS)
    store.save_genesis(GENESIS.params.chain_id, export_entries(state), state.merkle.root())
    included = []
    for height in range(1, heights + 1):
        time_ms = GENESIS.genesis_time_ms + height * 1000 + (7 if fork_at is not None and height >= fork_at else 0)
        key = KEYS[height % 2]
        tx = sign_transaction(key, GENESIS.params.chain_id, time_ms,
                              [PlaceOrder(0, height % 2 == 0, 1_000_000 + height, 1, TIF_GTC, None, 0, False)])
        block = make_block(state, time_ms, [tx])
        if height == offence_at:
            record_evidence(state, KEYS[0].address, height - 1, 1, VOTE_PREVOTE)
        result = apply_block(state, block)
        store.save_block(height, block.to_wire(), b"", b"", [hashlib.sha256(tx).digest()], result.entries,
                         result.state_root, block_hash=result.block_hash)
        included.append((height, hashlib.sha256(tx).hexdigest()))
    return store, included


def test_checker_passes_one_chain_with_a_node_behind() -> None:
    stores = {0: build_store(6)[0], 1: build_store(6)[0], 2: build_store(4)[0]}
    _, included = build_store(6)
    chains = [read_chain(i, s) for i, s in stores.items()]
    assert [c.height for c in chains] == [6, 6, 4]
    assert find_forks(chains) == []
    acks = [Ack(tx_hash, height, 0, 0.0) for height, tx_hash in included]
    lost, checked = find_lost(stores, acks)
    assert lost == [] and checked == 6 * 2 + 4  # node 2 is checked up to its height only
    assert read_evidence(stores[0], GENESIS.params) == []


def test_invalid_chain_forged_fork_is_reported() -> None:
    stores = {0: build_store(5)[0], 1: build_store(5, fork_at=3)[0], 2: build_store(5)[0]}
    forks = find_forks(read_chain(i, s) for i, s in stores.items())
    assert [f["height"] for f in forks] == [3, 4, 5]
    assert forks[0]["block"][0] == forks[0]["block"][2] != forks[0]["block"][1]
    assert set(forks[0]["app_hash"]) == {0, 1, 2}


def test_invalid_chain_lost_transactions_are_reported() -> None:
    stores = {0: build_store(4)[0], 1: build_store(4)[0]}
    _, included = build_store(4)
    height, tx_hash = included[1]
    acks = [
        Ack(tx_hash, height, 0, 0.0),                 # there: fine
        Ack(tx_hash, height + 1, 1, 0.0),             # acknowledged at another height than the chain holds
        Ack("ab" * 32, 3, 0, 0.0),                     # never included
        Ack("cd" * 32, 9, 0, 0.0),                     # no node holds height 9 at all
    ]
    lost, _ = find_lost(stores, acks)
    assert [(entry["hash"][:4], entry["node"], entry["found"]) for entry in lost] == [
        (tx_hash[:4], 0, height), (tx_hash[:4], 1, height), ("abab", 0, None), ("abab", 1, None),
        ("cdcd", None, "no node holds that height"),
    ]


def test_checker_reads_offences_from_the_committed_state() -> None:
    store, _ = build_store(4, offence_at=3)
    offences = read_evidence(store, GENESIS.params)
    assert [(o["validator"], o["height"], o["round"], o["vote_type"]) for o in offences] == [
        (KEYS[0].address.hex(), 2, 1, "prevote")]
    assert find_forks([read_chain(0, store), read_chain(1, build_store(4, offence_at=3)[0])]) == []
    summary = summarize_evidence(offences * 3, shown=2)
    assert summary == {"count": 3, "by_validator": {KEYS[0].address.hex(): 3}, "offences": offences * 2}


def passing_summary() -> dict:
    return {"errors": {"node_exits": []}, "forks": 0, "lost": 0, "acknowledged": 10, "max_stall_s": 2.0,
            "stall_bound_s": 15.0, "faults": {"list": [{"kind": "kill", "end_s": 3.0, "caught_up_s": 0.5}]},
            "byzantine_validators": ["aa" * 20], "evidence": {"count": 1, "by_validator": {"aa" * 20: 1}}}


def test_judge_passes_a_clean_campaign() -> None:
    assert judge(passing_summary()) == (0, None)


@pytest.mark.parametrize("change, reason", [
    ({"errors": {"node_exits": [{"node": 2, "code": 3}]}}, "node 2 exited on its own with code 3 (AppHashMismatch"),
    ({"errors": {"node_exits": [{"node": 1, "code": 2, "on": "stop"}]}}, "node 1 answered SIGTERM with exit code 2"),
    ({"forks": 1, "fork_heights": [{"height": 17}]}, "1 fork(s): nodes disagree first at height 17"),
    ({"lost": 1, "lost_txs": [{"hash": "ef" * 32, "height": 4, "node": 1}]}, "1 acknowledged transaction(s) lost"),
    ({"acknowledged": 0}, "no transaction was acknowledged"),
    ({"faults": {"list": [{"kind": "split", "start_s": 4.0, "end_s": 8.0, "caught_up_s": 1.0,
                           "commits_during": 2}]}}, "2 block(s) committed during the 2-2 split at 4.0 s"),
    ({"max_stall_s": 15.5}, "the chain stalled 15.5 s (bound 15.0 s)"),
    ({"faults": {"list": [{"kind": "split", "end_s": 9.0, "caught_up_s": None}]}}, "after the split fault healed"),
    ({"evidence": {"count": 1, "by_validator": {"bb" * 20: 1}}}, "double-signed but no offence of it was recorded"),
])
def test_invalid_campaign_is_judged_a_failure(change: dict, reason: str) -> None:
    code, message = judge({**passing_summary(), **change})
    assert code == 1 and reason in message


def test_evidence_rpc_answers_are_read_in_any_wrapping() -> None:
    item = {"validator": "AB" * 20, "height": "12", "round": 0, "vote_type": 2}
    expected = [{"validator": "ab" * 20, "height": 12, "round": 0, "vote_type": "prevote"}]
    assert parse_evidence_rpc([item]) == expected
    assert parse_evidence_rpc({"evidence": [item], "total": 1}) == expected
    assert parse_evidence_rpc({"offences": []}) == []


def test_commit_log_follows_heights_and_first_sightings(tmp_path: Path) -> None:
    paths = [tmp_path / "a.log", tmp_path / "b.log"]
    now = [10.0]
    log = CommitLog(paths, clock=lambda: now[0])
    line = lambda h: json.dumps({"msg": "committed block", "block_height": h}) + "\n"
    paths[0].write_text(line(1) + line(2) + '{"msg": "other"}\n' + '{"msg": "committed bl')
    log.poll()
    now[0] = 11.0
    with open(paths[0], "a") as handle:
        handle.write('ock", "block_height": 3}\n')
    paths[1].write_text('{"msg": "node started"}\n' + line(1) + line(2) + line(3))
    log.poll()
    assert log.heights == [3, 3] and log.first_seen == {1: 10.0, 2: 10.0, 3: 11.0}
    assert log.started == [0, 1]  # node 1 serves since its start; node 0 has not said so yet


def test_debug_config_keys_are_written_only_when_the_node_knows_them() -> None:
    text = render_config(NodeConfig())
    kinds, unavailable = available_kinds()
    assert set(kinds) | set(unavailable) == set(KINDS)
    if "skew" in kinds:
        assert "clock_skew_ms = -5000" in render_with_debug(text, {"clock_skew_ms": -5000})
    else:
        with pytest.raises(ConfigError):
            render_with_debug(text, {"clock_skew_ms": -5000})


# --- campaigns on a real localnet ---------------------------------------------------------------------------

def run_chaos(duration: float, seed: int, timeout: float, *extra: str) -> tuple[dict, subprocess.CompletedProcess]:
    done = subprocess.run([sys.executable, "-m", "node.chaos", "--duration", str(duration), "--seed", str(seed),
                           "--json", *extra], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout), done


def assert_campaign_passed(summary: dict, done: subprocess.CompletedProcess) -> None:
    print(done.stderr)
    assert summary["lost"] == 0, summary["lost_txs"]
    assert summary["forks"] == 0, summary["fork_heights"]
    assert summary["errors"]["node_exits"] == [], summary["errors"]
    assert summary["max_stall_s"] <= summary["stall_bound_s"]
    assert summary["acknowledged"] > 100
    assert done.returncode == summary["exit_code"] == 0, summary["reason"]
    heights = list(summary["heights"].values())
    assert min(heights) > 50 and max(heights) - min(heights) <= 5


def test_node_chaos_short_campaign() -> None:
    started = time.monotonic()
    summary, done = run_chaos(90, 3, 180)
    assert_campaign_passed(summary, done)
    faults = summary["faults"]
    assert all(f["commits_during"] == 0 for f in faults["list"] if f["kind"] == "split")
    assert set(faults["by_kind"]) == set(faults["available"]), faults  # every kind this build supports
    assert time.monotonic() - started < 180
    if "byzantine" in faults["by_kind"]:
        assert summary["evidence"]["count"] > 0, "double-signing left no evidence"
        assert set(summary["byzantine_validators"]) <= set(summary["evidence"]["by_validator"])
    if summary["network"] == "iptables":   # its own chain is gone (another campaign may be running beside it)
        rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
        assert summary["firewall_chain"] and summary["firewall_chain"] not in rules.split()


@pytest.mark.slow
def test_node_chaos_long_campaign_with_proxy_cuts() -> None:
    summary, done = run_chaos(300, 11, 480, "--no-iptables")
    assert summary["network"] == "proxy"
    assert_campaign_passed(summary, done)
    assert summary["faults"]["count"] >= 20
