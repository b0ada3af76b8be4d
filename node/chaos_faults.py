"""The chaos campaign's fault plan and its timing arithmetic: pure functions of a seed and of measured times.

Contract:

- `make_schedule(seed, duration_s, validators, kinds)` returns the planned faults, in time order: the same
  arguments give the same plan. Each `PlannedFault` starts at `at_s` (seconds from the start of the load),
  holds for `hold_s`, then is healed and followed by at least `settle_s` of calm (plus the start-up cost of the
  restarts the fault needs, `RESTART_COST_S`) before the next one starts, so faults never overlap. The first
  faults cover every kind of `kinds` once, in a seeded order; later ones are drawn with `WEIGHTS` (a 2-2 split
  only now and then). The last one ends at least `tail_s` before `duration_s`.
- Every fault but a split impairs exactly one validator (`targets`, one index), so with 4 validators 3 stay live
  and keep committing. A split cuts `targets` from `others` (halves of all validators): neither side holds more
  than 2/3 of the power, so it must halt commits until healed (`HALTING`).
- `param`: the delay in ms (`delay`), the clock skew in ms, + or - (`skew`), 0 otherwise.
- `compute_max_stall(commit_times, halts, start, end)`: the longest stretch without a commit in [start, end],
  not counting time inside an expected halt (a split's window, from its start to its heal): the longest piece
  of the timeline between two consecutive commits (or the window's ends) left once the halts are taken out.

Kinds: `kill` (kill -9, then restart), `stop` (SIGSTOP, then SIGCONT), `isolate` (partition one validator from
the others), `split` (two against two), `delay` (hold every byte on one validator's links), `skew` (restart one
validator with `[debug] clock_skew_ms`, later without), `byzantine` (restart one with `[debug] double_sign =
true` for a window, later without).
"""

import math
import random
from dataclasses import dataclass

KINDS = ("kill", "stop", "isolate", "split", "delay", "skew", "byzantine")
HALTING = frozenset({"split"})
HOLD_S = {"kill": (2.0, 4.0), "stop": (2.0, 4.0), "isolate": (3.0, 5.0), "split": (3.0, 4.5),
          "delay": (3.0, 5.0), "skew": (4.0, 6.0), "byzantine": (5.0, 8.0)}
WEIGHTS = {"kill": 3, "stop": 3, "isolate": 3, "split": 1, "delay": 2, "skew": 1, "byzantine": 1}
RESTART_COST_S = {"kill": 2.0, "skew": 5.0, "byzantine": 5.0}  # start-up and catch-up of the restarts
SETTLE_S = (2.0, 3.0)
DELAYS_MS = (150, 250, 400, 600)
SKEWS_MS = (-5000, 5000)


@dataclass(frozen=True, slots=True)
class PlannedFault:
    kind: str
    at_s: float
    hold_s: float
    targets: tuple[int, ...]
    others: tuple[int, ...] = ()
    param: int = 0
    settle_s: float = 2.0

    @property
    def end_s(self) -> float:
        return self.at_s + self.hold_s

    def busy_until_s(self) -> float:
        """When the next fault may start: healed, settled, and the restarts paid for."""
        return self.end_s + RESTART_COST_S.get(self.kind, 0.0) + self.settle_s


def make_fault(rng: random.Random, kind: str, at_s: float, validators: int) -> PlannedFault:
    low, high = HOLD_S[kind]
    hold_s = round(rng.uniform(low, high), 2)
    settle_s = round(rng.uniform(*SETTLE_S), 2)
    if kind == "split":
        nodes = list(range(validators))
        rng.shuffle(nodes)
        half = validators // 2
        return PlannedFault(kind, at_s, hold_s, tuple(sorted(nodes[:half])), tuple(sorted(nodes[half:])), 0,
                            settle_s)
    param = rng.choice(DELAYS_MS) if kind == "delay" else rng.choice(SKEWS_MS) if kind == "skew" else 0
    return PlannedFault(kind, at_s, hold_s, (rng.randrange(validators),), (), param, settle_s)


def make_schedule(
    seed: int, duration_s: float, validators: int, kinds: tuple[str, ...] = KINDS, start_s: float = 1.0,
    tail_s: float = 3.0,
) -> list[PlannedFault]:
    """The seeded fault plan (see the module contract)."""
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind {unknown[0]!r} (known: {', '.join(KINDS)})")
    if validators < 4:
        raise ValueError("a fault campaign needs at least 4 validators (one impaired, more than 2/3 live)")
    rng = random.Random(seed)
    first = list(kinds)
    rng.shuffle(first)
    population = [kind for kind in KINDS if kind in kinds]
    weights = [WEIGHTS[kind] for kind in population]
    plan: list[PlannedFault] = []
    at_s = start_s
    while population:
        kind = first.pop(0) if first else rng.choices(population, weights)[0]
        fault = make_fault(rng, kind, math.ceil(at_s * 100) / 100, validators)
        if fault.end_s + RESTART_COST_S.get(kind, 0.0) > duration_s - tail_s:
            break
        plan.append(fault)
        at_s = fault.busy_until_s()
    return plan


def impaired_at(plan: list[PlannedFault], t: float) -> set[int]:
    """The validators impaired by the plan at time `t` (a split impairs every validator it separates)."""
    nodes: set[int] = set()
    for fault in plan:
        if fault.at_s <= t < fault.end_s:
            nodes.update(fault.targets)
            nodes.update(fault.others)
    return nodes


def compute_max_stall(
    commit_times: list[float], halts: list[tuple[float, float]], start: float, end: float,
) -> float:
    """The longest time without a commit in [start, end], expected halts taken out (see the module contract)."""
    points = [start] + sorted(t for t in commit_times if start < t < end) + [end]
    windows = sorted((max(s, start), min(e, end)) for s, e in halts if e > s)
    longest = 0.0
    for a, b in zip(points, points[1:]):
        cursor = a
        for s, e in windows:
            if e <= cursor or s >= b:
                continue
            longest = max(longest, s - cursor)
            cursor = max(cursor, e)
        longest = max(longest, b - cursor)
    return round(longest, 3)


def compute_resume_s(commit_times: list[float], healed_at: float) -> float | None:
    """Seconds from a heal to the first commit after it (None: none came)."""
    later = [t for t in commit_times if t > healed_at]
    return round(min(later) - healed_at, 3) if later else None
