"""The supervisor behind `scripts/localnet`: N validator processes on loopback, one line per committed block.

`python -m node.localnet [--validators N] [--home DIR] [--reset] [--base-port P]`:

- A DIR without homes gets a fresh localnet (`node.home.make_localnet`: shared genesis and validator set, each
  node peering with every other). A DIR that already holds one is resumed as it is, whatever `--validators` and
  `--base-port` say (they only shape a new localnet); `--reset` deletes DIR's node homes first (only a directory
  that holds `node0/config.toml`, so a wrong path deletes nothing).
- Every validator is its own process: `python -m node start --home DIR/node<i>`, its JSON logs appended to
  `DIR/node<i>/node.log`.
- Output, in this exact form, one line per validator, then one short line per block committed by node 0:

      validator <i> rpc=http://127.0.0.1:<port> ws=ws://127.0.0.1:<port>/websocket metrics=http://127.0.0.1:<port>/metrics
      block 42 txs=0 hash=5fb3e8b5a8dcf7f4 round=0 interval=158ms

- SIGINT (Ctrl-C) or SIGTERM sends SIGTERM to every validator, waits up to `STOP_TIMEOUT_S` for each to exit
  (then SIGKILL) and returns 0. A validator that exits on its own is reported with its exit code and log path;
  the supervisor stops the others and returns 1.
"""

import argparse
import calendar
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from node.config import load_config, parse_address
from node.home import CONFIG_FILE, HomeError, make_localnet

STOP_TIMEOUT_S = 10.0
LOG_FILE = "node.log"
POLL_S = 0.05


def find_base_port(count: int) -> int:
    """A base port whose `count` consecutive ports are free on loopback now (below Linux's ephemeral range,
    32768-60999, so no outgoing connection takes one meanwhile); for localnets of tests, benchmarks and chaos."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range on loopback")


def find_homes(base: Path) -> list[Path]:
    homes = []
    while (base / f"node{len(homes)}" / CONFIG_FILE).is_file():
        homes.append(base / f"node{len(homes)}")
    return homes


def prepare_localnet(base: Path, validators: int, base_port: int, reset: bool) -> list[Path]:
    """The homes to run: existing ones (resume), or a fresh localnet (after `--reset`, or when none exist)."""
    homes = find_homes(base)
    if reset and homes:
        for home in homes:
            shutil.rmtree(home)
        homes = []
    if not homes:
        homes = make_localnet(base, validators, base_port)
    return homes


def format_validator_line(index: int, home: Path) -> str:
    host, port = parse_address(load_config(home / CONFIG_FILE).rpc.listen, "rpc.listen")
    return (f"validator {index} rpc=http://{host}:{port} ws=ws://{host}:{port}/websocket "
            f"metrics=http://{host}:{port}/metrics")


def format_block_line(record: dict, previous_ms: float | None, now_ms: float) -> str:
    interval = "-" if previous_ms is None else f"{now_ms - previous_ms:.0f}ms"
    return (f"block {record.get('block_height')} txs={record.get('txs')} hash={record.get('hash')} "
            f"round={record.get('commit_round')} interval={interval}")


def parse_commit_ms(record: dict) -> float:
    ts = record.get("ts", "")
    try:
        seconds = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
        return seconds * 1000 + int(ts[20:23])
    except (ValueError, IndexError):
        return time.time() * 1000


def start_validator(home: Path) -> subprocess.Popen:
    log = open(home / LOG_FILE, "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "node", "start", "--home", str(home)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()


def stop_validators(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop()


def run_localnet(base: Path, validators: int, base_port: int, reset: bool) -> int:
    homes = prepare_localnet(base, validators, base_port, reset)
    log_path = homes[0] / LOG_FILE
    offset = log_path.stat().st_size if log_path.exists() else 0
    procs: list[subprocess.Popen] = []
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        for home in homes:
            procs.append(start_validator(home))
        for i, home in enumerate(homes):
            print(format_validator_line(i, home), flush=True)
        return follow_blocks(log_path, offset, procs, homes)
    except Stop:
        print("stopping every validator ...", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_validators(procs)


def follow_blocks(log_path: Path, offset: int, procs: list[subprocess.Popen], homes: list[Path]) -> int:
    """Print a line per block committed by node 0 until a validator exits (returns 1) or a signal arrives."""
    previous_ms: float | None = None
    buffer = b""
    while True:
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is not None:
                print(f"validator {i} exited with code {code}; see {homes[i] / LOG_FILE}", flush=True)
                return 1
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
        offset += len(chunk)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("msg") == "committed block":
                now_ms = parse_commit_ms(record)
                print(format_block_line(record, previous_ms, now_ms), flush=True)
                previous_ms = now_ms
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localnet", description="run an N-validator localnet on loopback")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--home", default=os.environ.get("KABUTO_LOCALNET", ".localnet"))
    parser.add_argument("--reset", action="store_true", help="delete the localnet's homes and start a new chain")
    parser.add_argument("--base-port", type=int, default=26600)
    args = parser.parse_args(argv)
    try:
        return run_localnet(Path(args.home), args.validators, args.base_port, args.reset)
    except HomeError as exc:
        print(f"localnet: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
