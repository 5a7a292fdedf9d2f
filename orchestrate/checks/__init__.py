"""Checks: the `tests:` section of a topology.

- `schema`: every check kind and its keys, validated when the topology loads;
- `runner`: running validated checks against a lab, each within its bounded retry window.

Everything public is re-exported here: `from orchestrate.checks import CheckRunner, validate_check`.
"""

from orchestrate.checks.runner import (
    ICMP_ERROR_PATTERNS,
    CheckError,
    CheckResult,
    CheckRunner,
    ExecResultLike,
    LabLike,
    NodeLike,
    Outcome,
    PingResult,
    excerpt,
    flatten_counters,
    link_local_of,
    parse_ping,
    parse_traceroute,
    ping,
    print_results,
    resolve_target,
    results_table,
    tcpdump_filter,
)
from orchestrate.checks.schema import (
    CAPTURE_EXPECT,
    COMMON_KEYS,
    DEFAULT_ATTEMPTS,
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    KINDS,
    PING_EXPECT,
    Param,
    ValidCheck,
    default_name,
    expand_command,
    literal_address,
    validate_check,
)

__all__ = [
    "CAPTURE_EXPECT", "COMMON_KEYS", "DEFAULT_ATTEMPTS", "DEFAULT_INTERVAL", "DEFAULT_TIMEOUT",
    "ICMP_ERROR_PATTERNS", "KINDS", "PING_EXPECT", "CheckError", "CheckResult",
    "CheckRunner", "ExecResultLike", "LabLike", "NodeLike", "Outcome", "Param", "PingResult",
    "ValidCheck", "default_name", "excerpt", "expand_command", "flatten_counters",
    "link_local_of", "literal_address", "parse_ping", "parse_traceroute", "ping",
    "print_results", "resolve_target", "results_table", "tcpdump_filter", "validate_check",
]
