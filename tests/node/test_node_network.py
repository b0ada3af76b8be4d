"""Real validator processes on loopback: commit, kill -9, block sync and rejoin, halt without a quorum, replay,
and a peer that sends malformed frames.

Each test starts `python -m node start` processes on free ports under `tmp_path` and kills every one of them in a
`finally`, whatever happens. Heights and hashes are read through each node's JSON-RPC (`status`, `block`).
"""

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgpack
import pytest

from node.home import GENESIS_FILE, make_localnet
from node.localnet import find_base_port
from node.p2p.connection import ConnectionConfig, open_connection
from node.p2p.gossip import MSG_TX, MSG_VOTE
from stf.crypto import PrivateKey
from stf.tx import Faucet, sign_transaction

USD = 0

ROOT = Path(__file__).resolve().parents[2]


def call_rpc(port: int, method: str, params: dict | None = None, timeout: float = 1.0) -> dict | None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read()).get("result")
    except (OSError, ValueError):
        return None


class Net:
    """N validator homes and their processes."""

    def __init__(self, base: Path, validators: int) -> None:
        self.base_port = find_base_port(2 * validators)
        self.homes = make_localnet(base, validators, self.base_port)
        self.procs: dict[int, subprocess.Popen] = {}

    def rpc_port(self, i: int) -> int:
        return self.base_port + 2 * i + 1

    def p2p_port(self, i: int) -> int:
        return self.base_port + 2 * i

    def start(self, i: int) -> None:
        log = open(self.homes[i] / "node.log", "ab")
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "node", "start", "--home", str(self.homes[i])], cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def kill9(self, i: int) -> None:
        self.procs[i].kill()
        self.procs[i].wait()

    def stop(self, i: int) -> int:
        """SIGTERM node `i` and wait for its exit code; a node still running after 15 s fails the test with the
        Python stacks it writes on SIGUSR1."""
        self.procs[i].send_signal(signal.SIGTERM)
        try:
            return self.procs[i].wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.ask_for_stacks([i])
            pytest.fail(f"node {i} did not exit within 15 s of SIGTERM; its log ends, stacks last:\n"
                        f"{self.log_tail(i, 6000)}")

    def ask_for_stacks(self, nodes: list[int]) -> None:
        """SIGUSR1 to each of `nodes` still running: each writes its Python stacks to its log (node/validator.py)."""
        for j in nodes:
            if self.procs[j].poll() is None:
                self.procs[j].send_signal(signal.SIGUSR1)
        time.sleep(1.0)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait()

    def height(self, i: int) -> int:
        status = call_rpc(self.rpc_port(i), "status")
        return -1 if status is None else int(status["sync_info"]["latest_block_height"])

    def block_hash(self, i: int, height: int) -> str | None:
        block = call_rpc(self.rpc_port(i), "block", {"height": height})
        return None if block is None else json.dumps(block, sort_keys=True)

    def metrics(self, i: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rpc_port(i)}/metrics", timeout=2) as response:
            return response.read().decode()

    def log(self, i: int) -> str:
        """Node `i`'s whole log: a line a test looks for may be followed by any number of later ones."""
        return (self.homes[i] / "node.log").read_text(errors="replace")

    def log_tail(self, i: int, chars: int = 3000) -> str:
        """The end of node `i`'s log, for a failure message."""
        return self.log(i)[-chars:]

    def wait_height(self, i: int, target: int, timeout: float) -> float:
        """Seconds until node `i` reports at least `target`; fails the test with its log after `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.height(i) >= target:
                return time.monotonic() - started
            if self.procs[i].poll() is not None:
                pytest.fail(f"node {i} exited with {self.procs[i].returncode}:\n{self.log_tail(i)}")
            time.sleep(0.1)
        pytest.fail(f"node {i} did not reach height {target} in {timeout} s (at {self.height(i)}):\n{self.log_tail(i)}"
                    f"\n{self.describe_others(i)}")

    def describe_others(self, i: int) -> str:
        """Each other node's height and the end of its log, with the Python stacks it writes on SIGUSR1: a stalled
        chain is often stuck in a node other than the one waited on."""
        others = [j for j in sorted(self.procs) if j != i]
        self.ask_for_stacks(others)
        parts = []
        for j in others:
            proc = self.procs[j]
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            parts.append(f"--- node {j} ({state}, at {self.height(j)}):\n{self.log_tail(j, 4000)}")
        return "\n".join(parts)


@pytest.fixture
def net4(tmp_path: Path):
    net = Net(tmp_path / "net", 4)
    try:
        yield net
    finally:
        net.kill_all()


def test_node_network_kill_rejoin_quorum_and_replay(net4: Net) -> None:
    for i in range(4):
        net4.start(i)
    for i in range(4):
        net4.wait_height(i, 3, timeout=30)

    # a transaction handed to one node over P2P is gossiped, admitted and committed on every node
    wire = sign_transaction(PrivateKey(os.urandom(32)), "kabuto-localnet", time.time_ns() // 1_000_000,
                            [Faucet(USD, 10**9)])
    asyncio.run(send_messages(net4.p2p_port(1), [(MSG_TX, wire)]))
    tx_hash = hashlib.sha256(wire).hexdigest()
    for i in range(4):
        assert wait_for(lambda: call_rpc(net4.rpc_port(i), "tx", {"hash": tx_hash}) is not None, 15), net4.log_tail(i)
    metrics = net4.metrics(1)
    for line in ("kabuto_p2p_peers 3.0", "kabuto_block_interval_seconds_bucket", "kabuto_stf_apply_seconds_count",
                 "kabuto_commit_seconds_sum", "kabuto_consensus_round ", "kabuto_mempool_bytes ",
                 "kabuto_p2p_sent_bytes_total"):
        assert line in metrics, line
    # the validators' oracle submissions are admitted too (every node gets every one by gossip)
    assert metric_value(metrics, 'kabuto_mempool_admissions_total{code="ok"}') >= 1
    assert float(metrics.split("\nkabuto_consensus_height ")[1].split()[0]) >= 3
    assert '"height":' in net4.log(1) and '"round":' in net4.log(1)  # JSON logs carry height and round

    # kill -9 one validator: the other three keep committing
    net4.kill9(3)
    at_kill = net4.height(0)
    net4.wait_height(0, at_kill + 5, timeout=15)

    # restarted, it block-syncs to the others and follows them again
    net4.start(3)
    rejoin_s = net4.wait_height(3, net4.height(0), timeout=20)
    print(f"rejoined (caught up) {rejoin_s:.2f} s after restart")
    net4.wait_height(3, net4.height(0) + 3, timeout=10)
    common = min(net4.height(i) for i in range(4))
    assert len({net4.block_hash(i, common) for i in range(4)}) == 1  # one chain: the same block everywhere

    # 2 of 4 stopped: no quorum, nothing commits (and nothing forks)
    assert net4.stop(0) == 0 and net4.stop(1) == 0
    time.sleep(0.5)
    halted = net4.height(2)
    time.sleep(2.0)
    assert net4.height(2) == halted and net4.height(3) == halted

    # one returns (with node 3, which must vote): the chain resumes
    net4.start(0)
    net4.wait_height(2, halted + 3, timeout=30)
    net4.wait_height(0, halted + 3, timeout=30)
    assert net4.block_hash(0, halted + 2) == net4.block_hash(2, halted + 2) == net4.block_hash(3, halted + 2)

    for i in (0, 2, 3):
        assert net4.stop(i) == 0
    for home in net4.homes:
        done = subprocess.run([sys.executable, "-m", "node", "replay", "--home", str(home)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "every block hash and app hash matches" in done.stdout


def metric_value(metrics: str, sample: str) -> float:
    """The value of `sample` (name with labels, as exposed) in a /metrics text; 0 when absent."""
    for line in metrics.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


async def send_messages(port: int, messages: list[tuple[int, object]], chain_id: str = "kabuto-localnet") -> None:
    """Each message from a fresh, authenticated peer with a random node key (a ban only hits that key)."""
    for msg_type, payload in messages:
        key = PrivateKey(os.urandom(32))
        try:
            async with open_connection("127.0.0.1", port, node_key=key, chain_id=chain_id,
                                       config=ConnectionConfig()) as peer:
                peer.send(msg_type, payload)
                await asyncio.sleep(0.2)
        except OSError:
            pass


async def send_garbage(port: int) -> None:
    """A raw socket with junk, then authenticated peers with malformed and badly signed messages."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(os.urandom(4096))
    await writer.drain()
    writer.close()
    bad_vote = msgpack.packb([1, 1, 0, b"\x00" * 32, b"\x11" * 20, 0, b"\x22" * 64])
    await send_messages(port, [(MSG_TX, 12345), (MSG_VOTE, b"\x93\x01\x02"), (MSG_VOTE, bad_vote),
                               (MSG_TX, b"not a transaction"), (33, "x"), (34, [[1, b"x", b"y"]]), (40, None)])


def test_node_malformed_frames_do_not_crash_a_node(tmp_path: Path) -> None:
    net = Net(tmp_path / "net", 1)
    try:
        net.start(0)
        net.wait_height(0, 2, timeout=30)
        asyncio.run(send_garbage(net.p2p_port(0)))
        before = net.height(0)
        net.wait_height(0, before + 3, timeout=15)
        assert net.procs[0].poll() is None
        assert net.stop(0) == 0
    finally:
        net.kill_all()


def test_node_rpc_submission_admits_and_commits(tmp_path: Path) -> None:
    from rpc.server import make_app
    if "submitter" not in __import__("inspect").signature(make_app).parameters:
        pytest.skip("this RPC server has no transaction submission")
    net = Net(tmp_path / "net", 1)
    try:
        net.start(0)
        net.wait_height(0, 1, timeout=30)
        key = PrivateKey(os.urandom(32))
        wire = sign_transaction(key, "kabuto-localnet", time.time_ns() // 1_000_000, [Faucet(USD, 10**9)])
        answer = call_rpc(net.rpc_port(0), "broadcast_tx_sync", {"tx": wire.hex()}, timeout=5)
        assert answer is not None and answer["code"] == "ok", answer
        assert answer["hash"] == hashlib.sha256(wire).hexdigest()
        assert wait_for(lambda: call_rpc(net.rpc_port(0), "tx", {"hash": answer["hash"]}) is not None, 10)
        forged = wire[:-1] + bytes([wire[-1] ^ 1])
        refused = call_rpc(net.rpc_port(0), "broadcast_tx_sync", {"tx": forged.hex()}, timeout=5)
        assert refused is not None and refused["code"] not in ("ok", None), refused
        metrics = net.metrics(0)  # this transaction and the node's own oracle submissions
        assert metric_value(metrics, 'kabuto_mempool_admissions_total{code="ok"}') == 1 + metric_value(
            metrics, 'kabuto_oracle_submissions_total{result="ok"}')
    finally:
        net.kill_all()


def test_node_diverged_state_stops_with_a_clear_error(tmp_path: Path) -> None:
    """A validator whose genesis state differs (so its app hash does) stops with exit 3; the others go on."""
    net = Net(tmp_path / "net", 4)
    try:
        path = net.homes[3] / GENESIS_FILE
        doc = json.loads(path.read_text())
        doc["balances"].append({"address": "ab" * 20, "asset": USD, "amount": 1})
        path.write_text(json.dumps(doc))
        for i in range(4):
            net.start(i)
        net.wait_height(0, 5, timeout=30)
        assert net.procs[3].wait(timeout=30) == 3
        log = net.log(3)
        assert "kabuto: error:" in log and "diverged" in log and "stopping rather than fork" in log
        assert net.height(0) >= 5 and net.procs[0].poll() is None
    finally:
        net.kill_all()


def run_kills_during_commits(net: Net, kills: int, seed: int) -> None:
    """kill -9 node 3 `kills` times at seeded random moments (blocks commit every ~160 ms, so many kills land
    inside a commit), restarting it each time; it must come back to the same chain every time."""
    rng = random.Random(seed)
    for i in range(4):
        net.start(i)
    for i in range(4):
        net.wait_height(i, 2, timeout=30)
    for _ in range(kills):
        time.sleep(rng.uniform(0.05, 0.6))
        net.kill9(3)
        net.start(3)
        net.wait_height(3, net.height(0), timeout=20)
    net.wait_height(3, net.height(0) + 2, timeout=15)
    common = min(net.height(i) for i in range(4))
    assert len({net.block_hash(i, common) for i in range(4)}) == 1

    # a fresh node (data and WAL wiped) block-syncs the whole chain from genesis and follows it again
    assert net.stop(3) == 0
    assert subprocess.run([sys.executable, "-m", "node", "reset", "--home", str(net.homes[3])], cwd=ROOT,
                          capture_output=True, timeout=30).returncode == 0
    net.wait_height(0, net.height(0) + 2, timeout=15)  # past anything node 3 signed before the reset
    net.start(3)
    net.wait_height(3, net.height(0) + 2, timeout=30)
    assert net.block_hash(3, 1) == net.block_hash(0, 1)
    for i in range(4):
        assert net.stop(i) == 0
    done = subprocess.run([sys.executable, "-m", "node", "replay", "--home", str(net.homes[3])], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "every block hash and app hash matches" in done.stdout, done.stderr


def test_node_kills_during_commits_restart_to_the_same_chain(net4: Net) -> None:
    run_kills_during_commits(net4, kills=3, seed=5)


@pytest.mark.slow
def test_node_many_kills_during_commits(net4: Net) -> None:
    run_kills_during_commits(net4, kills=25, seed=11)


def test_node_writes_its_stacks_on_sigusr1_and_goes_on(tmp_path: Path) -> None:
    net = Net(tmp_path / "net", 1)
    try:
        net.start(0)
        net.wait_height(0, 2, timeout=30)
        net.procs[0].send_signal(signal.SIGUSR1)
        assert wait_for(lambda: "Current thread" in net.log(0), 10), net.log_tail(0)
        log = net.log(0)
        assert "run_forever" in log and "node/validator.py" in log   # the event loop's thread, from the start
        net.wait_height(0, net.height(0) + 2, timeout=15)           # still running and committing
        assert net.stop(0) == 0
    finally:
        net.kill_all()


def test_node_console_tracing_spans_the_block_pipeline_and_a_transaction(tmp_path: Path) -> None:
    net = Net(tmp_path / "net", 1)
    try:
        config = net.homes[0] / "config.toml"
        config.write_text(config.read_text().replace('tracing = "none"', 'tracing = "console"'))
        net.start(0)
        net.wait_height(0, 1, timeout=30)
        wire = sign_transaction(PrivateKey(os.urandom(32)), "kabuto-localnet", time.time_ns() // 1_000_000,
                                [Faucet(USD, 10**9)])
        asyncio.run(send_messages(net.p2p_port(0), [(MSG_TX, wire)]))
        tx_hash = hashlib.sha256(wire).hexdigest()
        assert wait_for(lambda: call_rpc(net.rpc_port(0), "tx", {"hash": tx_hash}) is not None, 15)
        assert net.stop(0) == 0  # the provider flushes its batch on a clean stop
        spans = [json.loads(line) for line in (net.homes[0] / "node.log").read_text().splitlines()
                 if line.startswith("{") and '"trace_id"' in line]
        names = {span["name"] for span in spans}
        assert {"propose", "prevote", "precommit", "apply", "commit", "tx"} <= names, names  # alone: no validate
        tx_spans = [span for span in spans if span["name"] == "tx" and span["attributes"]["tx.hash"] == tx_hash]
        assert len(tx_spans) == 1 and tx_spans[0]["attributes"]["outcome"] == "committed"
    finally:
        net.kill_all()


def test_node_fresh_node_state_syncs_from_a_snapshot(net4: Net) -> None:
    for home in net4.homes:
        config = home / "config.toml"
        config.write_text(config.read_text().replace("snapshot_interval = 1000", "snapshot_interval = 10"))
    for i in range(4):
        net4.start(i)
    net4.wait_height(0, 3, timeout=30)
    assert net4.stop(3) == 0
    assert subprocess.run([sys.executable, "-m", "node", "reset", "--home", str(net4.homes[3])], cwd=ROOT,
                          capture_output=True, timeout=30).returncode == 0
    net4.wait_height(0, 25, timeout=30)
    net4.start(3)
    net4.wait_height(3, net4.height(0) + 2, timeout=30)
    assert "state sync: installed snapshot" in net4.log(3), net4.log_tail(3)
    common = min(net4.height(i) for i in range(4))
    assert len({net4.block_hash(i, common) for i in range(4)}) == 1
    for i in range(4):
        assert net4.stop(i) == 0
    done = subprocess.run([sys.executable, "-m", "node", "replay", "--home", str(net4.homes[3])], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "every block hash and app hash matches" in done.stdout, done.stderr
    snapshot = int(done.stdout.split("from snapshot ")[1].split(":")[0])
    assert snapshot >= 20  # it started from a snapshot, not from genesis
