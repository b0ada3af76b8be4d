"""Seeded multi-validator simulation: the properties hold over 1,200+ schedules, and the checker can fail.

Every schedule is deterministic, so a failure message carries the `scripts/sim` command that replays it.
"""

import json

import pytest

from consensus import simulator_cli
from consensus.simulator import SplitMix64, make_schedule, run_schedule

SIZES = (1, 4, 7)
CHUNK = 100


def assert_all_ok(results):
    failures = [r for r in results if not r.ok]
    assert not failures, "\n".join(
        f"{r.replay_command}: {r.safety_violations[:3]} {r.liveness_failure}" for r in failures[:5])


def test_prng_matches_reference_splitmix64_vectors():
    assert SplitMix64(0).next_u64() == 0xE220A8397B1DCDAF
    r = SplitMix64(1234567)
    assert [r.next_u64() for _ in range(3)] == [6457827717110365317, 3203168211198807973, 9817491932198370423]


def test_same_seed_same_run():
    a = run_schedule(make_schedule(42, 7, 2), trace=True)
    b = run_schedule(make_schedule(42, 7, 2), trace=True)
    assert a.trace == b.trace and a.deliveries == b.deliveries and a.trace


@pytest.mark.parametrize("chunk", range(12))
def test_properties_hold_over_seeded_schedules(chunk):
    """12 x 100 schedules cycling n over 1, 4, 7 with the most tolerated byzantine validators, (n - 1) // 3."""
    results = []
    for seed in range(chunk * CHUNK, (chunk + 1) * CHUNK):
        n = SIZES[seed % 3]
        results.append(run_schedule(make_schedule(seed, n, (n - 1) // 3)))
    assert_all_ok(results)
    assert sum(r.heights_committed for r in results) == 3 * CHUNK


@pytest.mark.parametrize("kind", ["silent", "twins", "random", "double"])
def test_one_byzantine_of_four_each_kind(kind):
    results = [run_schedule(make_schedule(seed, 4, 1, kinds=(kind,))) for seed in range(10_000, 10_040)]
    assert_all_ok(results)


@pytest.mark.parametrize("kinds", [("twins", "twins"), ("twins", "double"), ("random", "silent"), ("double", "random")])
def test_two_byzantine_of_seven(kinds):
    results = [run_schedule(make_schedule(seed, 7, 2, kinds=kinds)) for seed in range(20_000, 20_025)]
    assert_all_ok(results)


def test_schedules_exercise_partitions_crashes_and_torn_writes():
    results = [run_schedule(make_schedule(seed, 4, 1)) for seed in range(30_000, 30_060)]
    assert_all_ok(results)
    assert sum(1 for r in results if r.schedule.partitions) >= 10
    assert sum(r.restarts for r in results) >= 10
    assert sum(r.torn_restarts for r in results) >= 1
    assert sum(1 for r in results if r.schedule.power_changes) >= 5
    assert max(r.max_round for r in results) >= 2


def test_double_voters_are_caught_as_evidence():
    results = [run_schedule(make_schedule(seed, 4, 1, kinds=("double",))) for seed in range(40_000, 40_010)]
    assert_all_ok(results)
    assert all(r.evidence > 0 for r in results)


def test_checker_detects_safety_violation_with_two_byzantine_of_four():
    """Twins at 2/4 (half the power faulty) break agreement on some seeds: the checker must see it."""
    results = [run_schedule(make_schedule(seed, 4, 2, kinds=("twins", "twins"))) for seed in range(40)]
    broken = [r for r in results if r.safety_violations]
    assert broken, "no schedule with 2 of 4 byzantine broke safety: the checker may be blind"
    assert any("agreement" in v for r in broken for v in r.safety_violations)


def test_checker_detects_liveness_failure_with_two_silent_of_four():
    result = run_schedule(make_schedule(7, 4, 2, kinds=("silent", "silent")))
    assert result.liveness_failure and not result.safety_violations
    assert "--seed 7" in result.replay_command


def test_failing_schedule_trace_is_replayable():
    seed = next(s for s in range(40) if not run_schedule(make_schedule(s, 4, 2, kinds=("twins", "twins"))).ok)
    first = run_schedule(make_schedule(seed, 4, 2, kinds=("twins", "twins")), trace=True)
    second = run_schedule(make_schedule(seed, 4, 2, kinds=("twins", "twins")), trace=True)
    assert first.trace == second.trace and first.safety_violations == second.safety_violations


def test_cli_json_last_line(capsys):
    code = simulator_cli.main(["--schedules", "300", "--validators", "4", "--byzantine", "1", "--json"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert code == 0
    assert summary["schedules"] == 300 and summary["safety_violations"] == 0
    assert summary["liveness_failures"] == 0 and summary["heights_committed"] == 900


def test_cli_exit_status_reports_failures(capsys):
    code = simulator_cli.main(["--schedules", "3", "--validators", "4", "--byzantine", "2", "--kinds", "silent",
                               "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and summary["liveness_failures"] == 3


@pytest.mark.slow
def test_soak_ten_thousand_schedules():
    """Soak run for scripts (`scripts/test -m slow tests/consensus`), not CI: about 75 s of one core."""
    results = []
    for seed in range(100_000, 110_000):
        n = SIZES[seed % 3]
        result = run_schedule(make_schedule(seed, n, (n - 1) // 3))
        if not result.ok:
            results.append(result)
    assert_all_ok(results)
