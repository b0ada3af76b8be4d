"""Command line for the consensus simulator: `scripts/sim [options]` (see `--help`).

Schedule i runs seed `--seed + i`. Without `--validators`, n = (1, 4, 7)[seed % 3], so a long run split into
seed ranges runs exactly the same schedules; without `--byzantine`, each n runs with the most faulty validators
the protocol tolerates, (n - 1) // 3. Each failing schedule prints its violations, the command that replays it
and 40 lines of its trace, up to the first safety violation or the end (the schedule is run again with tracing;
`--trace` prints every line). With `--json` the last line of output is one JSON object with at least
`schedules`, `heights_committed`, `safety_violations` and `liveness_failures`. The exit status is 1 when any
property failed.

No wall-clock timing here (the engine package has no clock); `scripts/bench consensus` measures speed.
"""

from __future__ import annotations

import argparse
import json
import sys

from consensus.simulator import BYZANTINE_KINDS, make_schedule, run_schedule

DEFAULT_SIZES = (1, 4, 7)
TRACE_TAIL = 40


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/sim", description="Run seeded consensus schedules and check properties.")
    p.add_argument("--schedules", type=int, default=100)
    p.add_argument("--validators", type=int, default=0, help="n for every schedule (default: cycle 1, 4, 7)")
    p.add_argument("--byzantine", type=int, default=-1, help="faulty validators (default: (n - 1) // 3)")
    p.add_argument("--kinds", default="", help=f"comma list forcing byzantine kinds from {','.join(BYZANTINE_KINDS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heights", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--trace", action="store_true", help="print the full trace of failing schedules")
    return p.parse_args(argv)


def schedule_shape(args: argparse.Namespace, seed: int) -> tuple[int, int]:
    n = args.validators or DEFAULT_SIZES[seed % len(DEFAULT_SIZES)]
    byzantine = args.byzantine if args.byzantine >= 0 else (n - 1) // 3
    return n, min(byzantine, n)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    totals = {"schedules": 0, "heights_committed": 0, "safety_violations": 0, "liveness_failures": 0,
              "deliveries": 0, "evidence_reported": 0, "max_round": 0}
    failing: list[int] = []
    for i in range(args.schedules):
        seed = args.seed + i
        n, byzantine = schedule_shape(args, seed)
        forced = tuple(kinds[j % len(kinds)] for j in range(byzantine)) if kinds else ()
        result = run_schedule(make_schedule(seed, n, byzantine, args.heights, forced), trace=args.trace)
        totals["schedules"] += 1
        totals["heights_committed"] += result.heights_committed
        totals["safety_violations"] += len(result.safety_violations)
        totals["liveness_failures"] += bool(result.liveness_failure)
        totals["deliveries"] += result.deliveries
        totals["evidence_reported"] += result.evidence
        totals["max_round"] = max(totals["max_round"], result.max_round)
        if not result.ok:
            failing.append(seed)
            if not args.trace:  # runs are deterministic: run the failing schedule again, traced
                result = run_schedule(result.schedule, trace=True)
            report_failure(result, args.trace)
    totals["failing_seeds"] = failing[:50]
    ok = not failing
    if args.json:
        print(json.dumps(totals, sort_keys=True))
    else:
        print(f"{totals['schedules']} schedules, {totals['heights_committed']} heights committed, "
              f"{totals['safety_violations']} safety violations, {totals['liveness_failures']} liveness failures")
    return 0 if ok else 1


def report_failure(result, trace: bool) -> None:
    s = result.schedule
    print(f"FAIL seed {s.seed} n={s.n} byzantine={list(s.byzantine)} gst={s.gst_ms}ms", file=sys.stderr)
    for line in result.safety_violations[:10]:
        print(f"  safety: {line}", file=sys.stderr)
    if result.liveness_failure:
        print(f"  liveness: {result.liveness_failure}", file=sys.stderr)
    print(f"  replay: {result.replay_command}" + (f" --kinds {','.join(s.byzantine)}" if s.byzantine else ""),
          file=sys.stderr)
    end = result.violation_at if result.violation_at >= 0 else len(result.trace)
    lines = result.trace if trace else result.trace[max(0, end - TRACE_TAIL):end]
    where = "up to the first violation" if result.violation_at >= 0 else "at the end"
    print(f"  trace ({'all' if trace else f'{len(lines)} lines {where}'}, {len(result.trace)} in all):",
          file=sys.stderr)
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
