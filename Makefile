PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv lock run test lint typecheck bench bench-pipeline bench-memory bench-kafka bench-billing bench-decoders bench-quality bench-river chaos demo clean

## The venv (and so CI) installs the exact versions of requirements-dev.lock, each checked against its hashes, then the
## project itself without dependencies.
$(STAMP): pyproject.toml requirements-dev.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## The lock files, for Linux x86_64 and CPython 3.11 (the image's platform and CI's): requirements.lock has the runtime
## dependencies and the extras the image installs (kafka, aws, azure), requirements-dev.lock the dev and report extras
## (make venv, CI). Run it after changing a dependency in pyproject.toml; the versions already locked are kept unless
## UPGRADE=1 (make lock UPGRADE=1 moves every package to its newest version that fits pyproject.toml).
LOCK_FLAGS = --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock: $(STAMP)
	$(BIN)/uv pip compile $(LOCK_FLAGS) pyproject.toml --extra kafka --extra aws --extra azure -o requirements.lock
	$(BIN)/uv pip compile $(LOCK_FLAGS) pyproject.toml --extra dev --extra report -o requirements-dev.lock
	$(BIN)/uv pip compile $(LOCK_FLAGS) requirements-build.in -o requirements-build.lock

## Run the agent on its embedded default config (local files in; console + webhook + /metrics out).
## A local receiver (agent.webhook_echo) takes the signed webhook deliveries and checks their signatures.
## The agent creates ./inbox/{bedrock,dcgm,billing}/ (FINOPS_INBOX) itself: drop files there while it runs.
WEBHOOK_ECHO_PORT ?= 9099
run: $(STAMP)
	@$(BIN)/python -m agent.webhook_echo --port $(WEBHOOK_ECHO_PORT) --secret $${FINOPS_WEBHOOK_SECRET:-change-me} & echo_pid=$$!; \
	trap 'kill $$echo_pid 2>/dev/null; wait $$echo_pid 2>/dev/null' EXIT; \
	trap ':' INT TERM; \
	$(BIN)/finops-agent run

## Everything CI runs: lint, types, tests (services the tests need are started by the tests; Prometheus and
## Alertmanager are installed first when missing: Debian's packages, as root, or $PROMETHEUS_BIN / $ALERTMANAGER_BIN).
## Three pytest-xdist workers, a test each at a time, the longest (Kafka outages, fault injection; tests/conftest.py's
## LONGEST) first: they mostly wait on brokers and outages, so they run beside the rest on two cores. What many tests
## only read (the demo month, its backtest) is built once for all workers (tests/conftest.py's built_once).
TEST_WORKERS ?= 3
test: $(STAMP)
	$(BIN)/python -m scripts.prom_services install
	$(BIN)/ruff check agent detectors sinks config tests bench scripts
	$(BIN)/mypy agent detectors sinks
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check agent detectors sinks config tests bench scripts

demo: $(STAMP)
	$(BIN)/python -m agent.demo --out demo-data

bench: bench-pipeline bench-memory bench-kafka bench-billing

bench-pipeline: $(STAMP)
	$(BIN)/python -m bench.pipeline

bench-memory: $(STAMP)
	$(BIN)/python -m bench.memory

clean:
	rm -rf $(VENV) .agent-state demo-data out .pytest_cache .mypy_cache .ruff_cache
bench-kafka: $(STAMP)
	$(BIN)/python -m bench.kafka
bench-billing: $(STAMP)
	$(BIN)/python -m bench.billing
## Decoders alone (azure_openai, otel_genai, dcgm_otlp), seeded inputs: records/s beside orjson.loads of the same lines
bench-decoders: $(STAMP)
	$(BIN)/python -m bench.decoders

## Detection quality: the agent's default spend detector on the NAB files in ../shared/data/nab (scored by bench.nab),
## then the default detectors and a budget per team on seeded cost-shaped series (bench.cost_shaped).
NAB ?= $(or $(FINOPS_SHARED_DATA),../shared/data)/nab
## River's stock models next to the agent's own detector on NAB (per category, and leave one category out)
bench-river: $(STAMP)
	$(BIN)/python -m bench.river_models --nab $(NAB)

bench-quality: $(STAMP)
	$(BIN)/python -m bench.nab run --nab $(NAB) --out bench/out/nab --per-file
	$(BIN)/python -m bench.cost_shaped --seeds 5

## Fault injection on the Kafka path: seeds 1..SEEDS, each a seeded month produced unkeyed, one or two replicas as
## real processes, kill -9 / SIGTERM / broker outages / a slow webhook receiver, checked against a backtest.
## `make test` runs the fixed set (tests/bench/test_chaos.py). CHAOS_DIR keeps the logs.
SEEDS ?= 5
CHAOS_DIR ?= bench/out/chaos
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --seeds $(SEEDS) --workdir $(CHAOS_DIR)
