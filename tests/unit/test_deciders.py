"""When the nightly screen decides on worker processes (nightly/deciding.py `Deciders`)."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import date
from pathlib import Path
from typing import ClassVar

import pytest

from ips_screen.nightly import deciding
from ips_screen.nightly.deciding import Deciders, Deciding
from tests.helpers import default_ruleset


class Pool:
    """A stand-in for the process pool: it records that it was made and decides nothing."""

    made: ClassVar[list[int]] = []

    def __init__(self, workers: int, **kwargs: object) -> None:
        Pool.made.append(workers)

    def submit(self, fn: object, *args: object) -> Future:
        done: Future = Future()
        done.set_result([])
        return done

    def shutdown(self, **kwargs: object) -> None:
        pass


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    monkeypatch.setattr(deciding, "ProcessPoolExecutor", Pool)
    Pool.made = []
    return Pool.made


def first_batch(expected: int, evaluated: int, visited: int = 2_000) -> Deciders:
    how = Deciding(default_ruleset(), date(2026, 11, 27), None, Path("unused.sqlite"))
    deciders = Deciders(how, 2, expected=expected)
    batch = [(f"p{n:04d}", None) for n in range(evaluated)]
    list(deciders.submit("chunk 1", batch, lambda ids: iter(()), visited))
    return deciders


def test_a_night_foreseen_to_evaluate_enough_patients_uses_workers_from_its_first_batch(pools):
    """34 of the first 2,000 patients of a 100,000-patient practice: about 1,700 in the night."""
    first_batch(expected=100_000, evaluated=34)
    assert pools == [2]


def test_a_night_foreseen_to_evaluate_few_patients_decides_them_here(pools):
    """34 of the first 2,000 of 10,000: about 170, fewer than PARALLEL_MIN."""
    deciders = first_batch(expected=10_000, evaluated=34)
    assert pools == []
    list(deciders.submit("chunk 2", [], lambda ids: iter(()), 2_000))
    assert pools == []


def test_without_a_last_run_the_patients_asked_so_far_decide(pools):
    """A first night does not know its size: workers start once PARALLEL_MIN are asked."""
    deciders = first_batch(expected=0, evaluated=deciding.PARALLEL_MIN - 1)
    assert pools == []
    list(deciders.submit("chunk 2", [("p9999", None)], lambda ids: iter(()), 1))
    assert pools == [2]


def test_the_heap_is_trimmed_before_the_workers_are_forked(pools, monkeypatch):
    """A forked worker starts with its parent's resident pages: the parent gives the memory it
    freed while loading back to the system first (`release_free_memory`)."""
    events: list[str] = []
    monkeypatch.setattr(deciding, "release_free_memory", lambda: events.append("trimmed"))
    real = Pool.__init__

    def made(self, workers: int, **kwargs: object) -> None:
        events.append("forked")
        real(self, workers, **kwargs)

    monkeypatch.setattr(Pool, "__init__", made)
    first_batch(expected=100_000, evaluated=34)
    assert events == ["trimmed", "forked"]
