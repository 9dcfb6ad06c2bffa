"""common.inbox.GroupCommit: items submitted side by side by green threads are run as batches, one batch at a
time; a lone item runs alone; a failed batch makes each of its items run alone, where only a bad one fails."""
from __future__ import annotations

import eventlet
import pytest

from helpdesk.common.inbox import GroupCommit


class _Runs:
    def __init__(self, fail_batches=False, bad=()):
        self.batches, self.alone, self.running = [], [], 0
        self.fail_batches, self.bad = fail_batches, set(bad)

    def many(self, items):
        assert self.running == 0, "two batches at once"
        self.running += 1
        try:
            eventlet.sleep(0.01)  # a transaction's round trips: others arrive meanwhile
            self.batches.append(list(items))
            if self.fail_batches:
                raise RuntimeError("deadlock")
            return [("batch", i) for i in items]
        finally:
            self.running -= 1

    def one(self, item):
        # (after a failed batch its items run alone side by side, by design)
        assert self.running == 0 or self.fail_batches, "a lone item beside a batch"
        self.running += 1
        try:
            eventlet.sleep(0.01)
            self.alone.append(item)
            if item in self.bad:
                raise ValueError(f"bad item {item}")
            return ("alone", item)
        finally:
            self.running -= 1


def _submit_all(group, runs, items, stagger=0.0):
    results = {}

    def worker(i):
        try:
            results[i] = group.submit(runs.many, runs.one, i)
        except ValueError as exc:
            results[i] = exc

    pool = eventlet.GreenPool()
    for i in items:
        pool.spawn_n(worker, i)
        if stagger:
            eventlet.sleep(stagger)
    pool.waitall()
    return results


def test_a_lone_item_runs_alone():
    runs = _Runs()
    assert _submit_all(GroupCommit(), runs, [1]) == {1: ("alone", 1)}
    assert runs.batches == [] and runs.alone == [1]


def test_items_arriving_while_one_runs_make_the_next_batch_and_each_gets_its_own_result():
    runs = _Runs()
    results = _submit_all(GroupCommit(), runs, range(10))
    assert results == {i: ("alone", i) for i in [0]} | {i: ("batch", i) for i in range(1, 10)}
    assert runs.alone == [0] and runs.batches == [list(range(1, 10))]


def test_batches_are_cut_at_the_limit_and_run_one_after_another():
    runs = _Runs()
    results = _submit_all(GroupCommit(limit=4), runs, range(10))
    assert runs.batches == [[1, 2, 3, 4], [5, 6, 7, 8]] and runs.alone == [0, 9]  # (9 was left alone: a batch of one)
    assert results == {i: ("alone" if i in (0, 9) else "batch", i) for i in range(10)}


def test_a_failed_batch_runs_each_item_alone_and_only_the_bad_one_fails():
    runs = _Runs(fail_batches=True, bad={3})
    results = _submit_all(GroupCommit(), runs, range(6))
    assert isinstance(results.pop(3), ValueError)
    assert results == {i: ("alone", i) for i in (0, 1, 2, 4, 5)}
    assert runs.batches == [[1, 2, 3, 4, 5]] and sorted(runs.alone) == list(range(6))


def test_a_waiting_worker_that_is_killed_leaves_the_others_going():
    runs = _Runs()
    group = GroupCommit()
    results = {}

    def worker(i):
        results[i] = group.submit(runs.many, runs.one, i)

    first = eventlet.spawn(worker, 0)
    eventlet.sleep(0)  # 0 leads, alone
    victims = [eventlet.spawn(worker, i) for i in (1, 2)]
    eventlet.sleep(0)  # both wait
    victims[0].kill()  # 1 is killed while it waits for its turn to lead
    last = eventlet.spawn(worker, 3)
    for t in (first, victims[1], last):
        t.wait()
    assert results == {0: ("alone", 0), 2: ("batch", 2), 3: ("batch", 3)}


@pytest.mark.parametrize("n", [2, 3])
def test_at_a_trickle_every_item_runs_alone(n):
    runs = _Runs()
    results = _submit_all(GroupCommit(), runs, range(n), stagger=0.03)
    assert results == {i: ("alone", i) for i in range(n)} and runs.batches == []
