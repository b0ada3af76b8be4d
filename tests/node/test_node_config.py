"""Node config (round trip, one `test_invalid_*` per validation rule), key files (generate, load, refuse
overwrite, each bad file) and the home layouts (init, reset, localnet)."""

import json
import os
import stat
import tomllib
from dataclasses import fields, replace
from pathlib import Path

import pytest

from genesis import localnet_genesis, minimal_genesis, perp_genesis
from node.config import (
    RULES, ConfigError, ConsensusSection, NodeConfig, NodeSection, OracleSection, P2PSection, load_config,
    parse_config, render_config,
)
from node.home import (
    CONFIG_FILE, DATA_DIR, GENESIS_FILE, VALIDATORS_FILE, WAL_DIR, HomeError, init_home, load_home,
    load_validators, make_localnet, reset_home,
)
from node.keys import KeyFileError, generate_key, load_key, node_id
from node.mempool import MempoolLimits
from stf.crypto import compute_address

PEER_A = "ab" * 20 + "@10.0.0.1:26656"
PEER_B = "CD" * 20 + "@[::1]:26656"
ONE = [("11" * 20, 10)]  # a genesis validator set (perp markets need one)


def refusal(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value


# --- config ---

def test_defaults_round_trip() -> None:
    assert parse_config(render_config(NodeConfig())) == NodeConfig()


def test_every_field_round_trips(tmp_path: Path) -> None:
    config = NodeConfig(
        node=NodeSection(moniker='odd "name" \\ here', chain_id="kabuto-7"),
        p2p=P2PSection(listen="[::]:1", peers=(PEER_A, PEER_B), max_frame_bytes=256, ban_seconds=0),
        consensus=ConsensusSection(1, 2, 3, 0, 4),
        oracle=OracleSection("static", 100, (("BTC-PERP", 10_000_000), ('odd "sym" \\', (1 << 64) - 1))),
    )
    path = tmp_path / "config.toml"
    path.write_text(render_config(config))
    assert load_config(path) == config


def test_rendered_config_lists_every_key() -> None:
    doc = tomllib.loads(render_config(NodeConfig()))
    assert list(doc) == list(RULES)
    for name, (cls, rules) in RULES.items():
        assert list(doc[name]) == [f.name for f in fields(cls)] == list(rules)


def test_empty_file_gives_defaults() -> None:
    assert parse_config("") == NodeConfig()


def test_partial_section_keeps_other_defaults() -> None:
    config = parse_config('[rpc]\nmax_batch = 7\n')
    assert config.rpc.max_batch == 7 and config.rpc.listen == NodeConfig().rpc.listen


def test_mempool_defaults_match_mempool_limits() -> None:
    assert NodeConfig().mempool.to_limits() == MempoolLimits()


def test_invalid_toml() -> None:
    error = refusal("[node\nmoniker = 1")
    assert error.field is None and "not valid TOML" in error.reason


def test_invalid_unknown_section() -> None:
    assert refusal("[nodes]\nmoniker = 'x'\n").field == "nodes"


def test_invalid_unknown_key() -> None:
    error = refusal("[p2p]\nmax_frame = 5\n")
    assert (error.field, "unknown key" in error.reason) == ("p2p.max_frame", True)


def test_invalid_section_not_a_table() -> None:
    assert refusal("p2p = 5\n").field == "p2p"


def test_invalid_wrong_type_int() -> None:
    error = refusal('[rpc]\nmax_batch = "100"\n')
    assert error.field == "rpc.max_batch" and "integer" in error.reason


def test_invalid_bool_is_not_an_int() -> None:
    assert refusal("[rpc]\nmax_batch = true\n").field == "rpc.max_batch"


def test_invalid_wrong_type_bool() -> None:
    error = refusal("[storage]\nsync = 1\n")
    assert error.field == "storage.sync" and "true or false" in error.reason


def test_invalid_out_of_range() -> None:
    error = refusal("[consensus]\ntimeout_propose_ms = 0\n")
    assert error.field == "consensus.timeout_propose_ms" and "outside" in error.reason


def test_invalid_above_range() -> None:
    assert refusal("[storage]\nsnapshots_kept = 1001\n").field == "storage.snapshots_kept"


def test_invalid_choice() -> None:
    error = refusal('[storage]\nbackend = "rocksdb"\n')
    assert error.field == "storage.backend" and "'leveldb'" in error.reason


@pytest.mark.parametrize("key,value", [("tracing", '"jaeger"'), ("log_format", '"xml"'), ("log_level", '"trace"')])
def test_invalid_telemetry_choice(key: str, value: str) -> None:
    assert refusal(f"[telemetry]\n{key} = {value}\n").field == f"telemetry.{key}"


@pytest.mark.parametrize("value", ['""', '"a\\u0001b"', '"' + "x" * 65 + '"', "5"])
def test_invalid_moniker(value: str) -> None:
    assert refusal(f"[node]\nmoniker = {value}\n").field == "node.moniker"


@pytest.mark.parametrize("value", ['"Kabuto"', '"-x"', '""', '"' + "a" * 51 + '"', '"a_b"'])
def test_invalid_chain_id(value: str) -> None:
    assert refusal(f"[node]\nchain_id = {value}\n").field == "node.chain_id"


@pytest.mark.parametrize("value", ['"localhost"', '"host:"', '":80"', '"host:abc"', '"ho st:80"', '"::1:80"', "80"])
def test_invalid_address(value: str) -> None:
    error = refusal(f"[p2p]\nlisten = {value}\n")
    assert error.field == "p2p.listen" and "host:port" in error.reason


@pytest.mark.parametrize("port", ["0", "65536", "99999"])
def test_invalid_port(port: str) -> None:
    error = refusal(f'[rpc]\nlisten = "127.0.0.1:{port}"\n')
    assert error.field == "rpc.listen" and "outside [1, 65535]" in error.reason


@pytest.mark.parametrize("peer", [
    "127.0.0.1:26656", "abcd@127.0.0.1:26656", "zz" * 20 + "@h:1", "ab" * 20 + "@h", "ab" * 20 + "@h:0", "",
])
def test_invalid_peer_string(peer: str) -> None:
    error = refusal(f'[p2p]\npeers = ["{PEER_A}", "{peer}"]\n')
    assert error.field == "p2p.peers[1]"
    assert error.reason.startswith("must be nodeid@host:port")


def test_invalid_peers_not_a_list() -> None:
    assert refusal(f'[p2p]\npeers = "{PEER_A}"\n').field == "p2p.peers"


def test_invalid_peer_not_a_string() -> None:
    assert refusal("[p2p]\npeers = [1]\n").field == "p2p.peers[0]"


def test_invalid_repeated_peer() -> None:
    other = PEER_A.upper().replace("@10.0.0.1", "@10.0.0.2")
    error = refusal(f'[p2p]\npeers = ["{PEER_A}", "{other}"]\n')
    assert error.field == "p2p.peers[1]" and "already listed at p2p.peers[0]" in error.reason


def test_invalid_per_ip_above_total() -> None:
    error = refusal("[rpc]\nws_max_connections = 4\nws_max_per_ip = 5\n")
    assert error.field == "rpc.ws_max_per_ip" and "rpc.ws_max_connections" in error.reason


@pytest.mark.parametrize("key,total", [("max_txs_per_sender", "max_txs"), ("max_bytes_per_sender", "max_bytes")])
def test_invalid_per_sender_above_total(key: str, total: str) -> None:
    error = refusal(f"[mempool]\n{total} = 2048\n{key} = 4096\n")
    assert error.field == f"mempool.{key}"


def test_invalid_rpc_on_p2p_address() -> None:
    error = refusal('[p2p]\nlisten = "127.0.0.1:9000"\n[rpc]\nlisten = "127.0.0.1:9000"\n')
    assert error.field == "rpc.listen"


def test_oracle_prices_as_integers_or_decimal_strings() -> None:
    config = parse_config('[oracle]\nsource = "static"\nprices = { "BTC-PERP" = "10000000", "ETH-PERP" = 4000000 }\n')
    assert config.oracle == OracleSection("static", 1000, (("BTC-PERP", 10_000_000), ("ETH-PERP", 4_000_000)))
    assert 'prices = { "BTC-PERP" = "10000000", "ETH-PERP" = "4000000" }' in render_config(config)
    assert "prices = {}" in render_config(NodeConfig())


def test_invalid_oracle_source() -> None:
    error = refusal('[oracle]\nsource = "chainlink"\n')
    assert error.field == "oracle.source" and "'static'" in error.reason


@pytest.mark.parametrize("value", ["99", "3600001", '"1000"'])
def test_invalid_oracle_interval(value: str) -> None:
    assert refusal(f"[oracle]\ninterval_ms = {value}\n").field == "oracle.interval_ms"


def test_invalid_oracle_prices_not_a_table() -> None:
    assert refusal('[oracle]\nprices = ["BTC-PERP"]\n').field == "oracle.prices"


@pytest.mark.parametrize("value,reason", [
    ("0", "not a positive price"), ('"0"', "not a positive price"), ("-5", "not a positive price"),
    ('"1.5"', "must be an integer price"), ('"1e6"', "must be an integer price"), ("1.5", "must be an integer price"),
    ('""', "must be an integer price"), ("true", "must be an integer price"),
    ('"18446744073709551616"', "not a positive price"),
])
def test_invalid_oracle_price(value: str, reason: str) -> None:
    error = refusal(f'[oracle]\nprices = {{ "BTC-PERP" = {value} }}\n')
    assert error.field == "oracle.prices.BTC-PERP" and reason in error.reason


def test_invalid_oracle_price_symbol() -> None:
    error = refusal(f'[oracle]\nprices = {{ "{"X" * 33}" = 1 }}\n')
    assert error.field == f"oracle.prices.{'X' * 33}" and "market symbol" in error.reason


def test_invalid_static_oracle_without_prices() -> None:
    error = refusal('[oracle]\nsource = "static"\n')
    assert error.field == "oracle.prices" and "at least one" in error.reason


def test_invalid_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[rpc]\nmax_batch = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: rpc.max_batch: -1 is outside [1, 10000]"


def test_invalid_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[node]\nmoniker = "\xff"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


# --- keys ---

def test_generate_and_load_key(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    key = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(json.loads(path.read_text())) == {"type", "seed"}
    loaded = load_key(path)
    assert loaded.public_key == key.public_key
    assert node_id(loaded) == compute_address(key.public_key).hex()


def test_generate_ignores_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        generate_key(tmp_path / "key.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "key.json").stat().st_mode) == 0o600


def test_generate_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    generate_key(path)
    before = path.read_text()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_key(path)
    assert path.read_text() == before


def write_key(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("text,field,reason", [
    ("{not json", None, "not valid JSON"),
    ('["ed25519"]', None, "must be a JSON object"),
    ('{"type": "secp256k1", "seed": "' + "00" * 32 + '"}', "type", "must be 'ed25519'"),
    ('{"seed": "' + "00" * 32 + '"}', "type", "must be 'ed25519'"),
    ('{"type": "ed25519", "seed": "' + "zz" * 32 + '"}', "seed", "hex string"),
    ('{"type": "ed25519", "seed": "' + "0" * 63 + '"}', "seed", "hex string"),
    ('{"type": "ed25519", "seed": "' + "00" * 31 + '"}', "seed", "32 bytes"),
    ('{"type": "ed25519", "seed": 5}', "seed", "hex string"),
    ('{"type": "ed25519", "seed": "' + "00" * 32 + '", "pub": ""}', "pub", "unknown field"),
])
def test_invalid_key_file(tmp_path: Path, text: str, field: str | None, reason: str) -> None:
    path = write_key(tmp_path / "key.json", text)
    with pytest.raises(KeyFileError) as info:
        load_key(path)
    assert (info.value.field, reason in info.value.reason) == (field, True)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_invalid_key_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="file not found"):
        load_key(tmp_path / "none.json")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o666])
def test_invalid_key_permissions_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key.json"
    generate_key(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        load_key(path)
    assert info.value.field == "mode" and "chmod 600" in info.value.reason


def test_key_mode_0400_accepted(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    generate_key(path)
    path.chmod(0o400)
    load_key(path)


# --- home ---

def test_init_home_layout(tmp_path: Path) -> None:
    home = init_home(tmp_path / "h", "kabuto-test", "alpha")
    names = sorted(p.name for p in home.path.iterdir())
    assert names == sorted([CONFIG_FILE, GENESIS_FILE, VALIDATORS_FILE, "node_key.json", "validator_key.json",
                            DATA_DIR, WAL_DIR])
    assert home.config.node == NodeSection("alpha", "kabuto-test")
    own = [(home.validator_key.address.hex(), 10)]
    assert json.loads((home.path / GENESIS_FILE).read_text()) == localnet_genesis("kabuto-test", validators=own)
    assert [m.symbol for m in home.genesis.perp_markets] == ["BTC-PERP", "ETH-PERP"]  # valid: it has a validator
    assert home.config.oracle == OracleSection()  # no price feed unless the operator configures one
    assert [v.address for v in home.validators] == [home.validator_key.address]
    assert [v.public_key for v in home.validators] == [home.validator_key.public_key]
    assert home.node_key.public_key != home.validator_key.public_key


def test_init_home_with_genesis_doc(tmp_path: Path) -> None:
    home = init_home(tmp_path / "h", "kabuto-test", genesis_doc=minimal_genesis("kabuto-test"))
    assert home.genesis.params.faucet_enabled is False


def test_init_home_refuses_bad_genesis(tmp_path: Path) -> None:
    doc = minimal_genesis("kabuto-test") | {"validator_set": []}
    with pytest.raises(HomeError, match="unknown field 'validator_set'"):
        init_home(tmp_path / "h", "kabuto-test", genesis_doc=doc)
    assert not (tmp_path / "h").exists()


def test_init_home_refuses_other_chain_genesis(tmp_path: Path) -> None:
    with pytest.raises(HomeError, match="chain_id"):
        init_home(tmp_path / "h", "kabuto-test", genesis_doc=minimal_genesis("kabuto-other"))


def test_init_home_refuses_existing(tmp_path: Path) -> None:
    init_home(tmp_path / "h", "kabuto-test")
    config_before = (tmp_path / "h" / CONFIG_FILE).read_text()
    with pytest.raises(HomeError, match="already initialised"):
        init_home(tmp_path / "h", "kabuto-test", "other")
    assert (tmp_path / "h" / CONFIG_FILE).read_text() == config_before


def test_init_home_force_keeps_keys(tmp_path: Path) -> None:
    first = init_home(tmp_path / "h", "kabuto-test")
    second = init_home(tmp_path / "h", "kabuto-next", "renamed", force=True)
    assert second.node_key.public_key == first.node_key.public_key
    assert second.validator_key.public_key == first.validator_key.public_key
    assert second.config.node.moniker == "renamed" and second.genesis.params.chain_id == "kabuto-next"


def test_reset_home_keeps_keys_config_genesis(tmp_path: Path) -> None:
    home = init_home(tmp_path / "h", "kabuto-test").path
    kept = {name: (home / name).read_bytes() for name in (CONFIG_FILE, GENESIS_FILE, VALIDATORS_FILE,
                                                            "node_key.json", "validator_key.json")}
    (home / DATA_DIR / "000001.log").write_bytes(b"x")
    (home / WAL_DIR / "sub").mkdir()
    reset_home(home)
    assert list((home / DATA_DIR).iterdir()) == [] and list((home / WAL_DIR).iterdir()) == []
    assert {name: (home / name).read_bytes() for name in kept} == kept


def test_reset_refuses_non_home(tmp_path: Path) -> None:
    (tmp_path / DATA_DIR).mkdir()
    (tmp_path / DATA_DIR / "precious").write_text("x")
    with pytest.raises(HomeError, match="not a node home"):
        reset_home(tmp_path)
    assert (tmp_path / DATA_DIR / "precious").exists()


def test_localnet_layout(tmp_path: Path) -> None:
    homes = make_localnet(tmp_path / "net", validators=4, base_port=30000)
    loaded = [load_home(h) for h in homes]
    ids = [node_id(h.node_key) for h in loaded]
    ports = [int(h.config.p2p.listen.rsplit(":", 1)[1]) for h in loaded]
    ports += [int(h.config.rpc.listen.rsplit(":", 1)[1]) for h in loaded]
    assert len(set(ports)) == 8 and min(ports) == 30000 and max(ports) == 30007
    for i, home in enumerate(loaded):
        expected = {f"{ids[j]}@{loaded[j].config.p2p.listen}" for j in range(4) if j != i}
        assert set(home.config.p2p.peers) == expected
        assert home.config.node.moniker == f"node{i}"
    assert len({(h / GENESIS_FILE).read_bytes() for h in homes}) == 1
    assert len({(h / VALIDATORS_FILE).read_bytes() for h in homes}) == 1
    assert {v.address for v in loaded[0].validators} == {h.validator_key.address for h in loaded}
    assert len({h.validator_key.public_key for h in loaded} | {h.node_key.public_key for h in loaded}) == 8


def test_localnet_refuses_existing(tmp_path: Path) -> None:
    make_localnet(tmp_path / "net", validators=2)
    with pytest.raises(HomeError, match="refusing to overwrite"):
        make_localnet(tmp_path / "net", validators=2)


@pytest.mark.parametrize("validators,base_port", [(0, 26600), (101, 26600), (4, 65530), (2, 0)])
def test_localnet_refuses_bad_arguments(tmp_path: Path, validators: int, base_port: int) -> None:
    with pytest.raises(HomeError):
        make_localnet(tmp_path / "net", validators=validators, base_port=base_port)


@pytest.mark.parametrize("text,field", [
    ("[]", None), ("{", None), ('[{"address": "00"}]', "[0]"),
    ('[{"address": "00", "power": 1}]', "[0].address"),
    ('[{"address": "' + "11" * 20 + '", "power": 0}]', "[0].power"),
    ('[{"address": "' + "11" * 20 + '", "power": true}]', "[0].power"),
    ('[{"address": "' + "11" * 20 + '", "power": 1}, {"address": "' + "11" * 20 + '", "power": 2}]',
     "[1].address"),
])
def test_invalid_validators_file(tmp_path: Path, text: str, field: str | None) -> None:
    path = tmp_path / VALIDATORS_FILE
    path.write_text(text)
    with pytest.raises(HomeError) as info:
        load_validators(path)
    assert info.value.field == field


def test_localnet_feeds_the_oracle_of_its_perp_markets(tmp_path: Path) -> None:
    homes = make_localnet(tmp_path / "net", validators=2)
    for home in map(load_home, homes):
        assert home.config.oracle == OracleSection("static", 1000, (("BTC-PERP", 10_000_000), ("ETH-PERP", 4_000_000)))
        assert [m.symbol for m in home.genesis.perp_markets] == ["BTC-PERP", "ETH-PERP"]
        assert sorted(a for a, _ in home.genesis.validators) == sorted(v.address for v in home.validators)
        assert home.genesis.params.collateral_asset == 0 and home.genesis.params.faucet_enabled


def write_oracle(home: Path, text: str) -> None:
    config = (home / CONFIG_FILE).read_text()
    (home / CONFIG_FILE).write_text(config[:config.index("[oracle]")] + "[oracle]\n" + text)


@pytest.mark.parametrize("text,field,reason", [
    ('source = "static"\nprices = { "SOL-PERP" = 100 }\n', "oracle.prices.SOL-PERP", "no market 'SOL-PERP' in genesis"),
    ('source = "static"\nprices = { "BTC-PERP" = "10000050" }\n', "oracle.prices.BTC-PERP", "tick grid"),
    ('source = "static"\ninterval_ms = 60000\nprices = { "ETH-PERP" = 10 }\n', "oracle.interval_ms", "stale"),
])
def test_load_home_refuses_static_prices_the_genesis_cannot_take(
    tmp_path: Path, text: str, field: str, reason: str,
) -> None:
    home = init_home(tmp_path / "h", "kabuto-test", genesis_doc=perp_genesis("kabuto-test", validators=ONE)).path
    write_oracle(home, text)
    with pytest.raises(ConfigError) as info:
        load_home(home)
    assert (info.value.field, reason in info.value.reason) == (field, True)
    assert str(info.value).startswith(f"{home / CONFIG_FILE}: {field}: ")


def test_load_home_ignores_prices_without_a_static_source(tmp_path: Path) -> None:
    home = init_home(tmp_path / "h", "kabuto-test").path
    write_oracle(home, 'source = "none"\nprices = { "SOL-PERP" = 100 }\n')
    assert load_home(home).config.oracle.source == "none"


def test_load_home_takes_static_prices_on_the_grid(tmp_path: Path) -> None:
    home = init_home(tmp_path / "h", "kabuto-test", genesis_doc=perp_genesis("kabuto-test", validators=ONE)).path
    write_oracle(home, 'source = "static"\nprices = { "ETH-PERP" = "4000010", "BTC-USD" = 7 }\n')
    assert load_home(home).config.oracle.prices == (("ETH-PERP", 4_000_010), ("BTC-USD", 7))


def test_load_home_refuses_chain_id_mismatch(tmp_path: Path) -> None:
    home = init_home(tmp_path / "h", "kabuto-test").path
    config = load_config(home / CONFIG_FILE)
    (home / CONFIG_FILE).write_text(render_config(replace(config, node=replace(config.node, chain_id="kabuto-x"))))
    with pytest.raises(ConfigError) as info:
        load_home(home)
    assert info.value.field == "node.chain_id" and "genesis.json" in info.value.reason
