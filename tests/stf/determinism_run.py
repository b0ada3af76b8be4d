"""Apply a seeded random flow and print one state root per block (run as a script by test_determinism.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from random_flow import make_flow_chain, random_blocks  # noqa: E402


def run(seed: int, blocks: int) -> list[str]:
    chain = make_flow_chain()
    return [chain.block(*txs).state_root.hex() for txs in random_blocks(seed, chain, blocks, 10)]


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]), int(sys.argv[2]))))
