"""Coverage-guided fuzzing (atheris, libFuzzer's engine for Python) where it pays: the pure-Python
parsers whose branches random frames rarely reach.

    python3 -m fuzz.coverage yaml   -max_total_time=60     # topology and router-config loading
    python3 -m fuzz.coverage router -max_total_time=60     # Router.receive

`yaml`: any bytes as a topology file and as a router config; the only way out is a Document
or YamlSourceError/TopologyError/ConfigError, each problem placed (line and column >= 1 for
the file's own problems). `router`: any bytes as a frame on either interface; every frame
ends in at least one action and every non-Transmit action names a known counter. The seed
corpus is configs/, tests/unit/bad_topologies/ and fuzz/frames.py's templates. Anything else
(an exception, a broken rule) stops the run with the input saved by libFuzzer (`crash-*`).

The C fast path is not here: coverage-guided fuzzing of C needs clang's
`-fsanitize=fuzzer-no-link`, and the toolchain here is gcc; it gets the ASan+UBSan random
and mutational run of fuzz/frames.py instead.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["appliance", "orchestrate"]):
    from appliance import yamlsource
    from appliance.config import ConfigError, parse_router_config
    from appliance.core.router import Deliver, Drop, Hold, Transmit
    from appliance.core.stats import KNOWN_KEYS
    from orchestrate.topology import TopologyError, parse_topology

REPO = Path(__file__).resolve().parents[1]


def yaml_target(data: bytes) -> None:
    try:
        text = yamlsource.decode(data, "fuzz.yaml")
        doc = yamlsource.load_text(text, "fuzz.yaml")
    except yamlsource.YamlSourceError as e:
        assert e.problems and all(p.file == "fuzz.yaml" for p in e.problems)
        return
    for problem in doc.problems:
        assert problem.line >= 1 and problem.col >= 1, problem
    try:
        parse_topology(text, "fuzz.yaml")
    except TopologyError as e:
        assert e.problems and all(p.line >= 1 and p.col >= 1 for p in e.problems), e
    try:
        parse_router_config(doc.data, "fuzz.yaml", doc)
    except ConfigError as e:
        assert e.problems


_router: Any = None


def router_target(data: bytes) -> None:
    global _router
    if _router is None:
        from fuzz.frames import make_router

        _router = make_router()
    if not data:
        return
    ifindex, frame = 1 + (data[0] & 1), data[1:]
    actions = _router.receive(ifindex, frame, 1000.0)
    assert actions, "every frame ends in at least one action"
    for action in actions:
        if not isinstance(action, Transmit):
            assert isinstance(action, Drop | Deliver | Hold), action
            assert action.reason in KNOWN_KEYS, action.reason


def seed_corpus(target: str) -> Path:
    """A corpus directory to start from (libFuzzer adds what it finds to it)."""
    corpus = REPO / "build" / "fuzz" / f"corpus-{target}"
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        if target == "yaml":
            for source in [*sorted((REPO / "configs").glob("*.yaml")),
                           *sorted((REPO / "tests" / "unit" / "bad_topologies").glob("*.yaml"))]:
                (corpus / source.name).write_bytes(source.read_bytes())
        else:
            from fuzz.frames import templates

            for i, frame in enumerate(templates()):
                (corpus / f"template-{i}").write_bytes(b"\0" + frame)
    return corpus


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("yaml", "router"):
        raise SystemExit("usage: python3 -m fuzz.coverage yaml|router [libFuzzer options]")
    target = sys.argv[1]
    corpus = seed_corpus(target)
    with tempfile.TemporaryDirectory():
        atheris.Setup([sys.argv[0], *sys.argv[2:], str(corpus)],
                      yaml_target if target == "yaml" else router_target)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
