"""The `kabuto` / `python -m node` command line.

Usage:

    kabuto init --home H [--chain-id ID] [--moniker NAME] [--force]
    kabuto keys generate --home H          create node_key.json and validator_key.json (never overwrites)
    kabuto keys show --home H              print the node id and the validator address
    kabuto show-node-id --home H           print the node id only (for peer strings: nodeid@host:port)
    kabuto localnet --dir D [--validators N] [--base-port P] [--chain-id ID]
    kabuto reset --home H                  wipe data/ and wal/, keep keys, config and genesis
    kabuto start --home H                  run the validator until SIGINT/SIGTERM (node/validator.py)
    kabuto replay --home H [--snapshot N]  re-execute the stored blocks from a snapshot, check every app hash

Contract:

- `main(argv=None) -> int` returns the exit code and never raises for a bad input: every refused config,
  genesis, validator set or key file, and every refused command (a home that exists, a key that exists), or an
  OS error (permission denied), prints ONE line to stderr,
  `kabuto: error: <file>: <field>: <reason>`, and returns 2 (argparse's usage errors are 2 as well). No traceback.
- Success prints to stdout and returns 0.
- `start` loads and checks the home, then runs the validator process (`node.validator.run_node`) until SIGINT or
  SIGTERM and returns 0 after a clean stop. A fatal error while running (a decided block that does not apply on
  this node's state, a damaged store) prints one line `kabuto: error: ...` and returns 3: the node stops rather
  than fork.
- `replay` loads the oldest stored snapshot (or `--snapshot N`), re-executes every later stored block through the
  STF and checks each block hash and app hash against the stored ones; it prints the range and the final app
  hash and returns 0, or prints the first mismatch and returns 3. The node must be stopped (LevelDB lock).
- The home directory comes from `--home`, else `$KABUTO_HOME`, else `~/.kabuto`.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from node.config import ConfigError
from node.home import (
    NODE_KEY_FILE, VALIDATOR_KEY_FILE, HomeError, init_home, load_home, make_localnet, reset_home,
)
from node.keys import KeyFileError, generate_key, load_key, node_id

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_FATAL = 3
REFUSALS = (ConfigError, HomeError, KeyFileError)


def default_home() -> str:
    return os.environ.get("KABUTO_HOME") or str(Path.home() / ".kabuto")


def fail(message: str) -> int:
    print(f"kabuto: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_init(args: argparse.Namespace) -> int:
    home = init_home(args.home, args.chain_id, args.moniker, force=args.force)
    print(f"initialised {home.path} for chain {home.genesis.params.chain_id}")
    print(f"node id: {node_id(home.node_key)}")
    print(f"validator address: {node_id(home.validator_key)}")
    return EXIT_OK


def cmd_keys_generate(args: argparse.Namespace) -> int:
    home = Path(args.home)
    paths = [home / NODE_KEY_FILE, home / VALIDATOR_KEY_FILE]
    for path in paths:
        if path.exists():
            raise KeyFileError(path, None, "already exists; refusing to overwrite a key")
    home.mkdir(parents=True, exist_ok=True)
    node_key, validator_key = (generate_key(path) for path in paths)
    print(f"node id: {node_id(node_key)}")
    print(f"validator address: {node_id(validator_key)}")
    return EXIT_OK


def cmd_keys_show(args: argparse.Namespace) -> int:
    home = Path(args.home)
    node_key, validator_key = load_key(home / NODE_KEY_FILE), load_key(home / VALIDATOR_KEY_FILE)
    print(f"node id: {node_id(node_key)}")
    print(f"node public key: {node_key.public_key.hex()}")
    print(f"validator address: {node_id(validator_key)}")
    print(f"validator public key: {validator_key.public_key.hex()}")
    return EXIT_OK


def cmd_show_node_id(args: argparse.Namespace) -> int:
    print(node_id(load_key(Path(args.home) / NODE_KEY_FILE)))
    return EXIT_OK


def cmd_localnet(args: argparse.Namespace) -> int:
    homes = make_localnet(args.dir, args.validators, args.base_port, args.chain_id)
    for home in homes:
        print(f"{home}  node id {node_id(load_key(home / NODE_KEY_FILE))}")
    return EXIT_OK


def cmd_reset(args: argparse.Namespace) -> int:
    reset_home(args.home)
    print(f"reset {args.home}: data/ and wal/ are empty; keys, config and genesis kept")
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    from node.app import AppHashMismatch
    from node.storage import StorageError
    from node.tracing import TracingUnavailable
    from node.validator import run_node

    home = load_home(args.home)
    try:
        run_node(home)
    except TracingUnavailable as exc:
        return fail(str(exc))
    except (AppHashMismatch, StorageError, ExceptionGroup) as exc:
        fatal = find_exception(exc, (AppHashMismatch, StorageError))
        if fatal is None:
            os_error = find_exception(exc, (OSError,))
            if os_error is None:
                raise
            return fail(f"start: {os_error}")  # e.g. the P2P port is taken
        print(f"kabuto: error: {' '.join(str(fatal).split())}", file=sys.stderr)
        return EXIT_FATAL
    return EXIT_OK


def find_exception(exc: BaseException, kinds: tuple[type, ...]) -> BaseException | None:
    """The first exception of `kinds` in `exc` or, depth first, in the exception groups it holds."""
    if isinstance(exc, kinds):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = find_exception(inner, kinds)
        if found is not None:
            return found
    return None


def cmd_replay(args: argparse.Namespace) -> int:
    from node.storage import StorageError
    from node.validator import open_store

    home = load_home(args.home)
    store = open_store(home)
    try:
        snapshots = store.list_snapshots()
        snapshot = args.snapshot if args.snapshot is not None else (snapshots[0].height if snapshots else None)
        state = store.replay(home.genesis.params, snapshot_height=snapshot)
    except StorageError as exc:
        print(f"kabuto: error: replay: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FATAL
    finally:
        store.close()
    print(f"replayed blocks {snapshot + 1}..{state.height} from snapshot {snapshot}: every block hash and app hash "
          f"matches; app hash {state.merkle.root().hex()}")
    return EXIT_OK


def _add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", default=default_home(),
                        help="node home directory (default: $KABUTO_HOME, else ~/.kabuto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kabuto", description="Kabuto validator node")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create a home directory: config, genesis, keys")
    _add_home(init)
    init.add_argument("--chain-id", default="kabuto-localnet")
    init.add_argument("--moniker", default="kabuto-node")
    init.add_argument("--force", action="store_true", help="rewrite config and genesis (never keys)")
    init.set_defaults(run=cmd_init)

    keys = commands.add_parser("keys", help="node and validator keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    for name, run, text in (("generate", cmd_keys_generate, "create both key files"),
                            ("show", cmd_keys_show, "print the node id and the validator address")):
        sub = key_commands.add_parser(name, help=text)
        _add_home(sub)
        sub.set_defaults(run=run)

    show = commands.add_parser("show-node-id", help="print the node id")
    _add_home(show)
    show.set_defaults(run=cmd_show_node_id)

    localnet = commands.add_parser("localnet", help="create N validator homes that peer with each other")
    localnet.add_argument("--dir", required=True)
    localnet.add_argument("--validators", type=int, default=4)
    localnet.add_argument("--base-port", type=int, default=26600)
    localnet.add_argument("--chain-id", default="kabuto-localnet")
    localnet.set_defaults(run=cmd_localnet)

    reset = commands.add_parser("reset", help="wipe data/ and wal/")
    _add_home(reset)
    reset.set_defaults(run=cmd_reset)

    start = commands.add_parser("start", help="run the validator until SIGINT/SIGTERM")
    _add_home(start)
    start.set_defaults(run=cmd_start)

    replay = commands.add_parser("replay", help="re-execute stored blocks from a snapshot and check every app hash")
    _add_home(replay)
    replay.add_argument("--snapshot", type=int, default=None, help="snapshot height (default: the oldest kept)")
    replay.set_defaults(run=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (argparse printed them) return 2, --help returns 0
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except REFUSALS as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(": ".join(str(part) for part in (exc.filename, exc.strerror or exc) if part))
