"""Capture filters compiled with libpcap when a topology is validated.

A `capture` check's `filter:` is a pcap filter expression. It is compiled here, by the same
libpcap tcpdump uses (through ctypes, for an Ethernet link type), so a wrong filter is a
placed problem before anything boots instead of a check that fails (or, worse, passes) after.
When the filter reaches tcpdump it comes after `--`, so it can never be read as an option:
`filter: "-w/tmp/x"` used to make tcpdump write a file and count 0 packets, which passed
`expect: absent`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

DLT_EN10MB = 1  # every lab link is Ethernet
SNAPLEN = 65535
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
MAX_FILTER = 4096


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


@functools.cache
def _libpcap() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("pcap")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    return lib


def available() -> bool:
    """Whether libpcap is there to compile filters (it comes with tcpdump)."""
    return _libpcap() is not None


def filter_problem(expression: str) -> str | None:
    """Why `expression` is not a usable capture filter, or None when libpcap compiles it."""
    if not expression.strip():
        return "the filter is empty"
    if expression.lstrip().startswith("-"):
        return (f"filter {expression!r} starts with '-': it is a filter expression, not tcpdump "
                f"options")
    if "\0" in expression or len(expression) > MAX_FILTER:
        return f"filter is not a filter expression (NUL, or longer than {MAX_FILTER})"
    lib = _libpcap()
    if lib is None:  # no libpcap: tcpdump, which reports it when the check runs, is missing too
        return None
    handle = lib.pcap_open_dead(DLT_EN10MB, SNAPLEN)
    if not handle:
        return None
    program = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(program), expression.encode(), 1,
                            PCAP_NETMASK_UNKNOWN) != 0:
            return f"filter {expression!r} does not compile: {lib.pcap_geterr(handle).decode()}"
        lib.pcap_freecode(ctypes.byref(program))
        return None
    finally:
        lib.pcap_close(handle)
