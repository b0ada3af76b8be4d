"""`scripts/localnet`'s supervisor (`python -m node.localnet`) as a user runs it: the validator lines in their exact
form, block lines, Ctrl-C stopping every validator, and a second run resuming the same chain."""

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from test_node_network import ROOT, find_base_port

LINE = re.compile(r"validator (\d) rpc=http://127\.0\.0\.1:(\d+) ws=ws://127\.0\.0\.1:(\d+)/websocket "
                  r"metrics=http://127\.0\.0\.1:(\d+)/metrics")
BLOCK = re.compile(r"block (\d+) txs=(\d+) hash=([0-9a-f]{16}) round=(\d+) interval=(-|\d+ms)")


def run_localnet(base: Path, port: int, blocks: int, timeout_s: float = 60.0) -> list[str]:
    """Run the supervisor until it has printed `blocks` block lines (or `timeout_s` passed), then Ctrl-C it; its
    output lines (it must exit 0 by itself). Waiting for blocks rather than for a fixed time: on a loaded machine
    the validators take seconds longer to start."""
    proc = subprocess.Popen([sys.executable, "-m", "node.localnet", "--home", str(base), "--base-port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline and \
                sum(line.startswith("block ") for line in list(lines)) < blocks:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=10)
        assert proc.returncode == 0, "\n".join(lines)
        return lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def is_running(home: Path) -> bool:
    found = subprocess.run(["pgrep", "-f", f"--home {home}$"], capture_output=True, text=True)
    return bool(found.stdout.strip())


def test_node_localnet_prints_validators_and_blocks_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    base, port = tmp_path / "localnet", find_base_port(8)
    lines = run_localnet(base, port, blocks=6)
    for i in range(4):
        match = LINE.fullmatch(lines[i])
        assert match and int(match[1]) == i
        assert int(match[2]) == int(match[3]) == int(match[4]) == port + 2 * i + 1
    blocks = [BLOCK.fullmatch(line) for line in lines[4:] if line.startswith("block ")]
    assert len(blocks) >= 5 and all(blocks)
    heights = [int(b[1]) for b in blocks]
    assert heights == list(range(heights[0], heights[0] + len(heights)))
    assert not any(is_running(base / f"node{i}") for i in range(4))  # Ctrl-C stopped every validator

    again = run_localnet(base, port, blocks=2)
    resumed = [int(BLOCK.fullmatch(line)[1]) for line in again if line.startswith("block ")]
    assert resumed and heights[-1] < resumed[0] <= heights[-1] + 3  # the same chain, where it stopped
