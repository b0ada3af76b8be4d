"""Real validator processes on loopback with one faulty validator of four: a double signer (`[debug]
double_sign`), whose offence the others record on the chain, and a clock skewed 10 s forward (`[debug]
clock_skew_ms`), whose proposals the others refuse while the chain keeps committing with block times within
`max_future_block_time_ms` of the honest clocks.

Each test starts `python -m node start` processes (tests/node/test_node_network.py's `Net`) and kills every one
of them in a `finally`. Everything is read through the nodes' JSON-RPC.
"""

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from node.config import DebugSection, load_config, write_config
from node.home import CONFIG_FILE, LOCALNET_CONSENSUS, load_home
from test_node_network import ROOT, Net, call_rpc, metric_value, wait_for

FAULTY = 3
BOUND_MS = LOCALNET_CONSENSUS.max_future_block_time_ms


def set_debug(net: Net, i: int, **fields) -> bytes:
    """Turn on `[debug]` fields in node i's config; returns its validator address."""
    path = net.homes[i] / CONFIG_FILE
    config = load_config(path)
    write_config(path, replace(config, debug=replace(config.debug, **fields)))
    return load_home(net.homes[i]).validator_key.address


@pytest.fixture
def net4(tmp_path: Path):
    net = Net(tmp_path / "net", 4)
    try:
        yield net
    finally:
        net.kill_all()


def test_node_double_signer_is_recorded_as_evidence_and_the_chain_goes_on(net4: Net) -> None:
    offender = set_debug(net4, FAULTY, double_sign=True)
    for i in range(4):
        net4.start(i)
    net4.wait_height(0, 2, timeout=15)

    def recorded() -> list:
        answer = call_rpc(net4.rpc_port(0), "evidence", {"validator": offender.hex()})
        return [] if answer is None else answer["evidence"]

    assert wait_for(lambda: recorded() != [], 20), net4.log(0)
    offence = recorded()[-1]
    assert offence["validator"] == offender.hex() and offence["vote_type"] == 2
    assert offence["vote_type_name"] == "prevote" and int(offence["recorded_height"]) >= int(offence["height"])
    # node 1 may be a block behind node 0: wait until it has committed the evidence too
    assert wait_for(lambda: call_rpc(net4.rpc_port(1), "evidence")["evidence"] != [], 10), net4.log(1)
    everything = call_rpc(net4.rpc_port(1), "evidence")["evidence"]
    assert everything and {e["validator"] for e in everything} == {offender.hex()}  # honest ones never named

    # the chain keeps committing, one chain on every node, and honest nodes reported (the first one recorded)
    at = net4.height(0)
    for i in range(4):
        net4.wait_height(i, at + 3, timeout=15)
    common = min(net4.height(i) for i in range(4))
    assert len({net4.block_hash(i, common) for i in range(4)}) == 1
    reports = sum(metric_value(net4.metrics(i), 'kabuto_evidence_reported_total{result="ok"}') for i in range(3))
    assert reports >= 1
    assert metric_value(net4.metrics(FAULTY), 'kabuto_evidence_reported_total{result="ok"}') == 0  # not itself

    # the stored chain, evidence entries included, replays to the same app hashes
    assert net4.stop(0) == 0
    done = subprocess.run([sys.executable, "-m", "node", "replay", "--home", str(net4.homes[0])], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "every block hash and app hash matches" in done.stdout, done.stderr


def test_node_skewed_proposer_is_refused_and_block_times_stay_within_the_bound(net4: Net) -> None:
    skewed = set_debug(net4, FAULTY, clock_skew_ms=10_000)
    for i in range(4):
        net4.start(i)
    net4.wait_height(0, 1, timeout=15)

    first_seen_ms: dict[int, int] = {}  # height -> honest wall clock when a poll first saw it committed
    started = time.monotonic()
    start_height = net4.height(0)
    while time.monotonic() - started < 12:
        status = call_rpc(net4.rpc_port(0), "status")
        now = time.time_ns() // 1_000_000
        if status is not None:
            info = status["sync_info"]
            height, block_ms = int(info["latest_block_height"]), int(info["latest_block_time_ms"])
            assert block_ms <= now + BOUND_MS, f"block {height} is {block_ms - now} ms ahead of the honest clock"
            first_seen_ms.setdefault(height, now)
        time.sleep(0.1)
    end_height = max(first_seen_ms)
    assert end_height >= start_height + 10, net4.log(0)  # the chain kept committing

    proposers = set()
    for height in range(start_height + 1, end_height + 1):
        header = call_rpc(net4.rpc_port(0), "block", {"height": height})["header"]
        seen = min(ms for h, ms in first_seen_ms.items() if h >= height)  # it was committed before this poll
        assert int(header["time_ms"]) <= seen + BOUND_MS, (height, int(header["time_ms"]) - seen)
        proposers.add(header["proposer"])
    assert skewed.hex() not in proposers and len(proposers) >= 2  # its proposals were refused, others committed
    assert metric_value(net4.metrics(0), "kabuto_consensus_rounds_total") >= 1  # ... in later rounds
    assert net4.height(FAULTY) >= start_height  # the skewed node itself follows the chain
