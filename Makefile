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
# make test's pytest-xdist workers, one torch thread each (two threads per process on two shared
# cores spin against each other); the grading runs inside it start their own kernels.
TEST_WORKERS ?= 2

.PHONY: help env lab test test-quick test-gpu-profile test-notebooks release grade assets bench gpu-check clean-grading browser

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

env: $(STAMP)  ## create the environment if missing and install the course into it

# As root (containers, cloud VMs) Jupyter refuses to start without --allow-root; with no display
# (and not macOS) there is no browser to open, so it only prints the URL with its token.
lab: $(STAMP)  ## start JupyterLab on chapters/ (prints the URL; Ctrl-C stops it)
	$(BIN)/jupyter lab --notebook-dir=chapters --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
		$(if $(DISPLAY)$(filter Darwin,$(shell uname)),,--no-browser) $(if $(filter 0,$(shell id -u)),--allow-root)

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
	COURSE_FAST=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder -m "not gpu_rehearsal and not notebooks" --durations=15

test-notebooks: $(STAMP)  ## every solutions/ chapter under nbval (make test runs each chapter in the mistakes harness and the grading pipeline instead)
	COURSE_FAST=1 $(BIN)/python -m pytest -q -m notebooks tests/test_notebooks.py

test-gpu-profile: $(STAMP)  ## rehearse every chapter's gpu (Colab) code path on stand-ins, on the CPU and on meta
	$(BIN)/python -m pytest -q -m gpu_rehearsal tests/test_gpu_profile.py

test-quick: $(STAMP)  ## the test suite without training runs and notebook execution
	COURSE_FAST=1 $(BIN)/python -m pytest -q -m "not slow"

# Colab installs the course library from the commit the chapters name (templates/header.ipynb, put
# in front of every chapter): the last commit that changed the library, so a notebook saved in
# Drive keeps working with its own library. tests/test_versions.py checks that it is current.
LIBRARY := utils pyproject.toml
release: $(STAMP)  ## regenerate chapters/ from solutions/, naming the library commit Colab installs
	@ref=$$(git log -1 --format=%H -- $(LIBRARY) 2>/dev/null); \
	if [ -z "$$ref" ]; then echo "release: not a git checkout; the install commit in templates/header.ipynb is kept"; \
	else \
		if [ -n "$$(git status --porcelain -- $(LIBRARY))" ]; then \
			echo "release: warning: utils/ or pyproject.toml has uncommitted changes, which Colab would not get:"; \
			echo "  commit them, then run make release again (the chapters name $$ref)"; fi; \
		$(BIN)/python -c 'import pathlib, re, sys; p = pathlib.Path("templates/header.ipynb"); \
			p.write_text(re.sub(r"^(    \"RELEASE = \\\")[\w.-]*", r"\g<1>" + sys.argv[1], p.read_text(), flags=re.M))' "$$ref"; \
	fi
	@for ch in $(CHAPTERS); do \
		$(BIN)/python -m nbgrader generate_assignment $$ch --force --no-db --log-level=WARN || exit 1; \
	done
	@echo "chapters/ regenerated: $(CHAPTERS); Colab installs the library at $$(git log -1 --format=%h -- $(LIBRARY) 2>/dev/null)"

grade: $(STAMP)  ## autograde grading/submitted/ -> grading/feedback/ and grading/grades.csv
	$(BIN)/python -m tools.grade $(GRADE_ARGS)

assets: $(STAMP)  ## rebuild the offline world in utils/assets/ (about 1 h 40 min cold on 2 cores; resumes from .world-cache/)
	$(BIN)/python -m tools.world

bench: $(STAMP)  ## print the benchmarks' figures (each chapter's wait, trainer throughput, recovery, grading)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

gpu-check: $(STAMP)  ## on a CUDA machine: every chapter in the real gpu profile (hub downloads), time and GPU memory
	@$(BIN)/python benchmarks/bench_chapters.py --gpu

clean-grading:  ## remove grading/ outputs except submissions
	rm -rf grading/autograded grading/feedback grading/gradebook.db grading/grades.csv grading/work
