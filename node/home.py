"""The node's home directory: layout, `init_home`, `reset_home`, `load_home` and `make_localnet`.

Layout of a home `H`:

    H/config.toml          node runtime config (node.config)
    H/genesis.json         the genesis document (genesis.load_genesis_file)
    H/validators.json      the validator set: [{"address": hex, "public_key": hex, "power": int}, ...]
    H/node_key.json        P2P identity, mode 0600 (node.keys)
    H/validator_key.json   consensus signing key, mode 0600 (node.keys)
    H/data/                the LevelDB chain store (node.storage.open_chain_store)
    H/wal/                 the consensus write-ahead log

Contract:

- `init_home(home, chain_id, moniker, genesis_doc=None, force=False)` creates the layout. The genesis document
  defaults to `genesis.presets.localnet_genesis(chain_id)`; a given one is validated first and its chain id must
  equal `chain_id`. It refuses (HomeError) a home that already holds any of the files above, unless `force`:
  then config, genesis and validators.json are rewritten, but an existing key is NEVER overwritten (a missing
  one is generated). A one-node home lists its own validator key with power 10 in validators.json, and the default
  genesis is `localnet_genesis(chain_id, validators=[that (address, power)])`: the genesis `validators` field is
  the set the STF's oracle weighs, and with it the localnet preset adds its perp markets. Its config has
  `[oracle] source = "none"` (no price feed: perp orders are refused until an oracle feeds them).
- `reset_home(home)` deletes `data/` and `wal/` and recreates them empty; keys, config, genesis and
  validators.json are kept. It refuses a directory without `config.toml`, so a wrong path wipes nothing.
- `load_home(home)` reads and checks everything `start` needs: config, genesis, validators.json and both keys,
  that the config's chain id is the genesis chain id, and a static oracle source's prices against the genesis
  markets (`node.oracle.resolve_static_prices`). Every refusal is one line naming the file, the field
  and the reason: `ConfigError`, `KeyFileError`, `HomeError`, or `HomeError` wrapping `InvalidGenesis`.
- `make_localnet(base_dir, validators=4, base_port=26600, chain_id)` creates `base_dir/node0 .. node{N-1}`.
  Node i listens for P2P on 127.0.0.1:`base_port + 2i` and for RPC on 127.0.0.1:`base_port + 2i + 1`, lists every
  other node as a peer `nodeid@127.0.0.1:port`, and every home holds the same genesis.json and validators.json,
  byte for byte (`localnet_genesis` with every node's validator key, power 10: spot and perp markets). Localnet
  consensus timeouts are short (`LOCALNET_CONSENSUS`: about 150 ms between blocks at idle on loopback, block
  times at most 1 s ahead of a validator's clock), and every node feeds the oracle from a static source
  (`LOCALNET_ORACLE`: BTC-PERP at $100,000 and ETH-PERP at $4,000, each second).

Why validators.json beside genesis.json: consensus verifies votes with each validator's public key, and the
genesis `validators` field holds (address, power) only. An entry may omit `public_key` (a set written for
another tool); `start` refuses such a set, naming the entry (`require_public_keys`). The address of an entry
with a key must be the address of that key.
"""

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from genesis import localnet_genesis, validate_genesis
from genesis.document import load_genesis_file
from node.config import (
    ConfigError, ConsensusSection, NodeConfig, NodeSection, OracleSection, P2PSection, RpcSection, StorageSection,
    load_config, parse_config, render_config,
)
from node.keys import NODE_KEY_FILE, VALIDATOR_KEY_FILE, generate_key, load_key, node_id
from node.oracle import resolve_static_prices
from stf.crypto import PrivateKey, compute_address
from stf.errors import InvalidGenesis
from stf.params import GenesisConfig

CONFIG_FILE = "config.toml"
GENESIS_FILE = "genesis.json"
VALIDATORS_FILE = "validators.json"
DATA_DIR = "data"
WAL_DIR = "wal"
HOME_FILES = (CONFIG_FILE, GENESIS_FILE, VALIDATORS_FILE, NODE_KEY_FILE, VALIDATOR_KEY_FILE)
DEFAULT_POWER = 10
MAX_POWER = 1 << 60
LOCALNET_HOST = "127.0.0.1"
# Loopback timeouts: a block every ~150 ms at idle; a dead proposer costs ~0.5 s per height it should propose.
# The nodes share one clock, so a block time more than 1 s ahead of it can only come from a skewed node.
LOCALNET_CONSENSUS = ConsensusSection(
    timeout_propose_ms=400, timeout_prevote_ms=150, timeout_precommit_ms=150, timeout_delta_ms=100,
    create_empty_blocks_interval_ms=150, min_block_interval_ms=150, max_future_block_time_ms=1000)
# Every localnet validator feeds fixed prices (genesis.presets.perp_markets units): $100,000 per BTC, $4,000 per ETH.
LOCALNET_ORACLE = OracleSection(
    source="static", interval_ms=1000, prices=(("BTC-PERP", 10_000_000), ("ETH-PERP", 4_000_000)))


class HomeError(ValueError):
    """A home directory (or one of its files) was refused; `str()` is one line: `path: field: reason`."""

    def __init__(self, path: str | Path, field: str | None, reason: str) -> None:
        super().__init__(str(path), field, reason)
        self.path, self.field, self.reason = str(path), field, reason

    def __str__(self) -> str:
        return ": ".join(part for part in (self.path, self.field, self.reason) if part)


@dataclass(frozen=True, slots=True)
class Validator:
    address: bytes
    power: int
    public_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Home:
    """Everything `load_home` read and checked."""
    path: Path
    config: NodeConfig
    genesis: GenesisConfig
    validators: tuple[Validator, ...]
    node_key: PrivateKey
    validator_key: PrivateKey


def encode_genesis(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def encode_validators(validators: list[Validator]) -> str:
    rows = []
    for v in validators:
        row = {"address": v.address.hex(), "power": v.power}
        if v.public_key is not None:
            row["public_key"] = v.public_key.hex()
        rows.append(row)
    return json.dumps(rows, indent=2) + "\n"


def localnet_genesis_for(chain_id: str, validators: list[Validator]) -> dict:
    """The localnet preset with `validators` as its genesis validator set (and so its perp markets)."""
    return localnet_genesis(chain_id, validators=[(v.address.hex(), v.power) for v in validators])


def require_public_keys(home: "Home") -> None:
    """Raise HomeError unless every validator entry carries its public key (consensus needs them)."""
    for i, v in enumerate(home.validators):
        if v.public_key is None:
            raise HomeError(home.path / VALIDATORS_FILE, f"[{i}].public_key",
                            "required to run consensus (32-byte hex Ed25519 key of this validator)")


def decode_validators(text: str, path: str | Path) -> tuple[Validator, ...]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise HomeError(path, None, f"not valid JSON: {exc}") from None
    if not isinstance(doc, list) or not doc:
        raise HomeError(path, None, "must be a non-empty JSON list of {\"address\", \"power\"}")
    out: dict[bytes, Validator] = {}
    for i, item in enumerate(doc):
        where = f"[{i}]"
        if not isinstance(item, dict) or sorted(item) not in (["address", "power"], ["address", "power", "public_key"]):
            raise HomeError(path, where, "must be an object with \"address\", \"power\" and optionally \"public_key\"")
        addr = item["address"]
        if not isinstance(addr, str) or len(addr) != 40 or not all(c in "0123456789abcdefABCDEF" for c in addr):
            raise HomeError(path, f"{where}.address", f"must be a 20-byte hex address, got {addr!r}")
        power = item["power"]
        if type(power) is not int or not 1 <= power <= MAX_POWER:
            raise HomeError(path, f"{where}.power", f"must be an integer in [1, 2^60], got {power!r}")
        if bytes.fromhex(addr) in out:
            raise HomeError(path, f"{where}.address", f"{addr} is listed twice")
        out[bytes.fromhex(addr)] = Validator(bytes.fromhex(addr), power, _public_key(item, path, where))
    return tuple(out.values())


def _public_key(item: dict, path: str | Path, where: str) -> bytes | None:
    key = item.get("public_key")
    if key is None:
        return None
    if not isinstance(key, str) or len(key) != 64 or not all(c in "0123456789abcdefABCDEF" for c in key):
        raise HomeError(path, f"{where}.public_key", f"must be a 32-byte hex Ed25519 public key, got {key!r}")
    if compute_address(bytes.fromhex(key)).hex() != item["address"].lower():
        raise HomeError(path, f"{where}.public_key", "is not the key of this entry's address")
    return bytes.fromhex(key)


def _existing(home: Path) -> list[str]:
    return [name for name in HOME_FILES + (DATA_DIR, WAL_DIR) if (home / name).exists()]


def _checked_genesis(doc: dict, chain_id: str) -> dict:
    try:
        validate_genesis(doc)
    except InvalidGenesis as exc:
        raise HomeError(GENESIS_FILE, None, str(exc)) from None
    if doc["chain_id"] != chain_id:
        raise HomeError(GENESIS_FILE, "chain_id", f"is {doc['chain_id']!r}, the config says {chain_id!r}")
    return doc


def _ensure_key(path: Path) -> PrivateKey:
    return load_key(path) if path.exists() else generate_key(path)


def _write_home(home: Path, config: NodeConfig, genesis_text: str, force: bool) -> tuple[PrivateKey, PrivateKey]:
    """Create the layout; returns (node key, validator key). validators.json is the caller's."""
    home.mkdir(parents=True, exist_ok=True)
    present = [name for name in _existing(home) if name not in (DATA_DIR, WAL_DIR)]
    if present and not force:
        raise HomeError(home, None, f"already initialised ({', '.join(present)} present); use --force to "
                                    f"rewrite config and genesis (keys are never overwritten)")
    (home / CONFIG_FILE).write_text(render_config(config))
    (home / GENESIS_FILE).write_text(genesis_text)
    (home / DATA_DIR).mkdir(exist_ok=True)
    (home / WAL_DIR).mkdir(exist_ok=True)
    return _ensure_key(home / NODE_KEY_FILE), _ensure_key(home / VALIDATOR_KEY_FILE)


def init_home(
    home: str | Path, chain_id: str, moniker: str = "kabuto-node", genesis_doc: dict | None = None,
    force: bool = False, config: NodeConfig | None = None,
) -> Home:
    """Create a one-validator home (see the module contract) and return it as `load_home` reads it."""
    home = Path(home)
    base = config or NodeConfig()
    config = replace(base, node=NodeSection(moniker=moniker, chain_id=chain_id))
    render_and_check(config)
    doc = _checked_genesis(genesis_doc if genesis_doc is not None else localnet_genesis(chain_id), chain_id)
    _, validator_key = _write_home(home, config, encode_genesis(doc), force)
    validators = [Validator(validator_key.address, DEFAULT_POWER, validator_key.public_key)]
    if genesis_doc is None:
        doc = _checked_genesis(localnet_genesis_for(chain_id, validators), chain_id)
        (home / GENESIS_FILE).write_text(encode_genesis(doc))
    (home / VALIDATORS_FILE).write_text(encode_validators(validators))
    return load_home(home)


def render_and_check(config: NodeConfig) -> str:
    """Render `config` and read it back through the validator, so no home is written with a config it refuses."""
    text = render_config(config)
    parse_config(text)
    return text


def reset_home(home: str | Path) -> None:
    home = Path(home)
    if not (home / CONFIG_FILE).is_file():
        raise HomeError(home, None, f"not a node home (no {CONFIG_FILE}); refusing to delete anything")
    for name in (DATA_DIR, WAL_DIR):
        if (home / name).exists():
            shutil.rmtree(home / name)
        (home / name).mkdir()


def load_validators(path: str | Path) -> tuple[Validator, ...]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise HomeError(path, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HomeError(path, None, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return decode_validators(text, path)


def load_genesis_path(path: str | Path) -> GenesisConfig:
    try:
        return load_genesis_file(path)
    except FileNotFoundError:
        raise HomeError(path, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HomeError(path, None, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    except InvalidGenesis as exc:
        raise HomeError(path, None, str(exc)) from None


def load_home(home: str | Path) -> Home:
    """Read and check config, genesis, validator set and keys (see the module contract)."""
    home = Path(home)
    if not home.is_dir():
        raise HomeError(home, None, "no such home directory (create it with: kabuto init)")
    config = load_config(home / CONFIG_FILE)
    genesis = load_genesis_path(home / GENESIS_FILE)
    if genesis.params.chain_id != config.node.chain_id:
        raise ConfigError("node.chain_id", f"is {config.node.chain_id!r} but {GENESIS_FILE} says "
                                           f"{genesis.params.chain_id!r}", str(home / CONFIG_FILE))
    if config.oracle.source == "static":
        resolve_static_prices(config, genesis, str(home / CONFIG_FILE))
    validators = load_validators(home / VALIDATORS_FILE)
    node_key = load_key(home / NODE_KEY_FILE)
    validator_key = load_key(home / VALIDATOR_KEY_FILE)
    return Home(home, config, genesis, validators, node_key, validator_key)


def localnet_ports(base_port: int, index: int) -> tuple[int, int]:
    """(p2p port, rpc port) of localnet node `index`."""
    return base_port + 2 * index, base_port + 2 * index + 1


def make_localnet(
    base_dir: str | Path, validators: int = 4, base_port: int = 26600, chain_id: str = "kabuto-localnet",
) -> list[Path]:
    """Create `validators` homes under `base_dir` sharing one genesis and one validator set; returns the homes."""
    base_dir = Path(base_dir)
    if not 1 <= validators <= 100:
        raise HomeError(base_dir, "validators", f"must be 1 to 100, got {validators}")
    if not 1 <= base_port or localnet_ports(base_port, validators - 1)[1] > 65535:
        raise HomeError(base_dir, "base_port", f"{base_port} leaves no room for {2 * validators} ports below 65536")
    homes = [base_dir / f"node{i}" for i in range(validators)]
    taken = [str(h) for h in homes if h.exists() and any(h.iterdir())]
    if taken:
        raise HomeError(taken[0], None, "already exists and is not empty; refusing to overwrite a localnet")
    genesis_text = encode_genesis(_checked_genesis(localnet_genesis(chain_id), chain_id))
    configs = [_localnet_config(i, base_port, chain_id) for i in range(validators)]
    keys = [_write_home(home, config, genesis_text, force=False) for home, config in zip(homes, configs)]
    peers = [f"{node_id(node_key)}@{LOCALNET_HOST}:{localnet_ports(base_port, i)[0]}"
             for i, (node_key, _) in enumerate(keys)]
    validators = [Validator(vk.address, DEFAULT_POWER, vk.public_key) for _, vk in keys]
    validators_text = encode_validators(validators)
    genesis_text = encode_genesis(_checked_genesis(localnet_genesis_for(chain_id, validators), chain_id))
    for i, (home, config) in enumerate(zip(homes, configs)):
        others = tuple(peer for j, peer in enumerate(peers) if j != i)
        final = replace(config, p2p=replace(config.p2p, peers=others))
        (home / CONFIG_FILE).write_text(render_and_check(final))
        (home / GENESIS_FILE).write_text(genesis_text)
        (home / VALIDATORS_FILE).write_text(validators_text)
    return homes


def _localnet_config(index: int, base_port: int, chain_id: str) -> NodeConfig:
    p2p_port, rpc_port = localnet_ports(base_port, index)
    return NodeConfig(
        node=NodeSection(moniker=f"node{index}", chain_id=chain_id),
        p2p=P2PSection(listen=f"{LOCALNET_HOST}:{p2p_port}"),
        rpc=RpcSection(listen=f"{LOCALNET_HOST}:{rpc_port}", rate_per_s=1000, rate_burst=2000),
        consensus=LOCALNET_CONSENSUS,
        storage=StorageSection(snapshot_interval=1000, sync=False),
        oracle=LOCALNET_ORACLE,
    )
