"""The same blocks give the same state roots in fresh processes with different hash seeds (set and dict order
of str and bytes keys changes with PYTHONHASHSEED, so any iteration over them would show here)."""

import os
import subprocess
import sys
from pathlib import Path

from determinism_run import run, run_perp

SCRIPT = Path(__file__).resolve().parent / "determinism_run.py"


def roots_in_fresh_process(seed: int, blocks: int, hash_seed: str, flow: str = "spot") -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(seed), str(blocks), flow], env=env, capture_output=True, text=True,
        check=True,
    )
    return out.stdout.split()


def test_same_blocks_same_roots_across_processes_and_hash_seeds() -> None:
    here = run(11, 25)
    assert len(here) == 25 and len(set(here)) == 25
    assert roots_in_fresh_process(11, 25, "1") == here
    assert roots_in_fresh_process(11, 25, "4242") == here


def test_different_blocks_give_different_roots() -> None:
    assert run(11, 3)[-1] != run(12, 3)[-1]


def test_perp_flow_same_roots_across_processes_and_hash_seeds() -> None:
    here = run_perp(8, 40)  # seed 8 liquidates through the book, by the backstop and by ADL
    assert len(here) == 40 and len(set(here)) == 40
    assert roots_in_fresh_process(8, 40, "7", "perp") == here
    assert roots_in_fresh_process(8, 40, "90210", "perp") == here
