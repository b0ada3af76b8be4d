"""The chaos campaign's network: a user-space loopback proxy per directed P2P link, and iptables partitions.

Contract:

- `LinkProxy(src, dst, upstream_port)` listens on 127.0.0.1 (an ephemeral port, `port` once `start()` returned)
  and forwards every accepted connection to `127.0.0.1:upstream_port`, bytes both ways, unchanged. Node `src`
  dials node `dst` through it: the campaign writes `nodeid@127.0.0.1:<proxy port>` into `src`'s `[p2p] peers`.
  A directed link is the dial path src -> dst; its connections carry bytes both ways (a P2P session is one TCP
  connection, whoever dialed), so cutting `dst`'s path to `src` too is what cuts both nodes apart.
- `cut()` aborts every open connection of the link (both sockets) and, until `heal()`, aborts each new one as
  soon as it is accepted. `set_delay(ms)` holds every chunk read afterwards for `ms` before writing it on (order
  kept; 0 forwards at once); chunks already held keep their release time. `close()` stops listening and aborts
  every connection.
- `ProxyNet(ports)` holds one `LinkProxy` per ordered pair of distinct nodes (`ports[i]` is node i's P2P listen
  port) with `cut_link(i, j, both)`, `heal_link`, `isolate(i)`, `split(group_a, group_b)`, `delay_node(i, ms)`
  and `heal_all()`; with a `Firewall`, cuts are iptables DROP rules on the proxy ports instead of aborts.
- `Firewall(chain)`: a dedicated iptables chain (`KABUTO-CHAOS-<pid>`), jumped to from `INPUT` for `-i lo`,
  holding one pair of DROP rules per blocked proxy port (`--dport` for packets to the proxy, `--sport` for
  packets from it to the dialing node). The kernel then drops the packets of live connections too: TCP
  retransmits until the rules go, and the session resumes (nothing is closed). `remove()` deletes the jump,
  flushes and deletes the chain; it is idempotent and runs in the campaign's `finally`. `iptables_usable()`
  is true for root with a working `iptables` binary (probed by creating and deleting a chain).

Known limits: one asyncio loop owns the proxies; a held chunk costs memory until released (bounded by what a
link carries during one delay, small for consensus traffic); delay applies per chunk as read, not per packet.
"""

import asyncio
import itertools
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable

log = logging.getLogger("node.chaos")

LOOPBACK = "127.0.0.1"
READ_BYTES = 65536
HELD_CHUNKS_MAX = 4096


class LinkProxy:
    """One directed link src -> dst: a listener on an ephemeral loopback port forwarding to dst's P2P port."""

    def __init__(self, src: int, dst: int, upstream_port: int, upstream_host: str = LOOPBACK) -> None:
        self.src, self.dst = src, dst
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.delay_ms = 0
        self.is_cut = False
        self.accepted = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._connections: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self.is_cut = True
        for down, up in list(self._connections):
            _abort(down)
            _abort(up)

    def heal(self) -> None:
        self.is_cut = False

    def set_delay(self, delay_ms: int) -> None:
        self.delay_ms = max(0, int(delay_ms))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()  # every handler ends once its sockets are aborted
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2.0)
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            pass  # the loop is closing: end quietly (asyncio's stream callback reports a cancelled handler)
        finally:
            self._handlers.discard(task)
            _abort(writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            self.refused += 1
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)
            return
        if self.is_cut:  # cut while dialing upstream
            self.refused += 1
            _abort(writer)
            _abort(up_writer)
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._connections.add(pair)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pump(reader, up_writer, writer))
                tg.create_task(self._pump(up_reader, writer, up_writer))
        except* (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(pair)
            _abort(writer)
            _abort(up_writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    other: asyncio.StreamWriter) -> None:
        """Copy reader -> writer, each chunk held until its release time; at EOF or error abort both sides."""
        loop = asyncio.get_running_loop()
        held: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(HELD_CHUNKS_MAX)

        async def release() -> None:
            while (item := await held.get()) is not None:
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(release())
        try:
            while not sender.done():
                data = await reader.read(READ_BYTES)
                if not data:
                    break
                await held.put((loop.time() + self.delay_ms / 1000, data))
            if not sender.done():
                await held.put(None)
            await sender
        finally:
            sender.cancel()
            _abort(writer)
            _abort(other)


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if transport is not None and not transport.is_closing():
        transport.abort()


class Firewall:
    """iptables DROP rules on loopback proxy ports, in one dedicated chain removed by `remove()`."""

    def __init__(self, chain: str | None = None, runner=subprocess.run) -> None:
        self.chain = chain or f"KABUTO-CHAOS-{os.getpid()}"
        self._run = runner
        self.blocked: set[int] = set()
        self.installed = False

    def _iptables(self, *args: str, check: bool = True) -> bool:
        done = self._run(["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=15)
        if check and done.returncode != 0:
            raise OSError(f"iptables {' '.join(args)}: {done.stderr.strip() or done.returncode}")
        return done.returncode == 0

    def install(self) -> None:
        self._iptables("-N", self.chain)
        self.installed = True
        self._iptables("-I", "INPUT", "-i", "lo", "-j", self.chain)

    def _rules(self, port: int) -> list[tuple[str, ...]]:
        return [("-p", "tcp", "--dport", str(port), "-j", "DROP"), ("-p", "tcp", "--sport", str(port), "-j", "DROP")]

    def block(self, ports: Iterable[int]) -> None:
        for port in sorted(set(ports) - self.blocked):
            for rule in self._rules(port):
                self._iptables("-A", self.chain, *rule)
            self.blocked.add(port)

    def unblock(self, ports: Iterable[int]) -> None:
        for port in sorted(set(ports) & self.blocked):
            for rule in self._rules(port):
                self._iptables("-D", self.chain, *rule, check=False)
            self.blocked.discard(port)

    def remove(self) -> None:
        """Delete the jump and the chain (idempotent; errors ignored: this runs on every way out)."""
        if not self.installed:
            return
        while self._iptables("-D", "INPUT", "-i", "lo", "-j", self.chain, check=False):
            pass
        self._iptables("-F", self.chain, check=False)
        self._iptables("-X", self.chain, check=False)
        self.blocked.clear()
        self.installed = False


def iptables_usable() -> bool:
    """Root, an `iptables` binary, and a probe chain that can be created and deleted."""
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return False
    probe = Firewall(f"KABUTO-PROBE-{os.getpid()}")
    try:
        probe.install()
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        probe.remove()


class ProxyNet:
    """The proxies of every directed link between `len(ports)` nodes, and the partitions made on them."""

    def __init__(self, ports: list[int], firewall: Firewall | None = None) -> None:
        self.size = len(ports)
        self.links = {(i, j): LinkProxy(i, j, ports[j])
                      for i, j in itertools.permutations(range(len(ports)), 2)}
        self.firewall = firewall

    @property
    def mode(self) -> str:
        return "iptables" if self.firewall is not None else "proxy"

    async def start(self) -> None:
        for link in self.links.values():
            await link.start()

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()

    def proxy_port(self, src: int, dst: int) -> int:
        return self.links[(src, dst)].port

    def _selected(self, src: int, dst: int, both: bool) -> list[LinkProxy]:
        return [self.links[(src, dst)]] + ([self.links[(dst, src)]] if both else [])

    def cut_link(self, src: int, dst: int, both: bool = True) -> None:
        links = self._selected(src, dst, both)
        if self.firewall is not None:
            self.firewall.block(link.port for link in links)
        else:
            for link in links:
                link.cut()

    def heal_link(self, src: int, dst: int, both: bool = True) -> None:
        links = self._selected(src, dst, both)
        if self.firewall is not None:
            self.firewall.unblock(link.port for link in links)
        for link in links:
            link.heal()

    def isolate(self, node: int) -> None:
        for other in range(self.size):
            if other != node:
                self.cut_link(node, other)

    def split(self, group_a: Iterable[int], group_b: Iterable[int]) -> None:
        for a in group_a:
            for b in group_b:
                self.cut_link(a, b)

    def delay_node(self, node: int, delay_ms: int) -> None:
        """Delay every link to and from `node` (both directions of each connection)."""
        for (src, dst), link in self.links.items():
            if node in (src, dst):
                link.set_delay(delay_ms)

    def heal_all(self) -> None:
        if self.firewall is not None:
            self.firewall.unblock(list(self.firewall.blocked))
        for link in self.links.values():
            link.heal()
            link.set_delay(0)
