# two commands do all the set-up on a fresh machine: `make run` and `make test`
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hamba-installed
DEMO := assets/demo.wav

.PHONY: install run test lint typecheck bench demo-audio clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the cpu wheel of torch first: a bare `torch` would pull a multi-GB cuda build
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q "torch>=2.4"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/hamba run --audio $(DEMO) --model tiny --width 256 --height 256 --output shm --output file:out/demo.mp4 --duration 8 $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check engine bridge osc_schema tests benchmarks scripts
	$(VENV)/bin/ruff format --check engine bridge osc_schema tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check engine bridge osc_schema tests benchmarks scripts
	$(VENV)/bin/ruff format --check engine bridge osc_schema tests benchmarks scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/hamba bench

demo-audio: $(STAMP)
	$(PY) scripts/make_demo_audio.py $(DEMO)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache out
