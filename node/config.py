"""The node's runtime configuration: `config.toml` in the home directory.

Contract:

- `load_config(path)` reads TOML (stdlib `tomllib`) into a `NodeConfig` of frozen, slotted dataclasses, one per
  section. Every section and every key is optional and falls back to the default below; anything present is
  checked. A refusal raises `ConfigError` whose `field` is `section.key` (or `section.key[i]` for a list item,
  or just the section) and whose `reason` says what is wrong: an unknown section or key (a misspelt key never
  falls back to its default silently), a wrong type (a bool is never an int), a value out of range, a bad
  `host:port` address or a bad `nodeid@host:port` peer. `str(error)` is one line: `path: field: reason`.
- `render_config(config)` writes TOML by hand (flat tables of str, int, bool, lists of str and the one inline
  table `oracle.prices`, every key written) and `load_config` of its output gives back an equal `NodeConfig`.
- This is node runtime config only: nothing here is consensus-relevant and the STF never reads it.
  Chain parameters live in the genesis document.

Sections, keys and defaults (ranges are checked by `load_config`):

    [node]       moniker = "kabuto-node"              1..64 printable ASCII characters
                 chain_id = "kabuto-localnet"         must equal the genesis chain id (checked by the CLI)
    [p2p]        listen = "0.0.0.0:26656"              host:port, port 1..65535
                 peers = []                           "nodeid@host:port", nodeid = 40 hex digits, no repeats
                 max_frame_bytes = 1048576            256 .. 64 MiB
                 ban_seconds = 600                    0 .. 1 week
    [rpc]        listen = "127.0.0.1:26657"            host:port, not the p2p listen address
                 max_body_bytes = 1048576             1 KiB .. 64 MiB
                 max_batch = 100                      1 .. 10000
                 ws_max_connections = 1024            1 .. 1000000
                 ws_max_per_ip = 16                   1 .. ws_max_connections
                 rate_per_s = 50                      1 .. 1000000 calls per second per client address
                 rate_burst = 100                     1 .. 1000000
    [consensus]  timeout_propose_ms = 3000            1 .. 600000; each step's timeout is
                 timeout_prevote_ms = 1000            base + timeout_delta_ms * round
                 timeout_precommit_ms = 1000
                 timeout_delta_ms = 500               0 .. 600000
                 create_empty_blocks_interval_ms = 1000  0 .. 3600000: wait before an empty block's height
                                                      (0 = at once)
                 min_block_interval_ms = 100          0 .. 3600000: with pending txs, the next height starts
                                                      this long after the previous one started (0 = at once)
                 max_future_block_time_ms = 2000      0 .. 86400000: a proposal whose block time is further
                                                      ahead of this node's clock is not valid yet (node/app.py)
    [mempool]    max_txs = 50000                      as node.mempool.MempoolLimits; per-sender caps
                 max_bytes = 67108864                 must not exceed the totals
                 max_txs_per_sender = 1000
                 max_bytes_per_sender = 4194304
                 verify_workers = 1                   0 .. 64 processes checking signatures (0 = on the loop)
    [storage]    backend = "leveldb"                  "leveldb" | "memory" (memory: tests, nothing survives)
                 snapshot_interval = 1000             0 (never) .. 10^9 heights
                 snapshots_kept = 2                   1 .. 1000
                 sync = true                          fsync every block (ChainStore's `sync`)
                 state_sync = true                    an empty store starts from a peer's snapshot (node/statesync.py)
    [telemetry]  metrics = true
                 tracing = "none"                     "none" | "console" | "otlp"
                 log_format = "json"                  "json" | "text"
                 log_level = "info"                   "debug" | "info" | "warning" | "error"
    [oracle]     source = "none"                      "none" | "static" (node/oracle.py: this validator's price feed)
                 interval_ms = 1000                   100 .. 3600000 between two submissions
                 prices = {}                          static source: { "BTC-PERP" = "10000000", ... }, a market
                                                      symbol to a positive integer price in its quote atoms per
                                                      lot (an integer or a string of decimal digits); checked
                                                      against genesis by `node.home.load_home` (known symbol, on
                                                      the tick grid, interval below the market's oracle max age)
    [debug]      double_sign = false                  TEST ONLY: this validator follows every prevote it signs
                                                      with a conflicting one (node/driver.py), to be caught
                 clock_skew_ms = 0                    TEST ONLY: -86400000 .. 86400000 ms added to every reading
                                                      of this node's wall clock (node/driver.py `make_clock`)

Known limits: addresses are checked for form only (a host is not resolved, a port not probed); one
`timeout_delta_ms` applies to all three steps (the engine's `TimeoutConfig` allows one per step).
"""

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from genesis.document import CHAIN_ID_PATTERN
from node.mempool import MempoolLimits
from stf.constants import MAX_CHAIN_ID_LEN

NODE_ID_PATTERN = re.compile(r"[0-9a-fA-F]{40}")
HOST_PATTERN = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")
MONIKER_PATTERN = re.compile(r"[\x20-\x7e]{1,64}")
MIB = 1 << 20
U64_MAX = (1 << 64) - 1
MAX_CLOCK_MS = 86_400_000  # one day: the bound of clock_skew_ms and max_future_block_time_ms
SYMBOL_PATTERN = re.compile(r"[\x20-\x7e]{1,32}")  # a genesis market symbol: 1 to 32 ASCII characters


class ConfigError(ValueError):
    """A config file was refused: `field` names `section.key` (None for the whole file), `reason` says why."""

    def __init__(self, field: str | None, reason: str, path: str | None = None) -> None:
        super().__init__(field, reason, path)
        self.field, self.reason, self.path = field, reason, path

    def __str__(self) -> str:
        return ": ".join(part for part in (self.path, self.field, self.reason) if part)


@dataclass(frozen=True, slots=True)
class NodeSection:
    moniker: str = "kabuto-node"
    chain_id: str = "kabuto-localnet"


@dataclass(frozen=True, slots=True)
class P2PSection:
    listen: str = "0.0.0.0:26656"
    peers: tuple[str, ...] = ()
    max_frame_bytes: int = MIB
    ban_seconds: int = 600


@dataclass(frozen=True, slots=True)
class RpcSection:
    listen: str = "127.0.0.1:26657"
    max_body_bytes: int = MIB
    max_batch: int = 100
    ws_max_connections: int = 1024
    ws_max_per_ip: int = 16
    rate_per_s: int = 50
    rate_burst: int = 100


@dataclass(frozen=True, slots=True)
class ConsensusSection:
    timeout_propose_ms: int = 3000
    timeout_prevote_ms: int = 1000
    timeout_precommit_ms: int = 1000
    timeout_delta_ms: int = 500
    create_empty_blocks_interval_ms: int = 1000
    min_block_interval_ms: int = 100
    max_future_block_time_ms: int = 2000


@dataclass(frozen=True, slots=True)
class MempoolSection:
    max_txs: int = 50_000                  # the defaults of node.mempool.MempoolLimits (a test keeps them equal)
    max_bytes: int = 64 * MIB
    max_txs_per_sender: int = 1_000
    max_bytes_per_sender: int = 4 * MIB
    verify_workers: int = 1                # processes checking signatures (node/submit.py); 0 = on the event loop

    def to_limits(self) -> MempoolLimits:
        return MempoolLimits(self.max_txs, self.max_bytes, self.max_txs_per_sender, self.max_bytes_per_sender)


@dataclass(frozen=True, slots=True)
class StorageSection:
    backend: str = "leveldb"
    snapshot_interval: int = 1000
    snapshots_kept: int = 2
    sync: bool = True
    state_sync: bool = True


@dataclass(frozen=True, slots=True)
class TelemetrySection:
    metrics: bool = True
    tracing: str = "none"
    log_format: str = "json"
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class OracleSection:
    source: str = "none"
    interval_ms: int = 1000
    prices: tuple[tuple[str, int], ...] = ()   # (market symbol, price in quote atoms per lot), in file order


@dataclass(frozen=True, slots=True)
class DebugSection:
    """Fault injection for tests (docs/OPERATIONS.md): never set on a real network."""
    double_sign: bool = False
    clock_skew_ms: int = 0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node: NodeSection = field(default_factory=NodeSection)
    p2p: P2PSection = field(default_factory=P2PSection)
    rpc: RpcSection = field(default_factory=RpcSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    storage: StorageSection = field(default_factory=StorageSection)
    telemetry: TelemetrySection = field(default_factory=TelemetrySection)
    oracle: OracleSection = field(default_factory=OracleSection)
    debug: DebugSection = field(default_factory=DebugSection)


# --- value rules: each takes (value, field name) and returns the value to keep, or raises ConfigError ---

Rule = Callable[[Any, str], Any]


def integer(minimum: int, maximum: int) -> Rule:
    def check(value: Any, where: str) -> int:
        if type(value) is not int:
            raise ConfigError(where, f"must be an integer, got {value!r}")
        if not minimum <= value <= maximum:
            raise ConfigError(where, f"{value} is outside [{minimum}, {maximum}]")
        return value
    return check


def boolean(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise ConfigError(where, f"must be true or false, got {value!r}")
    return value


def choice(*options: str) -> Rule:
    def check(value: Any, where: str) -> str:
        if value not in options or not isinstance(value, str):
            raise ConfigError(where, f"must be one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    return check


def text(pattern: re.Pattern, what: str) -> Rule:
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ConfigError(where, f"must be {what}, got {value!r}")
        return value
    return check


def chain_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not CHAIN_ID_PATTERN.fullmatch(value) or len(value) > MAX_CHAIN_ID_LEN:
        raise ConfigError(where, f"must be 1 to {MAX_CHAIN_ID_LEN} of [a-z0-9-] (not starting with -), got {value!r}")
    return value


def parse_address(value: Any, where: str) -> tuple[str, int]:
    """`host:port` -> (host, port); an IPv6 host is written in brackets: `[::1]:26656`."""
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not sep or not HOST_PATTERN.fullmatch(host) or not re.fullmatch(r"[0-9]{1,5}", port):
        raise ConfigError(where, f"must be host:port, got {value!r}")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(where, f"port {int(port)} is outside [1, 65535] in {value!r}")
    return host, int(port)


def address(value: Any, where: str) -> str:
    parse_address(value, where)
    return value


def parse_peer(value: Any, where: str) -> tuple[str, str, int]:
    """`nodeid@host:port` -> (node id in lowercase hex, host, port)."""
    node_id, sep, addr = value.partition("@") if isinstance(value, str) else ("", "", "")
    if not sep or not NODE_ID_PATTERN.fullmatch(node_id):
        raise ConfigError(where, f"must be nodeid@host:port with a 40-hex-digit node id, got {value!r}")
    try:
        host, port = parse_address(addr, where)
    except ConfigError as exc:
        raise ConfigError(where, f"must be nodeid@host:port: {exc.reason}") from None
    return node_id.lower(), host, port


def peers(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(where, f"must be a list of \"nodeid@host:port\" strings, got {value!r}")
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        node_id = parse_peer(item, f"{where}[{i}]")[0]
        if node_id in seen:
            raise ConfigError(f"{where}[{i}]", f"node id {node_id} already listed at {where}[{seen[node_id]}]")
        seen[node_id] = i
    return tuple(value)


def price_table(value: Any, where: str) -> tuple[tuple[str, int], ...]:
    """`{ "SYMBOL" = price, ... }` -> ((symbol, price), ...); a price is a positive u64, as an integer or a string
    of decimal digits."""
    if not isinstance(value, dict):
        raise ConfigError(where, f"must be a table of market symbol = price, got {value!r}")
    prices = []
    for symbol, raw in value.items():
        key = f"{where}.{symbol}"
        if not SYMBOL_PATTERN.fullmatch(symbol):
            raise ConfigError(key, "must be a market symbol: 1 to 32 printable ASCII characters")
        if isinstance(raw, str) and re.fullmatch(r"[0-9]{1,20}", raw):
            price = int(raw)
        elif type(raw) is int:
            price = raw
        else:
            raise ConfigError(key, f"must be an integer price (or a string of decimal digits), got {raw!r}")
        if not 1 <= price <= U64_MAX:
            raise ConfigError(key, f"{price} is not a positive price (1 .. 2^64-1 quote atoms per lot)")
        prices.append((symbol, price))
    return tuple(prices)


RULES: dict[str, tuple[type, dict[str, Rule]]] = {
    "node": (NodeSection, {
        "moniker": text(MONIKER_PATTERN, "1 to 64 printable ASCII characters"), "chain_id": chain_id}),
    "p2p": (P2PSection, {
        "listen": address, "peers": peers, "max_frame_bytes": integer(256, 64 * MIB),
        "ban_seconds": integer(0, 7 * 86400)}),
    "rpc": (RpcSection, {
        "listen": address, "max_body_bytes": integer(1024, 64 * MIB), "max_batch": integer(1, 10_000),
        "ws_max_connections": integer(1, 1_000_000), "ws_max_per_ip": integer(1, 1_000_000),
        "rate_per_s": integer(1, 1_000_000), "rate_burst": integer(1, 1_000_000)}),
    "consensus": (ConsensusSection, {
        "timeout_propose_ms": integer(1, 600_000), "timeout_prevote_ms": integer(1, 600_000),
        "timeout_precommit_ms": integer(1, 600_000), "timeout_delta_ms": integer(0, 600_000),
        "create_empty_blocks_interval_ms": integer(0, 3_600_000),
        "min_block_interval_ms": integer(0, 3_600_000),
        "max_future_block_time_ms": integer(0, MAX_CLOCK_MS)}),
    "mempool": (MempoolSection, {
        "max_txs": integer(1, 10_000_000), "max_bytes": integer(1024, 1 << 40),
        "max_txs_per_sender": integer(1, 10_000_000), "max_bytes_per_sender": integer(1024, 1 << 40),
        "verify_workers": integer(0, 64)}),
    "storage": (StorageSection, {
        "backend": choice("leveldb", "memory"), "snapshot_interval": integer(0, 10**9),
        "snapshots_kept": integer(1, 1000), "sync": boolean, "state_sync": boolean}),
    "telemetry": (TelemetrySection, {
        "metrics": boolean, "tracing": choice("none", "console", "otlp"), "log_format": choice("json", "text"),
        "log_level": choice("debug", "info", "warning", "error")}),
    "oracle": (OracleSection, {
        "source": choice("none", "static"), "interval_ms": integer(100, 3_600_000), "prices": price_table}),
    "debug": (DebugSection, {"double_sign": boolean, "clock_skew_ms": integer(-MAX_CLOCK_MS, MAX_CLOCK_MS)}),
}

# A comment written above a section by `render_config`.
SECTION_NOTES = {"debug": "# Test-only fault injection (docs/OPERATIONS.md): never change these on a real network."}

# Fields written as one TOML inline table of strings (every other field is a scalar or a list of strings).
INLINE_TABLES = frozenset({"oracle.prices"})

# (field, the field it must not exceed), checked after every value passed its own rule.
BOUNDS = (
    ("rpc.ws_max_per_ip", "rpc.ws_max_connections"),
    ("mempool.max_txs_per_sender", "mempool.max_txs"),
    ("mempool.max_bytes_per_sender", "mempool.max_bytes"),
)


def _section(name: str, raw: Any) -> Any:
    cls, rules = RULES[name]
    if not isinstance(raw, dict):
        raise ConfigError(name, f"must be a table, got {raw!r}")
    unknown = sorted(key for key in raw if key not in rules)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}", f"unknown key (known: {', '.join(rules)})")
    return cls(**{key: rules[key](value, f"{name}.{key}") for key, value in raw.items()})


def _lookup(config: NodeConfig, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


def _check_across(config: NodeConfig) -> None:
    for name, bound in BOUNDS:
        if _lookup(config, name) > _lookup(config, bound):
            raise ConfigError(name, f"{_lookup(config, name)} exceeds {bound} ({_lookup(config, bound)})")
    if parse_address(config.rpc.listen, "rpc.listen") == parse_address(config.p2p.listen, "p2p.listen"):
        raise ConfigError("rpc.listen", f"{config.rpc.listen!r} is also p2p.listen")
    if config.oracle.source == "static" and not config.oracle.prices:
        raise ConfigError("oracle.prices", "a static source needs at least one market's price")


def config_from_dict(doc: dict) -> NodeConfig:
    """Validate a parsed TOML document (a dict of tables) into a `NodeConfig`."""
    unknown = sorted(name for name in doc if name not in RULES)
    if unknown:
        raise ConfigError(unknown[0], f"unknown section (known: {', '.join(RULES)})")
    config = NodeConfig(**{name: _section(name, raw) for name, raw in doc.items()})
    _check_across(config)
    return config


def parse_config(text: str) -> NodeConfig:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(None, f"not valid TOML: {exc}") from None
    return config_from_dict(doc)


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate `path`; every refusal is a `ConfigError` carrying the path."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(None, "file not found", str(path)) from None
    except OSError as exc:
        raise ConfigError(None, f"cannot read: {exc.strerror or exc}", str(path)) from None
    try:
        return parse_config(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(None, "not valid UTF-8", str(path)) from None
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.reason, str(path)) from None


# --- writing: a minimal TOML writer for the types above ---

def _toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (tuple, list)):
        if len(value) < 2:
            return "[" + ", ".join(_toml_string(item) for item in value) + "]"
        return "[\n" + "".join(f"    {_toml_string(item)},\n" for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_inline_table(pairs: tuple[tuple[str, int], ...]) -> str:
    """`{ "key" = "value", ... }`: values as decimal strings, which also carry integers beyond TOML's i64."""
    if not pairs:
        return "{}"
    return "{ " + ", ".join(f"{_toml_string(key)} = {_toml_string(str(value))}" for key, value in pairs) + " }"


def render_config(config: NodeConfig) -> str:
    """Every section and key, in schema order; `parse_config(render_config(c)) == c`."""
    lines = ["# Kabuto node configuration (node runtime only; chain parameters live in genesis.json)."]
    for name in RULES:
        section = getattr(config, name)
        lines += ["", *([SECTION_NOTES[name]] if name in SECTION_NOTES else []), f"[{name}]"]
        for f in fields(section):
            value = getattr(section, f.name)
            rendered = _toml_inline_table(value) if f"{name}.{f.name}" in INLINE_TABLES else _toml_value(value)
            lines.append(f"{f.name} = {rendered}")
    return "\n".join(lines) + "\n"


def write_config(path: str | Path, config: NodeConfig) -> None:
    Path(path).write_text(render_config(config))


def consensus_timeouts(config: NodeConfig) -> dict[str, int]:
    """The `[consensus]` table as keyword arguments of consensus.engine.TimeoutConfig (one delta for all)."""
    c = config.consensus
    return {
        "propose_ms": c.timeout_propose_ms, "propose_delta_ms": c.timeout_delta_ms,
        "prevote_ms": c.timeout_prevote_ms, "prevote_delta_ms": c.timeout_delta_ms,
        "precommit_ms": c.timeout_precommit_ms, "precommit_delta_ms": c.timeout_delta_ms,
    }
