"""The CLI end to end through `main([...])`: every command, and every refusal as one stderr line with exit 2."""

import json
from pathlib import Path

import pytest

from node.__main__ import main as console_main
from node.cli import EXIT_BAD_INPUT, main
from node.config import load_config
from node.home import CONFIG_FILE, GENESIS_FILE, VALIDATORS_FILE, load_home, require_public_keys
from node.keys import load_key, node_id


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kabuto: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    path = tmp_path / "home"
    assert run(capsys, "init", "--home", str(path), "--chain-id", "kabuto-test", "--moniker", "alpha")[0] == 0
    return path


def test_init(home: Path) -> None:
    loaded = load_home(home)
    assert loaded.config.node.moniker == "alpha" and loaded.genesis.params.chain_id == "kabuto-test"


def test_init_refuses_existing_home(home: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "init", "--home", str(home))
    assert code == EXIT_BAD_INPUT and "already initialised" in one_error_line(err)


def test_init_force(home: Path, capsys: pytest.CaptureFixture) -> None:
    key_before = (home / "node_key.json").read_bytes()
    assert run(capsys, "init", "--home", str(home), "--moniker", "beta", "--force")[0] == 0
    assert load_config(home / CONFIG_FILE).node.moniker == "beta"
    assert (home / "node_key.json").read_bytes() == key_before


def test_init_bad_chain_id(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "init", "--home", str(tmp_path / "h"), "--chain-id", "Bad_Chain")
    assert code == EXIT_BAD_INPUT and "node.chain_id" in one_error_line(err)


def test_keys_show_and_show_node_id(home: Path, capsys: pytest.CaptureFixture) -> None:
    node = node_id(load_key(home / "node_key.json"))
    validator = node_id(load_key(home / "validator_key.json"))
    code, out, _ = run(capsys, "keys", "show", "--home", str(home))
    assert code == 0 and f"node id: {node}" in out and f"validator address: {validator}" in out
    code, out, _ = run(capsys, "show-node-id", "--home", str(home))
    assert (code, out) == (0, node + "\n")


def test_keys_generate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "keys", "generate", "--home", str(tmp_path / "k"))
    assert code == 0
    assert f"node id: {node_id(load_key(tmp_path / 'k' / 'node_key.json'))}" in out


def test_keys_generate_refuses_overwrite(home: Path, capsys: pytest.CaptureFixture) -> None:
    before = (home / "validator_key.json").read_bytes()
    code, _, err = run(capsys, "keys", "generate", "--home", str(home))
    line = one_error_line(err)
    assert code == EXIT_BAD_INPUT and "node_key.json" in line and "refusing to overwrite" in line
    assert (home / "validator_key.json").read_bytes() == before


def test_keys_show_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "keys", "show", "--home", str(tmp_path))
    assert code == EXIT_BAD_INPUT and "node_key.json: file not found" in one_error_line(err)


def test_start_broken_config(home: Path, capsys: pytest.CaptureFixture) -> None:
    path = home / CONFIG_FILE
    path.write_text(path.read_text().replace("max_batch = 100", "max_batch = 0"))
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT
    assert one_error_line(err) == f"kabuto: error: {path}: rpc.max_batch: 0 is outside [1, 10000]"


def test_start_config_unknown_key(home: Path, capsys: pytest.CaptureFixture) -> None:
    path = home / CONFIG_FILE
    path.write_text(path.read_text().replace("[p2p]\n", "[p2p]\nseeds = []\n"))
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT and f"{path}: p2p.seeds: unknown key" in one_error_line(err)


def test_start_config_not_toml(home: Path, capsys: pytest.CaptureFixture) -> None:
    (home / CONFIG_FILE).write_text("[node\n")
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT and "not valid TOML" in one_error_line(err)


def test_start_broken_genesis(home: Path, capsys: pytest.CaptureFixture) -> None:
    path = home / GENESIS_FILE
    doc = json.loads(path.read_text())
    doc["assets"][0]["decimals"] = 60
    path.write_text(json.dumps(doc))
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT
    assert one_error_line(err) == f"kabuto: error: {path}: assets[0].decimals: 60 is outside [0, 18]"


def test_start_genesis_not_json(home: Path, capsys: pytest.CaptureFixture) -> None:
    (home / GENESIS_FILE).write_text("{\n")
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT and f"{home / GENESIS_FILE}: genesis: not valid JSON" in one_error_line(err)


def test_start_genesis_of_another_chain(home: Path, capsys: pytest.CaptureFixture) -> None:
    path = home / GENESIS_FILE
    path.write_text(path.read_text().replace('"kabuto-test"', '"kabuto-other"'))
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT and "node.chain_id" in one_error_line(err)


def test_start_broken_key(home: Path, capsys: pytest.CaptureFixture) -> None:
    path = home / "validator_key.json"
    path.write_text('{"type": "ed25519", "seed": "00"}')
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT and f"{path}: seed: must be 32 bytes" in one_error_line(err)


def test_start_key_too_open(home: Path, capsys: pytest.CaptureFixture) -> None:
    (home / "node_key.json").chmod(0o644)
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT and "chmod 600" in one_error_line(err)


def test_start_broken_validators(home: Path, capsys: pytest.CaptureFixture) -> None:
    (home / VALIDATORS_FILE).write_text("[]")
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT and VALIDATORS_FILE in one_error_line(err)


def test_start_missing_home(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "start", "--home", str(tmp_path / "nowhere"))
    assert code == EXIT_BAD_INPUT and "no such home directory" in one_error_line(err)


def test_reset(home: Path, capsys: pytest.CaptureFixture) -> None:
    (home / "data" / "CURRENT").write_text("x")
    assert run(capsys, "reset", "--home", str(home))[0] == 0
    assert list((home / "data").iterdir()) == []
    require_public_keys(load_home(home))  # what `start` loads first


def test_reset_refuses_non_home(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "reset", "--home", str(tmp_path))
    assert code == EXIT_BAD_INPUT and "not a node home" in one_error_line(err)


def test_localnet(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "localnet", "--dir", str(tmp_path / "net"), "--validators", "3", "--base-port", "31000")
    assert code == 0 and len(out.splitlines()) == 3
    homes = sorted((tmp_path / "net").iterdir())
    assert [h.name for h in homes] == ["node0", "node1", "node2"]
    for h in homes:
        loaded = load_home(h)
        require_public_keys(loaded)
        assert len(loaded.validators) == 3 and len(loaded.genesis.validators) == 3
    ids = [run(capsys, "show-node-id", "--home", str(h))[1].strip() for h in homes]
    assert load_config(homes[0] / CONFIG_FILE).p2p.peers == (f"{ids[1]}@127.0.0.1:31002", f"{ids[2]}@127.0.0.1:31004")


def test_localnet_bad_port(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "localnet", "--dir", str(tmp_path), "--base-port", "65534")
    assert code == EXIT_BAD_INPUT and "base_port" in one_error_line(err)


def test_usage_error_returns_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["frobnicate"]) == 2
    assert main([]) == 2
    assert main(["localnet"]) == 2  # --dir is required
    capsys.readouterr()


def test_help_returns_0(capsys: pytest.CaptureFixture) -> None:
    assert console_main(["--help"]) == 0
    assert "localnet" in capsys.readouterr().out


def test_os_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("not a directory")
    code, _, err = run(capsys, "init", "--home", str(tmp_path / "file" / "home"))
    assert code == EXIT_BAD_INPUT and str(tmp_path / "file") in one_error_line(err)


def test_home_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("KABUTO_HOME", str(tmp_path / "env-home"))
    assert run(capsys, "init")[0] == 0
    assert (tmp_path / "env-home" / CONFIG_FILE).is_file()


def test_start_refuses_otlp_tracing_without_its_exporter(home: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("opentelemetry.sdk")
    try:
        import opentelemetry.exporter.otlp  # noqa: F401
        pytest.skip("the OTLP exporter is installed here")
    except ImportError:
        pass
    path = home / CONFIG_FILE
    path.write_text(path.read_text().replace('tracing = "none"', 'tracing = "otlp"'))
    code, _, err = run(capsys, "start", "--home", str(home))
    assert code == EXIT_BAD_INPUT and "opentelemetry-exporter-otlp" in one_error_line(err)
