# Two entry points for people: `make run` (a local three-node cluster) and `make test`.
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint proto proto-check netns-tools kafka-tools image image-tools monitoring-tools up down sim-long clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# `make run SET='num.partitions=6 min.insync.replicas=1'` passes each as --set to every node,
# `ARGS='--base-port 29091'` any other `raftlog cluster up` flags; RAFTLOG_* variables reach the nodes.
run: $(STAMP)
	$(BIN)/raftlog cluster up --nodes 3 --data-dir $${DATA_DIR:-./data} $(foreach s,$(SET),--set '$(s)') $(ARGS)

test: $(STAMP) proto-check lint netns-tools kafka-tools image monitoring-tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Code checks (settings in pyproject.toml): layering (pure modules import no grpc/asyncio/rocksdict,
# the client no server package, no cycles), ruff lint, mypy on raftlog/ and cli/.
lint: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check raftlog cli chaos tests
	$(BIN)/ruff format --check raftlog cli chaos tests
	$(BIN)/mypy

# The chaos tests put nodes in network namespaces and cut links with iptables, put log dirs on
# tmpfs mounts, and run a node under libfaketime for the clock-skew fault (needs root).
netns-tools:
	@command -v ip >/dev/null && command -v iptables >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq iproute2 iptables; }
	@command -v faketime >/dev/null || { apt-get update -qq && apt-get install -y -qq faketime; }

# The Kafka listener's tests run kcat (Debian's package) against it.
kafka-tools:
	@command -v kcat >/dev/null || { apt-get update -qq && apt-get install -y -qq kcat; }

# The raftlog container image (deploy/build-image.sh): a Debian base made with mmdebstrap when
# none is present, then the image from wheels built here; both are reused while still current.
image: $(STAMP) image-tools
	PYTHON=$(BIN)/python deploy/build-image.sh

# The container tests run Prometheus (and promtool) from Debian's packages against the containers.
monitoring-tools:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }

image-tools:
	@command -v docker >/dev/null || { echo "make image: docker is not installed" >&2; exit 1; }
	@command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap; }

# A three-node cluster in containers (deploy/compose.yaml); `make up PROFILES=monitoring` adds
# Prometheus and Grafana (their images are pulled from a registry).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

up: image
	$(COMPOSE) -f deploy/compose.yaml $(foreach p,$(PROFILES),--profile $(p)) up -d

down:
	$(COMPOSE) -f deploy/compose.yaml --profile monitoring down

# Regenerate the Python gRPC code in raftlog/v1 from proto/.
proto: $(STAMP)
	$(BIN)/python -m raftlog.protogen generate

# Fails if the checked-in generated code differs from what proto/ produces.
proto-check: $(STAMP)
	$(BIN)/python -m raftlog.protogen check

# A long deterministic-simulation campaign of the Raft core.
sim-long: $(STAMP)
	$(BIN)/python -m raftlog.raft.sim --seeds $${SEEDS:-100000}

clean:
	rm -rf $(VENV) .pytest_cache
