"""Time-ordered UUIDs (version 7, RFC 9562), so keyset pagination by id follows creation order.

Within one process the ids are strictly increasing (RFC 9562 section 6.2, method 1): ``rand_a``
(12 bits) is a counter, started at a random value below 2^11 each millisecond and incremented
for each further id in the same millisecond; when it would overflow, the timestamp moves on by
one millisecond. Two records written in the same millisecond (a canary promotion's two audit
records) thus list in the order they were made; ids of different processes stay ordered by
millisecond only.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = -1
_counter = 0


def uuid7() -> uuid.UUID:
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, secrets.randbits(11)
        else:  # the same millisecond (or the clock stepped back): count on from the last id
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, secrets.randbits(11)
        ms, counter = _last_ms, _counter
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= counter << 64  # rand_a: the counter, 12 bits
    value |= 0b10 << 62  # variant
    value |= secrets.randbits(62)  # rand_b, 62 bits
    return uuid.UUID(int=value)
