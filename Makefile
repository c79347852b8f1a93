# The two set-up commands: `make run` (CHOM on http://127.0.0.1:$PORT) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test demo preflight venv migrate lint format fleet-image clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

migrate: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_staff_login

run: migrate
	$(BIN)/python manage.py run_stack --port $(PORT)

# Everything on one machine (root, Debian/Ubuntu): the local VPS provider plus local stand-ins
# for the outside services (ACME CA, S3, monitoring). See README "Try the whole product".
# The preflight runs first, on the system Python (stdlib only): it checks root and namespaces and
# installs the missing Debian packages (python3.N-venv included) before the venv or the image.
preflight:
	@command -v $(PY) >/dev/null || { echo "preflight: make demo needs $(PY): apt-get install python3 (Debian 12), or PY=python3.N make demo"; exit 1; }
	@$(PY) -m devstack.preflight

demo: export CHOM_LOCAL_PROVIDER = 1
demo: preflight
	$(MAKE) --no-print-directory migrate
	$(BIN)/python -m fleet.localfleet image
	$(BIN)/python -m devstack --port $(PORT)

# The whole suite in two runs: everything that runs on this machine alone, on JOBS processes
# (pytest-xdist; one database per process), then the end-to-end, browser and journey tests one at
# a time (they share session-wide test VPSes, a test ACME CA, a browser and a real CHOM stack).
# Both always run; either failing fails `make test`. PYTEST_ARGS (paths, -k, ...) makes it one
# plain pytest run instead.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SERIAL_TESTS := tests/e2e tests/browser tests/journeys tests/deploy/test_systemd_deploy.py

test: venv
ifeq ($(strip $(PYTEST_ARGS)),)
	@rc=0; \
	$(BIN)/python -m pytest -n $(JOBS) $(addprefix --ignore=,$(SERIAL_TESTS)) || rc=$$?; \
	$(BIN)/python -m pytest $(SERIAL_TESTS) || rc=$$?; \
	exit $$rc
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var/broker var/log
