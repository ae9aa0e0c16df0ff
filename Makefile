# Two commands set everything up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Debian packages (system-deps): root installs, others use sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# mypyc's build of the hot modules (tools/build_native.py): redone when one of them changes
NATIVE := build/native.stamp
NATIVE_SOURCES := $(shell python3 tools/build_native.py --list) tools/build_native.py

.PHONY: install build clean-native system-deps demo test test-under-load lint format schema clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) $(NATIVE)

# The simulated rig and the control loop compiled (about twice as fast; the same results)
# Without a C compiler or Python's headers the same modules run as Python: slower, same results.
$(NATIVE): $(STAMP) $(NATIVE_SOURCES)
	@if $(PY) tools/build_native.py; then mkdir -p build && touch $(NATIVE); else \
	  $(PY) tools/build_native.py --clean; \
	  echo "warning: mypyc could not compile the hot modules (see above): they run as Python," \
	    "about half as fast (a C compiler and Python's headers are needed)" >&2; fi

build: $(NATIVE)

# Back to every module as Python (the next `make install` compiles again)
clean-native:
	python3 tools/build_native.py --clean
	rm -f $(NATIVE)

# Debian packages the tests need: a real Mosquitto broker, Chromium to render reports, and
# tmux for the console's end-to-end test at a real terminal.
system-deps:
	@command -v mosquitto >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && \
	  command -v chromedriver >/dev/null 2>&1 && command -v tmux >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    mosquitto mosquitto-clients chromium chromium-driver tmux; }
	@command -v mosquitto >/dev/null 2>&1 || { echo "mosquitto is missing and could not be installed" >&2; exit 1; }
	@command -v chromium >/dev/null 2>&1 || { echo "chromium is missing and could not be installed" >&2; exit 1; }
	@command -v tmux >/dev/null 2>&1 || { echo "tmux is missing and could not be installed" >&2; exit 1; }
	@# the browser tests need the driver of this very chromium (Debian builds both from one source)
	@test "$$(dpkg-query -W -f='$${Version}' chromium 2>/dev/null)" = \
	  "$$(dpkg-query -W -f='$${Version}' chromium-driver 2>/dev/null)" || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    chromium chromium-driver; }
	@test "$$(dpkg-query -W -f='$${Version}' chromium)" = \
	  "$$(dpkg-query -W -f='$${Version}' chromium-driver)" || { \
	  echo "chromium and chromium-driver differ in version" >&2; exit 1; }

# A complete simulated Li-ALS treatment (about 7 h of rig time) in seconds.
demo: install
	$(VENV)/bin/alsctl validate config/rigs/sim.yaml config/prescriptions/li_als.yaml
	$(VENV)/bin/alsctl run --sim --plain --rig config/rigs/sim.yaml \
	  --prescription config/prescriptions/li_als.yaml --checklist config/checklists/clear.yaml \
	  --summary-json out/demo-summary.json

# pytest exits 5 when it collected no test: make treats that, like any non-zero exit, as failure.
test: install system-deps lint
	$(VENV)/bin/pytest

# `make test` with two CPU-bound processes running all along (a busy CI runner, a laptop
# compiling something): the suite must not depend on an idle machine (issue 17)
test-under-load: install system-deps
	@hogs=""; for i in 1 2; do python3 -c 'while True: pass' & hogs="$$hogs $$!"; done; \
	trap 'kill $$hogs 2>/dev/null' EXIT INT TERM; \
	echo "make test with two CPU-bound processes:$$hogs"; \
	$(MAKE) --no-print-directory test

# mypy --strict with pydantic's plugin over controller, firmware_sim and bench ([tool.mypy])
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

schema: install
	$(VENV)/bin/alsctl schema --out docs/schemas
	$(VENV)/bin/alsctl asyncapi --out docs/asyncapi.yaml
	$(VENV)/bin/alsctl diagram --out docs/state-machine.md

clean: clean-native
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
