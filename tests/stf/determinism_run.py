"""Apply a seeded random flow and print one state root per block (run as a script by test_determinism.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from perp_flow import BLOCK_MS, make_perp_flow_chain, random_perp_blocks  # noqa: E402
from random_flow import make_flow_chain, random_blocks  # noqa: E402


def run(seed: int, blocks: int) -> list[str]:
    chain = make_flow_chain()
    return [chain.block(*txs).state_root.hex() for txs in random_blocks(seed, chain, blocks, 10)]


def run_perp(seed: int, blocks: int) -> list[str]:
    """The perp flow: funding, triggers and liquidations sort positions and accounts; any set or hash order
    leaking into them would change a root."""
    chain = make_perp_flow_chain(seed)
    return [chain.block(*txs, advance_ms=BLOCK_MS).state_root.hex()
            for txs in random_perp_blocks(seed, chain, blocks, 10)]


if __name__ == "__main__":
    flow = run_perp if len(sys.argv) > 3 and sys.argv[3] == "perp" else run
    print("\n".join(flow(int(sys.argv[1]), int(sys.argv[2]))))
