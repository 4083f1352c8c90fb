# Untangling Features. `make lab` to study, `make test` to check everything (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first, and only when the environment has none: a range in pyproject keeps
# whatever torch is already there. On this course's CI machines the CPU wheel is local.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
CHAPTERS := $(notdir $(wildcard solutions/[0-9][0-9]_*))
LAB_PORT ?= 8888

.PHONY: help env lab test test-quick release grade assets bench clean-grading browser

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

env: $(STAMP)  ## create the environment if missing and install the course into it

lab: $(STAMP)  ## start JupyterLab on chapters/ (prints the URL; Ctrl-C stops it)
	$(BIN)/jupyter lab --notebook-dir=chapters --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
		$(if $(DISPLAY)$(filter Darwin,$(shell uname)),,--no-browser)

browser:  ## install Chromium for the real-browser test (Debian's package; needs root, else skipped)
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser: installing Debian's chromium (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
		echo "browser: could not install chromium; tests/test_browser.py will be skipped"; \
	else echo "browser: chromium is missing and this is not root with apt-get; tests/test_browser.py will be skipped"; fi

test: $(STAMP) browser  ## run the whole test suite (executes and autogrades every chapter)
	COURSE_FAST=1 $(BIN)/python -m pytest -q

test-quick: $(STAMP)  ## the test suite without training runs and notebook execution
	COURSE_FAST=1 $(BIN)/python -m pytest -q -m "not slow"

release: $(STAMP)  ## regenerate chapters/ from solutions/
	@for ch in $(CHAPTERS); do \
		$(BIN)/python -m nbgrader generate_assignment $$ch --force --no-db --log-level=WARN || exit 1; \
	done
	@echo "chapters/ regenerated: $(CHAPTERS)"

grade: $(STAMP)  ## autograde grading/submitted/ -> grading/feedback/ and grading/grades.csv
	$(BIN)/python -m tools.grade $(GRADE_ARGS)

assets: $(STAMP)  ## rebuild the offline world in utils/assets/ (up to an hour on a 2-core CPU)
	$(BIN)/python -m tools.world

bench: $(STAMP)  ## print the benchmarks' figures (trainer throughput, recovery, grading)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-grading:  ## remove grading/ outputs except submissions
	rm -rf grading/autograded grading/feedback grading/gradebook.db grading/grades.csv grading/work
