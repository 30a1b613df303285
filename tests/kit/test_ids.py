"""uuid7: version 7 (RFC 9562), strictly increasing within a process."""

from __future__ import annotations

import threading
import uuid

from control_plane.kit.ids import uuid7


def test_ids_made_in_one_process_sort_in_the_order_they_were_made() -> None:
    # Far more than one per millisecond: the counter, and its overflow into the next one.
    ids = [uuid7() for _ in range(50_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids[:100])


def test_ids_made_by_threads_are_distinct_and_each_thread_s_increase() -> None:
    made: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(out: list[uuid.UUID]) -> None:
        out.extend(uuid7() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({i for out in made for i in out}) == 20_000
    assert all(out == sorted(out) for out in made)
