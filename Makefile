# vrlab: see README.md. `make demo` and `make test` work on a fresh Debian bookworm machine.
PY      ?= python3
PYTEST  ?= $(PY) -m pytest
TOPO    ?= configs/duo.yaml

.PHONY: deps setup build image demo up down status test test-unit test-netns test-e2e bench soak fuzz fuzz-ci lint clean

# Install system and Python dependencies (apt + pip), build the C extension. Idempotent.
deps:
	bash .ci/run --deps-only

setup: deps

build:
	$(PY) setup.py -q build_ext --inplace

image: deps
	vrlab image build

# The main job: build (or reuse) the image, bring up the seed testbed (violin <-> piano),
# ping piano's IPv6 link-local address from violin, print the result, tear down.
demo: deps
	vrlab demo $(TOPO)

up:
	vrlab up $(TOPO)

down:
	vrlab down $(TOPO)

status:
	vrlab status

# The image is built (or found in the cache) before pytest starts, so a cold build (~45 s
# quiet, a few minutes under load) never runs inside a test's timeout.
test: deps image
	$(PYTEST) tests/unit tests/netns tests/e2e

test-unit:
	$(PYTEST) tests/unit

test-netns:
	$(PYTEST) tests/netns

test-e2e:
	$(PYTEST) tests/e2e

bench: deps build
	$(PY) -m bench

# No crash, no leak, no stuck ring: 10 minutes of mixed and malformed load through vrlab-router.
soak: deps build
	$(PY) -m bench soak

# 1,000,000 fuzzed frames through the C fast path built with ASan+UBSan (build/fuzz/), fuzzed
# ring descriptors, and 1,000,000 through the Python router: `N frames, 0 crashes`; then a
# minute of coverage-guided fuzzing (atheris) each of the YAML loading and Router.receive.
fuzz: deps build
	$(PY) -m fuzz
	$(PY) -m fuzz.coverage yaml -max_total_time=60 -rss_limit_mb=2048
	$(PY) -m fuzz.coverage router -max_total_time=60 -rss_limit_mb=2048

# The short pass CI runs (under a minute).
fuzz-ci: build
	$(PY) -m fuzz --frames 100000 --router-frames 20000 --ring-slots 20000
	$(PY) -m fuzz.coverage yaml -max_total_time=10 -rss_limit_mb=2048
	$(PY) -m fuzz.coverage router -max_total_time=10 -rss_limit_mb=2048

lint:
	ruff check appliance orchestrate tests bench fuzz
	mypy

clean:
	rm -rf build *.egg-info appliance/*.so appliance/*/*.so
