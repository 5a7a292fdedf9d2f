"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

The one's complement sum of 16-bit words is computed with one big-integer remainder: since
2**16 == 1 (mod 0xffff), the sum of the big-endian words of ``data`` is congruent to
``int.from_bytes(data)`` modulo 0xffff. The folded one's complement sum is that remainder,
except that a non-zero input whose sum is a multiple of 0xffff folds to 0xffff (-0 is only
reached from all-zero input; RFC 1071 §2). This keeps the loop in C.
"""

from __future__ import annotations

import struct

__all__ = [
    "incremental_update",
    "internet_checksum",
    "ones_complement_sum",
    "pseudo_header_v4",
    "pseudo_header_v6",
    "verify",
]

_V4_PSEUDO_TAIL = struct.Struct("!xBH")  # zero, protocol, TCP/UDP length (RFC 768, RFC 793)
# upper-layer length, 3 zero bytes, next header (RFC 8200 §8.1)
_V6_PSEUDO_TAIL = struct.Struct("!I3xB")


def ones_complement_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Folded 16-bit one's complement sum of ``data`` (odd length padded with a zero byte).

    ``initial`` is a partial sum from a previous call (e.g. a pseudo-header).
    """
    if len(data) & 1:
        total = (int.from_bytes(data, "big") << 8) + initial
    else:
        total = int.from_bytes(data, "big") + initial
    folded = total % 0xFFFF
    if folded == 0 and total != 0:
        return 0xFFFF
    return folded


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The value to store in a checksum field: the complement of the folded sum (RFC 1071)."""
    return ~ones_complement_sum(data, initial) & 0xFFFF


def verify(data: bytes | bytearray | memoryview, initial: int = 0) -> bool:
    """True when ``data`` (checksum field included) sums to 0xffff (RFC 1071 §1)."""
    return ones_complement_sum(data, initial) == 0xFFFF


def incremental_update(checksum: int, old_word: int, new_word: int) -> int:
    """Checksum after one 16-bit word changes from ``old_word`` to ``new_word``.

    RFC 1624 eqn. 3: ``HC' = ~(~HC + ~m + m')`` in one's complement arithmetic. When the word
    does not change the checksum is returned untouched: eqn. 3 would otherwise turn a stored
    0xffff into 0x0000 (the -0/+0 case noted in the RFC 1624 errata), so callers may apply it
    to every rewritten word without special-casing.
    """
    if old_word == new_word:
        return checksum
    total = (~checksum & 0xFFFF) + (~old_word & 0xFFFF) + new_word
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header_v4(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial sum of the IPv4 pseudo-header (RFC 768, RFC 793 §3.1), to pass as ``initial``."""
    return ones_complement_sum(src + dst + _V4_PSEUDO_TAIL.pack(proto, length))


def pseudo_header_v6(src: bytes, dst: bytes, next_header: int, length: int) -> int:
    """Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1), to pass as ``initial``."""
    return ones_complement_sum(src + dst + _V6_PSEUDO_TAIL.pack(length, next_header))
