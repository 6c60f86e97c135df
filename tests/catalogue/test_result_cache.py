"""The result cache: least recently used first, bounded by bytes, safe across threads."""

from __future__ import annotations

import threading

from catalogue.query.result_cache import ENTRY_OVERHEAD_BYTES, ResultCache, key_bytes


def _held(cache: ResultCache, keys: list[str]) -> dict[str, bytes | None]:
    return {k: cache.get(k, bytes) for k in keys}


def test_the_least_recently_used_entry_goes_first_when_the_bytes_run_out() -> None:
    entry = 1000 + key_bytes("a") + ENTRY_OVERHEAD_BYTES
    cache = ResultCache(3 * entry)
    for key in "abc":
        assert cache.put(key, key.encode() * 1000, 1000)
    assert cache.get("a", bytes) == b"a" * 1000  # a is now the most recently used
    cache.put("d", b"d" * 1000, 1000)
    assert _held(cache, list("abcd")) == {"a": b"a" * 1000, "b": None, "c": b"c" * 1000, "d": b"d" * 1000}
    assert (len(cache), cache.held_bytes) == (3, 3 * entry)


def test_replacing_a_key_counts_its_bytes_once() -> None:
    cache = ResultCache(10_000)
    cache.put("a", b"x" * 100, 100)
    cache.put("a", b"y" * 200, 200)
    assert (cache.get("a", bytes), len(cache), cache.held_bytes) == (b"y" * 200, 1,
                                                                      200 + key_bytes("a") + ENTRY_OVERHEAD_BYTES)


def test_an_entry_larger_than_the_bound_is_not_kept_and_evicts_nothing() -> None:
    cache = ResultCache(2000)
    cache.put("small", b"s", 1)
    assert cache.put("big", b"b" * 5000, 5000) is False
    assert _held(cache, ["small", "big"]) == {"small": b"s", "big": None}


def test_zero_bytes_turns_the_cache_off() -> None:
    cache = ResultCache(0)
    assert (cache.enabled, cache.put("a", b"a", 1), cache.get("a", bytes), len(cache)) == (False, False, None, 0)


def test_a_value_of_another_kind_is_a_miss() -> None:
    cache = ResultCache(10_000)
    cache.put("a", b"bytes", 5)
    assert (cache.get("a", str), cache.get("a", bytes)) == (None, b"bytes")


def test_keys_count_their_text() -> None:
    assert key_bytes(("records", "x" * 50, None, 7, ("a:1",))) == 7 + 50 + 16 + 16 + (3 + 8) + 8 * 5


def test_threads_keep_the_bound_and_the_count() -> None:
    cache = ResultCache(50_000)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(2000):
                key = (worker, i % 97)
                if cache.get(key, bytes) is None:
                    cache.put(key, b"v" * (i % 500), i % 500)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 0 < cache.held_bytes <= 50_000
    assert cache.held_bytes == sum(size for _, size in cache._entries.values())
