"""The key-value conformance suite: every test runs against `MemoryKV` and `LevelDBKV` alike.

LevelDB-only behaviour (persistence across reopen, the directory lock, open errors) is tested at the end.
"""

import random
import subprocess
import sys

import pytest

from node.storage.kv import (
    BatchFinished, KeyValueStore, LevelDBKV, MemoryKV, StoreClosed, StoreLocked, StoreOpenFailed,
    compute_prefix_end,
)


@pytest.fixture(params=["memory", "leveldb"])
def kv(request, tmp_path) -> KeyValueStore:
    store = MemoryKV() if request.param == "memory" else LevelDBKV(tmp_path / "db")
    yield store
    store.close()


def fill(kv: KeyValueStore, keys: list[bytes]) -> None:
    with kv.write_batch() as batch:
        for key in keys:
            batch.put(key, b"v" + key)


# --- single operations ----------------------------------------------------------------------------------------

def test_put_get_has_delete(kv):
    assert kv.get(b"k") is None and not kv.has(b"k")
    kv.put(b"k", b"1")
    assert kv.get(b"k") == b"1" and kv.has(b"k")
    kv.put(b"k", b"2")
    assert kv.get(b"k") == b"2"
    kv.delete(b"k")
    assert kv.get(b"k") is None and not kv.has(b"k")


def test_empty_value_is_a_value(kv):
    kv.put(b"k", b"")
    assert kv.get(b"k") == b"" and kv.has(b"k")


def test_delete_of_absent_key_is_not_an_error(kv):
    kv.delete(b"absent")
    assert kv.get(b"absent") is None


def test_binary_keys_and_values(kv):
    key, value = bytes(range(256)), bytes(reversed(range(256))) * 100
    kv.put(key, value)
    assert kv.get(key) == value


# --- ordered iteration ----------------------------------------------------------------------------------------

KEYS = [b"a", b"a\x00", b"a\x01", b"a\xff", b"a\xff\xff", b"ab", b"b", b"\xff", b"\xff\xff\x00", b"\x00"]


def test_iterate_all_in_bytewise_order(kv):
    fill(kv, KEYS)
    assert [k for k, _ in kv.iterate()] == sorted(KEYS)
    assert all(v == b"v" + k for k, v in kv.iterate())


def test_iterate_prefix_is_exact(kv):
    fill(kv, KEYS)
    assert [k for k, _ in kv.iterate(b"a")] == [b"a", b"a\x00", b"a\x01", b"ab", b"a\xff", b"a\xff\xff"]
    assert [k for k, _ in kv.iterate(b"a\xff")] == [b"a\xff", b"a\xff\xff"]
    assert [k for k, _ in kv.iterate(b"\xff")] == [b"\xff", b"\xff\xff\x00"]
    assert list(kv.iterate(b"c")) == []


def test_iterate_reverse(kv):
    fill(kv, KEYS)
    assert [k for k, _ in kv.iterate(b"a", reverse=True)] == [b"a\xff\xff", b"a\xff", b"ab", b"a\x01", b"a\x00", b"a"]


def test_iterate_reverse_when_the_range_holds_only_its_lower_bound(kv):
    # plyvel's own ranged reverse iterator returns nothing here; the backend must not
    fill(kv, [b"xa", b"z"])
    assert [k for k, _ in kv.iterate(b"xa", reverse=True)] == [b"xa"]
    assert [k for k, _ in kv.iterate(start=b"xa", stop=b"xb", reverse=True)] == [b"xa"]
    assert [k for k, _ in kv.iterate(b"z", reverse=True)] == [b"z"]
    assert [k for k, _ in kv.iterate(reverse=True)] == [b"z", b"xa"]


def test_iterate_start_inclusive_stop_exclusive(kv):
    fill(kv, KEYS)
    assert [k for k, _ in kv.iterate(b"a", start=b"a\x01", stop=b"a\xff\xff")] == [b"a\x01", b"ab", b"a\xff"]
    assert [k for k, _ in kv.iterate(start=b"b")] == [b"b", b"\xff", b"\xff\xff\x00"]
    assert [k for k, _ in kv.iterate(stop=b"a\x00")] == [b"\x00", b"a"]
    assert list(kv.iterate(b"a", start=b"b")) == []
    assert list(kv.iterate(start=b"b", stop=b"a")) == []


def test_iterate_height_keys_sort_numerically(kv):
    heights = [0, 1, 255, 256, 65535, 2**32, 2**63]
    fill(kv, [b"B" + h.to_bytes(8, "big") for h in reversed(heights)])
    assert [int.from_bytes(k[1:], "big") for k, _ in kv.iterate(b"B")] == heights


def test_iterator_view_is_fixed_when_created(kv):
    fill(kv, [b"p1", b"p2"])
    pairs = kv.iterate(b"p")
    kv.put(b"p3", b"new")
    kv.delete(b"p1")
    assert [k for k, _ in pairs] == [b"p1", b"p2"]


def test_compute_prefix_end():
    assert compute_prefix_end(b"") is None
    assert compute_prefix_end(b"\xff\xff") is None
    assert compute_prefix_end(b"a") == b"b"
    assert compute_prefix_end(b"a\xff") == b"b"


# --- batches --------------------------------------------------------------------------------------------------

def test_batch_invisible_until_commit(kv):
    batch = kv.write_batch()
    batch.put(b"x", b"1")
    assert kv.get(b"x") is None
    batch.commit()
    assert kv.get(b"x") == b"1"


def test_batch_operations_apply_in_order(kv):
    kv.put(b"gone", b"0")
    with kv.write_batch(sync=True) as batch:
        batch.put(b"k", b"1")
        batch.delete(b"k")
        batch.put(b"j", b"1")
        batch.put(b"j", b"2")
        batch.delete(b"gone")
    assert kv.get(b"k") is None and kv.get(b"j") == b"2" and kv.get(b"gone") is None


def test_batch_exception_before_commit_leaves_nothing(kv):
    kv.put(b"keep", b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with kv.write_batch() as batch:
            batch.put(b"new", b"1")
            batch.put(b"keep", b"changed")
            batch.delete(b"keep")
            raise RuntimeError("boom")
    assert kv.get(b"new") is None and kv.get(b"keep") == b"old"
    assert [k for k, _ in kv.iterate()] == [b"keep"]


def test_batch_discard_leaves_nothing(kv):
    batch = kv.write_batch()
    batch.put(b"x", b"1")
    batch.discard()
    assert kv.get(b"x") is None


def test_explicit_commit_inside_context_commits_once(kv):
    with kv.write_batch() as batch:
        batch.put(b"x", b"1")
        batch.commit()
    assert kv.get(b"x") == b"1"


def test_invalid_batch_use_after_commit(kv):
    batch = kv.write_batch()
    batch.commit()
    with pytest.raises(BatchFinished):
        batch.put(b"x", b"1")
    with pytest.raises(BatchFinished):
        batch.delete(b"x")
    with pytest.raises(BatchFinished):
        batch.commit()


def test_invalid_batch_commit_after_discard(kv):
    batch = kv.write_batch()
    batch.put(b"x", b"1")
    batch.discard()
    with pytest.raises(BatchFinished):
        batch.commit()
    assert kv.get(b"x") is None


# --- model-based: random operations against a dict --------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_random_operations_match_a_dict_model(kv, seed):
    """Puts, deletes and batches (committed, discarded, aborted) over a small key space that shares prefixes;
    after each step the store and the model agree on every prefix scan, forwards and backwards."""
    rng = random.Random(seed)
    alphabet = [b"", b"\x00", b"a", b"ab", b"\xff"]
    keys = sorted({rng.choice(alphabet) + rng.choice(alphabet) + rng.choice(alphabet) for _ in range(40)} - {b""})
    model: dict[bytes, bytes] = {}
    for step in range(150):
        pending = dict(model)
        batch = kv.write_batch()
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(keys)
            if rng.random() < 0.3:
                batch.delete(key)
                pending.pop(key, None)
            else:
                value = rng.randbytes(rng.randint(0, 3))
                batch.put(key, value)
                pending[key] = value
        outcome = rng.random()
        if outcome < 0.8:
            batch.commit()
            model = pending
        elif outcome < 0.9:
            batch.discard()
        else:
            with pytest.raises(ZeroDivisionError):
                with batch:
                    1 // 0
        prefix = rng.choice(alphabet) + rng.choice(alphabet)
        expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
        assert list(kv.iterate(prefix)) == expected, step
        assert list(kv.iterate(prefix, reverse=True)) == expected[::-1], step
        probe = rng.choice(keys)
        assert kv.get(probe) == model.get(probe)


# --- invalid arguments and closed stores ----------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["text", bytearray(b"k"), memoryview(b"k"), 1, None])
def test_invalid_key_type(kv, bad):
    calls = [lambda: kv.get(bad), lambda: kv.put(bad, b"v"), lambda: kv.delete(bad), lambda: kv.has(bad),
             lambda: kv.iterate(bad)]
    if bad is not None:  # None is a valid start or stop: no bound
        calls += [lambda: kv.iterate(start=bad), lambda: kv.iterate(stop=bad)]
    for call in calls:
        with pytest.raises(TypeError, match="must be bytes"):
            call()


@pytest.mark.parametrize("bad", ["text", bytearray(b"v"), 1, None])
def test_invalid_value_type(kv, bad):
    with pytest.raises(TypeError, match="value must be bytes"):
        kv.put(b"k", bad)
    batch = kv.write_batch()
    with pytest.raises(TypeError, match="value must be bytes"):
        batch.put(b"k", bad)
    assert kv.get(b"k") is None


def test_invalid_use_after_close(kv):
    kv.put(b"k", b"v")
    batch = kv.write_batch()
    batch.put(b"k2", b"v")
    kv.close()
    assert kv.closed
    kv.close()  # idempotent
    for call in (lambda: kv.get(b"k"), lambda: kv.put(b"k", b"v"), lambda: kv.delete(b"k"), lambda: kv.has(b"k"),
                 lambda: kv.iterate(), lambda: kv.write_batch(), batch.commit):
        with pytest.raises(StoreClosed, match="closed"):
            call()


def test_invalid_iteration_continued_after_close(kv):
    fill(kv, [b"a", b"b", b"c"])
    pairs = kv.iterate()
    assert next(pairs)[0] == b"a"
    kv.close()
    with pytest.raises(StoreClosed):
        next(pairs)


def test_context_manager_closes(tmp_path):
    with MemoryKV() as kv:
        kv.put(b"k", b"v")
    assert kv.closed
    with LevelDBKV(tmp_path / "db") as db:
        db.put(b"k", b"v")
    assert db.closed


# --- LevelDB only ---------------------------------------------------------------------------------------------

def test_leveldb_persists_across_reopen(tmp_path):
    path = tmp_path / "db"
    with LevelDBKV(path) as db:
        fill(db, KEYS)
        with db.write_batch(sync=True) as batch:
            batch.delete(b"b")
    with LevelDBKV(path, create=False) as db:
        assert [k for k, _ in db.iterate()] == sorted(set(KEYS) - {b"b"})
        assert db.get(b"a") == b"va"


def test_leveldb_creates_parent_directories(tmp_path):
    with LevelDBKV(tmp_path / "home" / "data" / "chain") as db:
        db.put(b"k", b"v")
    assert (tmp_path / "home" / "data" / "chain").is_dir()


def test_invalid_leveldb_locked_directory(tmp_path):
    path = tmp_path / "db"
    with LevelDBKV(path):
        with pytest.raises(StoreLocked, match=str(path)):
            LevelDBKV(path)
    with LevelDBKV(path) as db:  # the lock is released on close
        db.put(b"k", b"v")


def test_invalid_leveldb_locked_by_another_process(tmp_path):
    path = tmp_path / "db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from node.storage.kv import LevelDBKV; db = LevelDBKV(sys.argv[1]); "
         "print('open', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "open\n"
        with pytest.raises(StoreLocked, match=f"{path} is locked: another node process"):
            LevelDBKV(path)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    LevelDBKV(path).close()


def test_invalid_leveldb_missing_directory_without_create(tmp_path):
    with pytest.raises(StoreOpenFailed, match=str(tmp_path / "absent")):
        LevelDBKV(tmp_path / "absent", create=False)


def test_invalid_leveldb_empty_directory_without_create(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreOpenFailed, match="does not exist"):
        LevelDBKV(tmp_path / "empty", create=False)


def test_invalid_leveldb_path_is_a_file(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreOpenFailed, match=str(tmp_path / "file")):
        LevelDBKV(tmp_path / "file")
