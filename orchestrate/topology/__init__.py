"""The topology: a lab of routers and hosts, the links between them and the checks to run.

- `model`: the data (Topology, Node, Link, Route, ...) and the address rules;
- `validate`: reading a file into the model, every problem placed at `file:line:col`;
- `problems`: the Problem type and the reporter validators collect them with.

Everything public is re-exported here: `from orchestrate.topology import Topology, load_topology`.
"""

from orchestrate.topology.model import (
    ACCELS,
    BACKENDS,
    DEFAULT_MEMORY,
    DOCUMENTATION_HINT,
    DOCUMENTATION_NETWORKS,
    LINK_LOCAL_V6,
    MANAGEMENT_NETWORK,
    MAX_CPUS,
    MAX_LINK_MTU,
    MAX_MEMORY,
    MIN_LINK_MTU,
    MIN_MEMORY,
    ROLES,
    ROUTE_TYPES,
    CheckSpec,
    Defaults,
    Endpoint,
    IPAddress,
    IPInterface,
    IPNetwork,
    Link,
    Node,
    NodeInterface,
    Role,
    Route,
    Topology,
    address_problem,
    documentation_problem,
)
from orchestrate.topology.problems import Problem, TopologyError
from orchestrate.topology.validate import load_topology, parse_topology

__all__ = [
    "ACCELS", "BACKENDS", "DEFAULT_MEMORY", "DOCUMENTATION_HINT", "DOCUMENTATION_NETWORKS",
    "LINK_LOCAL_V6", "MANAGEMENT_NETWORK", "MAX_CPUS", "MAX_LINK_MTU", "MAX_MEMORY",
    "MIN_LINK_MTU", "MIN_MEMORY", "ROLES", "ROUTE_TYPES", "CheckSpec", "Defaults", "Endpoint",
    "IPAddress", "IPInterface", "IPNetwork", "Link", "Node", "NodeInterface", "Problem", "Role",
    "Route", "Topology", "TopologyError", "address_problem", "documentation_problem",
    "load_topology", "parse_topology",
]
