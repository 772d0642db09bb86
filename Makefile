# push_service developer commands. `make run` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_DIR := tests/pushserver
PEERS_DIR := tests/peers
ASYNCAPI_DIR := tests/asyncapi

LOCK := requirements/dev.txt

.PHONY: run test test-cluster lint fmt bench demo services install clean lock lock-upgrade audit

# Exactly the locked versions (hashes checked), then the package itself without resolving.
$(STAMP): setup.cfg pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

services:
	@scripts/ensure_services.sh

run: $(STAMP) services
	$(BIN)/push-service

# npm folders: web-push-testing (the tests' push service), amqplib (a peer's AMQP client)
# and @asyncapi/specs (the AsyncAPI JSON Schemas /asyncapi.json is validated against).
%/node_modules/.installed: %/package.json %/package-lock.json
	npm ci --silent --no-audit --no-fund --prefix $*
	touch $@

test: $(STAMP) $(NODE_DIR)/node_modules/.installed $(PEERS_DIR)/node_modules/.installed \
		$(ASYNCAPI_DIR)/node_modules/.installed services
	@scripts/ensure_browser.sh
	$(BIN)/pytest $(PYTEST_ARGS)

# Only the failover tests: they start their own RabbitMQ cluster and Redis + Sentinel
# (Debian's rabbitmq-server and redis-server) and print what they measured.
test-cluster: $(STAMP) services
	$(BIN)/pytest -m cluster -s $(PYTEST_ARGS)

# A push end to end on this machine: web-push-testing, the service, a published notification.
demo: $(STAMP) $(NODE_DIR)/node_modules/.installed services
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check push_service tests scripts
	$(BIN)/ruff format --check push_service tests scripts
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format push_service tests scripts
	$(BIN)/ruff check --fix push_service tests scripts

# The benchmark (scripts/bench/); `make bench BENCH_ARGS=--help` lists its options.
bench: $(STAMP) services
	PYTHONPATH=scripts $(BIN)/python -m bench $(BENCH_ARGS)

lock: ## regenerate requirements/{runtime,dev,tools}.txt from setup.cfg, keeping current pins
	scripts/lock/lock.sh

lock-upgrade: ## the same, moving every pin to the newest version setup.cfg allows
	scripts/lock/lock.sh --upgrade

audit: ## pip-audit the locks (fails on a known vulnerability)
	$$(scripts/lock/ensure_tools.sh)/python scripts/lock/audit.py $(AUDIT_ARGS)

clean:
	rm -rf $(VENV) .venv-lock .venv-deploy build dist *.egg-info $(NODE_DIR)/node_modules \
		$(PEERS_DIR)/node_modules $(ASYNCAPI_DIR)/node_modules .pytest_cache .mypy_cache

# ---- containers --------------------------------------------------------------
# Picks the first compose that works. Override with: make up COMPOSE="podman-compose"
COMPOSE ?= $(shell \
	if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
	elif podman compose version >/dev/null 2>&1; then echo "podman compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; \
	elif command -v podman-compose >/dev/null 2>&1; then echo podman-compose; fi)
ENGINE ?= $(shell if command -v podman >/dev/null 2>&1; then echo podman; else echo docker; fi)
SCALE ?= 1
IMAGE ?= push-service:local

.PHONY: up down logs ps image check-container

up: ## build and start push_service + RabbitMQ + Redis in the background (SCALE=n for replicas)
	@test -n "$(COMPOSE)" || { echo "make up: needs 'docker compose' or 'podman compose'" >&2; exit 1; }
	@test -f .env || { echo "make up: no .env; create it with VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY and VAPID_EMAIL (see README)" >&2; exit 1; }
	$(COMPOSE) up -d --build --scale push_service=$(SCALE)
	@$(COMPOSE) ps

down: ## stop and remove the containers (the data volumes are kept)
	@test -n "$(COMPOSE)" || { echo "make down: needs 'docker compose' or 'podman compose'" >&2; exit 1; }
	$(COMPOSE) down

logs: ## follow the logs of all services
	$(COMPOSE) logs -f

ps: ## list the services, their health and their published ports
	$(COMPOSE) ps

image: ## build only the image (podman keeps HEALTHCHECK only in docker format)
	$(ENGINE) build $(if $(filter podman,$(ENGINE)),--format docker,) -f Containerfile -t $(IMAGE) .

check-container: ## check the container files statically (no engine needed; installs its tools the first time)
	scripts/check_container_files.sh

.PHONY: check-deploy
check-deploy: ## check deploy/ (Kubernetes, KEDA, Prometheus rules, Grafana) statically; installs its tools the first time
	scripts/deploy/check_deploy.sh
