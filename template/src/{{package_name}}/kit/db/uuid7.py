"""Time-ordered UUIDs (RFC 9562 version 7) for primary keys.

Random UUIDv4 keys scatter inserts across the whole primary-key index; v7 keys grow
with time, so new rows land at its right edge like a sequence would. Python 3.14 has
`uuid.uuid7`; for the versions before it this is the same layout: 48 bits of Unix
milliseconds, then 74 random bits, with the version and variant bits set.
"""

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b: 62 bits
    return uuid.UUID(int=value)
