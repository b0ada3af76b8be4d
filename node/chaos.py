"""`scripts/chaos`: a fault campaign on a multi-process localnet under load, then a checker.

`python -m node.chaos [--duration S] [--json] [--validators N] [--seed N] [--no-iptables] [--keep] ...`

1. Network: a fresh localnet (`node.home.make_localnet`, default 4 validators) in a temporary directory on free
   ports. Every P2P link goes through a loopback proxy run by this process (node/chaos_net.py): node i's peer
   entry for node j is `id_j@127.0.0.1:<proxy port i->j>`, forwarding to j's P2P port. As root with a working
   `iptables` (and without `--no-iptables`), partitions are DROP rules on the proxy ports in a dedicated chain
   `KABUTO-CHAOS-<pid>` (live connections stall, as on a real network); otherwise the proxy aborts the links'
   connections and refuses new ones. Delays are always the proxy's (it holds the bytes).
2. Faults (node/chaos_faults.py): a plan drawn from `--seed` over `--duration`, one fault at a time, each held a
   few seconds, healed, then a settle gap; the next one starts only once every node has passed the height the
   chain had at the heal (caught up), so at most one validator is impaired at any time, except the 2-2 split,
   which must halt commits. Kinds: kill -9 and restart; SIGSTOP and SIGCONT; isolation of one validator; a 2-2
   split; a delay on one validator's links; a clock skew (restart with `[debug] clock_skew_ms`, later without);
   a byzantine window (restart with `[debug] double_sign = true`, later without). The last two need those config
   keys; a kind whose key this node build refuses is left out and named in `faults.unavailable`. Their restarts
   are planned: the node is first drained (no new requests, the commit waits in flight answered), then stopped
   with SIGTERM; kill -9 and SIGSTOP hit the node with whatever is in flight.
3. Load (node/chaos_load.py): `--clients` wallets funded by the faucet submit orders with `broadcast_tx_commit`
   to random live validators; each acknowledged transaction (hash, height) is recorded. Fire-and-forget orders
   (`--async-rate` a second) keep blocks non-empty. Errors are counted; clients retry elsewhere.
4. End: the load stops, every fault is healed, the chain runs `--settle` seconds, the `evidence` RPC is asked
   (when the node serves it), then every node is stopped with SIGTERM and the checker (node/chaos_check.py)
   opens each node's LevelDB store offline: identical blocks and app hashes at every height two nodes hold,
   every acknowledged transaction at its height on every node that holds that height, the double-sign offences
   recorded in the committed state. Commit times come from the nodes' logs (`committed block`), first seen by
   this process: `max_stall_s` is the longest time without a commit outside a split's window (and so also
   bounds the time from any heal to the next commit); a height first seen inside a split's window (after
   `HALT_GRACE_S`) is a commit without more than 2/3 of the power, a safety failure (`commits_during`).

Output: progress lines on stderr; a summary on stdout (JSON with `--json`): `faults` (`count`, `by_kind`,
`list` with start/end seconds from the start of the load, `unavailable`, `skipped`), `acknowledged`, `lost` and
`lost_txs`, `forks` and `fork_heights`, `max_stall_s` and `stall_bound_s`, `heights` per node, `evidence`
(offences in the state), `evidence_rpc`, `duration_s`, `seed`, `errors` (`node_exits`: a node that exited on its
own, exit 3 = AppHashMismatch, a fork signal; `client`: load outcomes by kind; `messages`), `exit_code`, `reason`.

Exit code: 0 when nothing was lost, nothing forked, no node exited on its own, the stall stayed within
`--max-stall`, every fault was caught up after and a byzantine fault's offence was recorded; 1 otherwise with a
one-line reason on stderr; 2 for bad arguments. Every process started is stopped (SIGKILL as the last resort),
the iptables chain removed and the directory deleted on every way out (Ctrl-C too), unless `--keep`.
"""

import argparse
import asyncio
import atexit
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from node.chaos_check import (
    find_forks, find_lost, judge, parse_evidence_rpc, read_chain, read_evidence, summarize_evidence,
)
from node.chaos_faults import (
    HALTING, KINDS, RESTART_COST_S, PlannedFault, compute_max_stall, compute_resume_s, make_schedule,
)
from node.chaos_load import Load, LoadError
from node.chaos_net import Firewall, ProxyNet, iptables_usable
from node.config import ConfigError, config_from_dict, load_config, parse_config, render_config
from node.home import CONFIG_FILE, DATA_DIR, GENESIS_FILE, load_genesis_path, localnet_ports, make_localnet
from node.keys import NODE_KEY_FILE, VALIDATOR_KEY_FILE, load_key, node_id
from node.localnet import find_base_port
from node.storage import StorageError, open_chain_store

ROOT = Path(__file__).resolve().parents[1]
LOG_FILE = "node.log"
CHAIN_DIR = "chain"
POLL_S = 0.1
START_TIMEOUT_S = 90.0
CATCH_UP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
SLOW_STOP_S = 5.0
DRAIN_TIMEOUT_S = 3.0
HALT_GRACE_S = 1.0  # a block whose precommits were already out when a split began may still commit
DEBUG_KEYS = {"skew": ("clock_skew_ms", 5000), "byzantine": ("double_sign", True)}
CHAIN_ID = "kabuto-localnet"


def available_kinds() -> tuple[tuple[str, ...], list[str]]:
    """(fault kinds this node build supports, the ones left out): skew and byzantine need their debug keys."""
    unavailable = []
    for kind, (key, value) in DEBUG_KEYS.items():
        try:
            config = config_from_dict({"debug": {key: value}})
            if getattr(getattr(config, "debug", None), key, None) != value:
                unavailable.append(kind)
        except (ConfigError, TypeError):
            unavailable.append(kind)
    return tuple(kind for kind in KINDS if kind not in unavailable), unavailable


def render_with_debug(text: str, settings: dict[str, Any]) -> str:
    """`text` (a config.toml) with `[debug]` keys set, rendered and read back through the node's validator."""
    doc = tomllib.loads(text)
    doc.setdefault("debug", {}).update(settings)
    rendered = render_config(config_from_dict(doc))
    debug = parse_config(rendered).debug
    if any(getattr(debug, key) != value for key, value in settings.items()):
        raise ConfigError("debug", f"render_config does not write {settings}")
    return rendered


class NodeProcess:
    """One validator process: start, kill -9, SIGSTOP/SIGCONT, SIGTERM; exits it did not cause are noticed."""

    def __init__(self, index: int, home: Path) -> None:
        self.index = index
        self.home = home
        self.proc: subprocess.Popen | None = None
        self.expect_running = False
        self.stopped = False  # SIGSTOP
        self.starts = 0

    def start(self) -> None:
        with open(self.home / LOG_FILE, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node", "start", "--home", str(self.home)], cwd=ROOT, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.expect_running = True
        self.stopped = False
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.proc is not None and self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return None if self.proc is None else self.proc.poll()

    async def kill9(self) -> None:
        self.expect_running = False
        self.signal(signal.SIGKILL)
        await self.wait(10)

    async def terminate(self) -> int | None:
        """SIGTERM (after SIGCONT if stopped) and wait; SIGKILL after STOP_TIMEOUT_S (returns -9 then)."""
        self.expect_running = False
        if self.stopped:
            self.signal(signal.SIGCONT)
            self.stopped = False
        self.signal(signal.SIGTERM)
        code = await self.wait(STOP_TIMEOUT_S)
        if code is None and self.running:
            self.proc.kill()
            code = await self.wait(10)
        return code

    def sigstop(self) -> None:
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self) -> None:
        self.signal(signal.SIGCONT)
        self.stopped = False

    def force_kill(self) -> None:
        """Last resort on the way out (synchronous)."""
        self.expect_running = False
        if self.running:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, size: int = 1500) -> str:
        try:
            return (self.home / LOG_FILE).read_text(errors="replace")[-size:]
        except OSError:
            return ""


class CommitLog:
    """Follows every node's JSON log: each node's height, and when this process first saw each height."""

    def __init__(self, paths: list[Path], clock=time.monotonic) -> None:
        self.paths = paths
        self.clock = clock
        self.offsets = [0] * len(paths)
        self.partial = [b""] * len(paths)
        self.heights = [0] * len(paths)
        self.started = [0] * len(paths)  # "node started" lines: the RPC and P2P of that start are up
        self.first_seen: dict[int, float] = {}

    def poll(self) -> None:
        now = self.clock()
        for i, path in enumerate(self.paths):
            try:
                with open(path, "rb") as handle:
                    handle.seek(self.offsets[i])
                    chunk = handle.read()
            except OSError:
                continue
            self.offsets[i] += len(chunk)
            *lines, self.partial[i] = (self.partial[i] + chunk).split(b"\n")
            for line in lines:
                if b'"node started"' in line:
                    self.started[i] += 1
                if b'"committed block"' not in line:
                    continue
                try:
                    height = int(json.loads(line)["block_height"])
                except (ValueError, KeyError, TypeError):
                    continue
                self.heights[i] = max(self.heights[i], height)
                self.first_seen.setdefault(height, now)

    def commit_times(self) -> list[float]:
        return sorted(self.first_seen.values())

    @property
    def top(self) -> int:
        return max(self.heights, default=0)


def progress(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


class Campaign:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.seed = args.seed
        self.kinds, self.unavailable = available_kinds()
        if args.kinds:
            wanted = tuple(k for k in args.kinds.split(",") if k)
            self.unavailable += [k for k in wanted if k not in self.kinds and k not in self.unavailable]
            self.kinds = tuple(k for k in wanted if k in self.kinds)
        self.plan = make_schedule(args.seed, args.duration, args.validators, self.kinds)
        self.firewall: Firewall | None = None
        self.net: ProxyNet | None = None
        self.nodes: list[NodeProcess] = []
        self.homes: list[Path] = []
        self.rpc_ports: list[int] = []
        self.commits: CommitLog | None = None
        self.t0 = 0.0
        self.records: list[dict] = []
        self.skipped: list[str] = []
        self.node_exits: list[dict] = []
        self.messages: list[str] = []
        self.byzantine: set[str] = set()
        self.original_configs: dict[int, str] = {}
        self.draining: set[int] = set()
        self.load: Load | None = None

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    # --- set-up ---------------------------------------------------------------------------------------------

    async def setup(self) -> None:
        n = self.args.validators
        base_port = find_base_port(2 * n)
        self.homes = make_localnet(self.workdir / "net", n, base_port, CHAIN_ID)
        self.rpc_ports = [localnet_ports(base_port, i)[1] for i in range(n)]
        if not self.args.no_iptables and iptables_usable():
            self.firewall = Firewall()
            atexit.register(self.firewall.remove)
            self.firewall.install()
        self.net = ProxyNet([localnet_ports(base_port, i)[0] for i in range(n)], self.firewall)
        await self.net.start()
        ids = [node_id(load_key(home / NODE_KEY_FILE)) for home in self.homes]
        for i, home in enumerate(self.homes):
            config = load_config(home / CONFIG_FILE)
            peers = tuple(f"{ids[j]}@127.0.0.1:{self.net.proxy_port(i, j)}" for j in range(n) if j != i)
            text = render_config(replace(config, p2p=replace(config.p2p, peers=peers)))
            (home / CONFIG_FILE).write_text(text)
            self.original_configs[i] = text
        self.nodes = [NodeProcess(i, home) for i, home in enumerate(self.homes)]
        self.commits = CommitLog([home / LOG_FILE for home in self.homes])
        for node in self.nodes:
            node.start()
        progress(f"{n} validators in {self.workdir} (P2P through proxies, partitions by {self.net.mode}); "
                 f"seed {self.seed}; {len(self.plan)} faults planned over {self.args.duration:.0f} s")

    async def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while min(self.commits.heights) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the localnet did not start: heights {self.commits.heights}")
            await asyncio.sleep(POLL_S)

    # --- background tasks -----------------------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        """Follow the logs, and notice a node that exited while it should run (restarted to go on)."""
        while not stop.is_set():
            self.commits.poll()
            for node in self.nodes:
                if node.expect_running and not node.running:
                    code = node.proc.poll()
                    self.node_exits.append({"node": node.index, "code": code, "at_s": self.now(),
                                            "log_tail": node.log_tail()})
                    progress(f"node {node.index} exited on its own with code {code}; restarting it")
                    node.start()
            await asyncio.sleep(POLL_S)

    def live(self) -> list[int]:
        """Nodes to send requests to: running, not stopped, not draining, and serving since their last start."""
        return [node.index for node in self.nodes
                if node.expect_running and node.running and not node.stopped and node.index not in self.draining
                and self.commits.started[node.index] >= node.starts]

    # --- faults ---------------------------------------------------------------------------------------------

    async def restart_with(self, node: NodeProcess, settings: dict[str, Any] | None) -> None:
        """SIGTERM, rewrite `[debug]` (None: the original config), start; the stop is noted in the fault."""
        self.draining.add(node.index)
        started = time.monotonic()
        if self.load is not None and not await self.load.drain(node.index, DRAIN_TIMEOUT_S):
            self.messages.append(f"node {node.index} still had commit waits in flight after {DRAIN_TIMEOUT_S} s")
        code = await node.terminate()
        stop_s = round(time.monotonic() - started, 2)
        if self.records:
            self.records[-1].setdefault("restarts", []).append(
                {"node": node.index, "stop_s": stop_s, "exit_code": code})
        if stop_s > SLOW_STOP_S:
            self.messages.append(f"node {node.index} took {stop_s:.1f} s to stop on SIGTERM (exit code {code})")
        config = self.homes[node.index] / CONFIG_FILE
        original = self.original_configs[node.index]
        config.write_text(original if settings is None else render_with_debug(original, settings))
        node.start()
        self.draining.discard(node.index)

    async def begin(self, fault: PlannedFault) -> None:
        target = self.nodes[fault.targets[0]]
        if fault.kind == "kill":
            await target.kill9()
        elif fault.kind == "stop":
            target.sigstop()
        elif fault.kind == "isolate":
            self.net.isolate(target.index)
        elif fault.kind == "split":
            self.net.split(fault.targets, fault.others)
        elif fault.kind == "delay":
            self.net.delay_node(target.index, fault.param)
        elif fault.kind == "skew":
            await self.restart_with(target, {"clock_skew_ms": fault.param})
        elif fault.kind == "byzantine":
            self.byzantine.add(load_key(self.homes[target.index] / VALIDATOR_KEY_FILE).address.hex())
            await self.restart_with(target, {"double_sign": True})

    async def heal(self, fault: PlannedFault) -> None:
        target = self.nodes[fault.targets[0]]
        if fault.kind == "kill":
            target.start()
        elif fault.kind == "stop":
            target.sigcont()
        elif fault.kind in ("isolate", "split", "delay"):
            self.net.heal_all()
        else:
            await self.restart_with(target, None)

    async def wait_caught_up(self, target: int, timeout: float) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if min(self.commits.heights) >= target:
                return round(time.monotonic() - started, 2)
            await asyncio.sleep(POLL_S)
        return None

    async def run_fault(self, fault: PlannedFault) -> None:
        record = {"kind": fault.kind, "targets": list(fault.targets), "others": list(fault.others),
                  "param": fault.param, "planned_s": fault.at_s, "start_s": self.now()}
        progress(f"{record['start_s']:7.2f} s  {describe(fault)} for {fault.hold_s:.1f} s")
        self.records.append(record)
        await self.begin(fault)
        record["impaired_s"] = self.now()
        await asyncio.sleep(fault.hold_s)
        await self.heal(fault)
        record["end_s"] = self.now()
        height_at_heal = self.commits.top
        record["caught_up_s"] = await self.wait_caught_up(height_at_heal + 1, CATCH_UP_TIMEOUT_S)
        if record["caught_up_s"] is None:
            progress(f"the network did not catch up within {CATCH_UP_TIMEOUT_S:.0f} s after the "
                     f"{fault.kind} fault (heights {self.commits.heights})")
        else:
            progress(f"{self.now():7.2f} s  healed at {record['end_s']:.2f} s; every node past height "
                     f"{height_at_heal} after {record['caught_up_s']:.2f} s")

    async def run_plan(self) -> None:
        end = self.args.duration - 2.0
        for fault in self.plan:
            wait = fault.at_s - self.now()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.now() + fault.hold_s + RESTART_COST_S.get(fault.kind, 0.0) > end:
                self.skipped.append(fault.kind)
                continue
            await self.run_fault(fault)
            await asyncio.sleep(fault.settle_s)
        remaining = self.args.duration - self.now()
        if remaining > 0:
            await asyncio.sleep(remaining)

    # --- the run --------------------------------------------------------------------------------------------

    async def run(self) -> dict:
        stop_watch = asyncio.Event()
        try:
            await self.setup()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.watch(stop_watch))
                try:
                    await self.wait_started()
                    return await self.run_with_load()
                finally:
                    stop_watch.set()
        finally:
            if self.net is not None:
                await self.net.close()

    async def run_with_load(self) -> dict:
        urls = [f"http://127.0.0.1:{port}" for port in self.rpc_ports]
        async with Load(urls, self.live, self.seed, CHAIN_ID, self.args.clients, self.args.async_rate) as load:
            self.load = load
            await load.fund()
            self.t0 = time.monotonic()
            progress(f"{len(load.wallets) + len(load.async_wallets)} wallets funded; faults start")
            stop_load = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                load_task = tg.create_task(load.run(stop_load))
                try:
                    await self.run_plan()
                finally:
                    stop_load.set()
                    self.net.heal_all()
                    for node in self.nodes:
                        if node.stopped:
                            node.sigcont()
                await load_task
            await asyncio.sleep(self.args.settle)
            await self.wait_caught_up(self.commits.top, CATCH_UP_TIMEOUT_S)
            self.commits.poll()
            observed_s = self.now()
            evidence_rpc = await self.ask_evidence(urls)
        stop_codes = await self.stop_all()
        return self.summarize(load, observed_s, evidence_rpc, stop_codes)

    async def ask_evidence(self, urls: list[str]) -> dict | None:
        """The `evidence` RPC of every node that serves it (None: no node does): the total count, the first page
        of offences, and per byzantine validator its count (asked with the `validator` filter: pages are short)."""
        pages: list[list[dict]] = []
        counts: list[int] = []
        by_validator: dict[str, int] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for url in urls:
                result = await self.call_evidence(session, url, {})
                if result is None:
                    continue
                pages.append(parse_evidence_rpc(result))
                counts.append(int(result.get("count", len(pages[-1]))) if isinstance(result, dict) else len(pages[-1]))
                for address in sorted(self.byzantine):
                    answer = await self.call_evidence(session, url, {"validator": address})
                    if isinstance(answer, dict) and "count" in answer:
                        by_validator[address] = max(by_validator.get(address, 0), int(answer["count"]))
        if not counts:
            return None
        summary = summarize_evidence(max(pages, key=len), max(counts))
        summary["by_validator"] = dict(sorted(by_validator.items()))
        return summary

    @staticmethod
    async def call_evidence(session: aiohttp.ClientSession, url: str, params: dict) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": "evidence", "params": params}
        try:
            async with session.post(url + "/", json=body) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return None
        return answer.get("result") if isinstance(answer, dict) else None

    async def stop_all(self) -> dict[int, int | None]:
        """SIGTERM to every node at once (so they stop at about the same height), then wait for each."""
        started = time.monotonic()
        codes = dict(zip(range(len(self.nodes)), await asyncio.gather(*(n.terminate() for n in self.nodes))))
        if time.monotonic() - started > SLOW_STOP_S:
            self.messages.append(f"the nodes took {time.monotonic() - started:.1f} s to stop on SIGTERM at the end")
        self.commits.poll()
        return codes

    # --- the check ------------------------------------------------------------------------------------------

    def read_stores(self, acks: list) -> dict[str, Any]:
        params = load_genesis_path(self.homes[0] / GENESIS_FILE).params
        stores = {}
        try:
            for i, home in enumerate(self.homes):
                stores[i] = open_chain_store(home / DATA_DIR / CHAIN_DIR, create=False)
            chains = [read_chain(i, store) for i, store in stores.items()]
            lost, checked = find_lost(stores, acks)
            evidence: dict[tuple, dict] = {}
            for store in stores.values():
                for offence in read_evidence(store, params):
                    evidence[(offence["validator"], offence["height"], offence["round"], offence["vote_type"])] = \
                        offence
        finally:
            for store in stores.values():
                store.close()
        return {"chains": chains, "forks": find_forks(chains), "lost": lost, "checked": checked,
                "evidence": [evidence[key] for key in sorted(evidence)]}

    def summarize(self, load: Load, observed_s: float, evidence_rpc: dict | None,
                  stop_codes: dict[int, int | None]) -> dict:
        try:
            check = self.read_stores(load.acks)
        except StorageError as exc:
            self.messages.append(f"could not read the stores: {exc}")
            check = {"chains": [], "forks": [], "lost": [], "checked": 0, "evidence": []}
        commit_times = [t - self.t0 for t in self.commits.commit_times()]
        halts = [(r["start_s"], r["end_s"]) for r in self.records if r["kind"] in HALTING and "end_s" in r]
        for record in self.records:
            if "end_s" in record:
                record["resumed_s"] = compute_resume_s(commit_times, record["end_s"])
            if record["kind"] in HALTING and "end_s" in record:
                record["commits_during"] = sum(
                    1 for t in commit_times if record["impaired_s"] + HALT_GRACE_S < t < record["end_s"])
        for index, code in stop_codes.items():
            if code not in (0, None):
                self.messages.append(f"node {index} answered SIGTERM with exit code {code}")
                if code != -signal.SIGKILL:
                    self.node_exits.append({"node": index, "code": code, "at_s": observed_s, "on": "stop"})
        gaps = compute_max_stall(commit_times, [], 0.0, observed_s)
        summary = {
            "seed": self.seed, "validators": self.args.validators, "network": self.net.mode,
            "firewall_chain": self.firewall.chain if self.firewall is not None else None,
            "duration_s": observed_s,
            "faults": {"count": len(self.records), "by_kind": dict(Counter(r["kind"] for r in self.records)),
                       "available": list(self.kinds), "unavailable": self.unavailable,
                       "skipped": self.skipped, "list": self.records},
            "acknowledged": len(load.acks), "ack_checks": check["checked"],
            "lost": len(check["lost"]), "lost_txs": check["lost"][:50],
            "forks": len(check["forks"]), "fork_heights": check["forks"][:20],
            "max_stall_s": compute_max_stall(commit_times, halts, 0.0, observed_s),
            "max_gap_s": gaps, "stall_bound_s": self.args.max_stall,
            "heights": {str(c.node): c.height for c in check["chains"]},
            "evidence": summarize_evidence(check["evidence"]), "evidence_rpc": evidence_rpc,
            "byzantine_validators": sorted(self.byzantine),
            "load": load.summary(),
            "errors": {"node_exits": self.node_exits, "client": load.summary()["outcomes"],
                       "messages": self.messages},
        }
        summary["exit_code"], summary["reason"] = judge(summary)
        if self.args.keep:
            summary["workdir"] = str(self.workdir)
        return summary

    # --- clean-up -------------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Every way out: kill what still runs, remove the iptables chain, delete the directory (unless kept)."""
        for node in self.nodes:
            node.force_kill()
        if self.firewall is not None:
            self.firewall.remove()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def describe(fault: PlannedFault) -> str:
    if fault.kind == "split":
        return f"split {list(fault.targets)} | {list(fault.others)}"
    detail = {"delay": f" +{fault.param} ms", "skew": f" clock {fault.param:+d} ms"}.get(fault.kind, "")
    return f"{fault.kind} node {fault.targets[0]}{detail}"


async def _run_cancellable(campaign: Campaign) -> dict:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await campaign.run()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def run_campaign(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="kabuto-chaos-"))
    campaign = Campaign(args, workdir)
    started = time.monotonic()
    try:
        summary = asyncio.run(_run_cancellable(campaign))
    finally:
        campaign.cleanup()
    summary["wall_s"] = round(time.monotonic() - started, 1)
    return summary


def format_text(summary: dict) -> str:
    faults = summary["faults"]
    lines = [
        f"faults: {faults['count']} {json.dumps(faults['by_kind'], sort_keys=True)}"
        + (f" (unavailable: {', '.join(faults['unavailable'])})" if faults["unavailable"] else ""),
        f"acknowledged: {summary['acknowledged']}  lost: {summary['lost']}  forks: {summary['forks']}",
        f"max stall: {summary['max_stall_s']:.2f} s (bound {summary['stall_bound_s']:.1f} s; longest gap "
        f"{summary['max_gap_s']:.2f} s)",
        f"heights: {summary['heights']}  evidence: {summary['evidence']['count']} offence(s) "
        f"{json.dumps(summary['evidence']['by_validator'])}",
        f"load: {json.dumps(summary['load'], sort_keys=True)}",
        f"result: {'ok' if summary['exit_code'] == 0 else 'FAILED: ' + str(summary['reason'])}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chaos", description="a fault campaign on a localnet under load")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of faults and load (default 120)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None, help="the fault plan's seed (default: random)")
    parser.add_argument("--no-iptables", action="store_true", help="cut links in the proxy even as root")
    parser.add_argument("--keep", action="store_true", help="keep the localnet directory (printed)")
    parser.add_argument("--max-stall", type=float, default=15.0, help="bound on max_stall_s (default 15)")
    parser.add_argument("--clients", type=int, default=8, help="broadcast_tx_commit clients (default 8)")
    parser.add_argument("--async-rate", type=float, default=40.0, help="fire-and-forget orders per second")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds of calm before the check")
    parser.add_argument("--kinds", default="", help=f"comma-separated subset of {','.join(KINDS)}")
    args = parser.parse_args(argv)
    if args.validators < 4:
        parser.error("--validators must be at least 4 (one impaired validator, more than 2/3 live)")
    if args.duration < 10:
        parser.error("--duration must be at least 10 seconds")
    unknown = [k for k in args.kinds.split(",") if k and k not in KINDS]
    if unknown:
        parser.error(f"unknown fault kind {unknown[0]!r} (known: {', '.join(KINDS)})")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run_campaign(args)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("chaos: interrupted; every process stopped and the network restored", file=sys.stderr)
        return 130
    except (LoadError, RuntimeError, OSError, ValueError) as exc:
        print(f"chaos: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2) if args.json else format_text(summary), flush=True)
    if summary["exit_code"] != 0:
        print(f"chaos: FAILED: {summary['reason']}", file=sys.stderr)
    return summary["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
