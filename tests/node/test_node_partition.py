"""Network partitions between real validator processes, each in its own network namespace.

Topology (made by the test, removed in a `finally`): a hub namespace holding a bridge, and one namespace per
validator joined to the bridge by a veth pair, with an address in a /24 that exists only inside these
namespaces. Taking a validator's veth end in the hub down cuts it off; bringing it up heals the partition.
Heights are read from each node's JSON log (the test process cannot reach the namespaces' addresses).

Needs root and `ip netns`; skipped cleanly otherwise.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from node.config import load_config, render_config
from node.home import CONFIG_FILE, make_localnet
from node.keys import load_key, node_id

ROOT = Path(__file__).resolve().parents[2]
P2P_PORT, RPC_PORT = 26656, 26657


def run_ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def can_make_namespaces() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"kabuto-probe-{os.getpid()}"
    try:
        run_ip("netns", "add", probe)
        run_ip("netns", "del", probe)
        return True
    except (subprocess.SubprocessError, OSError):
        return False


pytestmark = pytest.mark.skipif(not can_make_namespaces(), reason="needs root and ip netns")


class Namespaces:
    def __init__(self, count: int) -> None:
        tag = f"{os.getpid() % 10000}"
        self.subnet = f"10.{77 + os.getpid() % 100}.0"
        self.hub = f"kbh{tag}"
        self.nodes = [f"kbn{tag}-{i}" for i in range(count)]
        self.made: list[str] = []

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    def create(self) -> None:
        run_ip("netns", "add", self.hub)
        self.made.append(self.hub)
        run_ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        run_ip("-n", self.hub, "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes):
            run_ip("netns", "add", ns)
            self.made.append(ns)
            run_ip("link", "add", f"vh{i}", "netns", self.hub, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run_ip("-n", self.hub, "link", "set", f"vh{i}", "master", "br0", "up")
            run_ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            run_ip("-n", ns, "link", "set", "eth0", "up")
            run_ip("-n", ns, "link", "set", "lo", "up")

    def cut(self, i: int) -> None:
        run_ip("-n", self.hub, "link", "set", f"vh{i}", "down")

    def heal(self, i: int) -> None:
        run_ip("-n", self.hub, "link", "set", f"vh{i}", "up")

    def delete(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def last_height(home: Path) -> int:
    height = 0
    path = home / "node.log"
    if not path.exists():
        return 0
    for line in path.read_text(errors="replace").splitlines():
        if '"committed block"' in line:
            try:
                height = max(height, json.loads(line)["block_height"])
            except (ValueError, KeyError):
                pass
    return height


def wait_height(home: Path, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if last_height(home) >= target:
            return
        time.sleep(0.1)
    log = (home / "node.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"{home.name} did not reach height {target} in {timeout} s (at {last_height(home)}):\n{log}")


def configure(homes: list[Path], spaces: Namespaces) -> None:
    ids = [node_id(load_key(home / "node_key.json")) for home in homes]
    for i, home in enumerate(homes):
        config = load_config(home / CONFIG_FILE)
        peers = tuple(f"{ids[j]}@{spaces.address(j)}:{P2P_PORT}" for j in range(len(homes)) if j != i)
        config = replace(config, p2p=replace(config.p2p, listen=f"{spaces.address(i)}:{P2P_PORT}", peers=peers),
                         rpc=replace(config.rpc, listen=f"{spaces.address(i)}:{RPC_PORT}"))
        (home / CONFIG_FILE).write_text(render_config(config))


def test_node_partitions_stall_the_minority_and_heal(tmp_path: Path) -> None:
    spaces = Namespaces(4)
    procs: list[subprocess.Popen] = []
    homes = make_localnet(tmp_path / "net", 4, 40000)
    configure(homes, spaces)
    try:
        spaces.create()
        for i, home in enumerate(homes):
            with open(home / "node.log", "ab") as log:
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", spaces.nodes[i], sys.executable, "-m", "node", "start", "--home",
                     str(home)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        for home in homes:
            wait_height(home, 3, timeout=30)

        # validator 3 cut off: the other three go on, it stalls
        spaces.cut(3)
        time.sleep(0.5)
        stalled = last_height(homes[3])
        wait_height(homes[0], last_height(homes[0]) + 5, timeout=20)
        assert last_height(homes[3]) <= stalled + 1

        # healed: it catches up and follows
        spaces.heal(3)
        wait_height(homes[3], last_height(homes[0]) + 2, timeout=30)

        # two against two: nobody has more than 2/3, nothing commits anywhere
        spaces.cut(2)
        spaces.cut(3)
        time.sleep(1.0)
        frozen = [last_height(home) for home in homes]
        time.sleep(2.5)
        assert [last_height(home) for home in homes] == frozen

        # healed: the chain resumes, one chain for all
        spaces.heal(2)
        spaces.heal(3)
        for home in homes:
            wait_height(home, max(frozen) + 3, timeout=40)
        assert all(proc.poll() is None for proc in procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        spaces.delete()
    hashes = []
    for home in homes:
        records = [json.loads(line) for line in (home / "node.log").read_text(errors="replace").splitlines()
                   if '"committed block"' in line]
        hashes.append({r["block_height"]: r["hash"] for r in records})
    common = set.intersection(*(set(h) for h in hashes))
    assert common and all(len({h[height] for h in hashes}) == 1 for height in common)  # no fork
