# Two commands on a fresh machine: `make demo` (main job) and `make test`.
# Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of PyTorch first, so the package's own torch requirement is already met.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/agad demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist worksteal  # two test workers (pytest-xdist), one CPU thread each

clean:
	rm -rf $(VENV) runs
