# Two entry points (README): `make book` builds the whole book on the embedded default, `make test` runs every test.
# Both create/refresh .venv themselves; a stamp keyed on the hash of pyproject.toml + constraints.txt skips reinstalling.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= book
THREADS ?= 1
# notebooks executed side by side by `make book` (each kernel gets cores // JOBS threads)
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.stamp-$(HASH)
# glibc: keep freed activation buffers instead of mmap/munmap per batch (benchmarks/model_throughput.py measures it)
export GLIBC_TUNABLES := glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647
export OMP_NUM_THREADS := $(THREADS)
export SALIENCY_THREADS := $(THREADS)
export PYTHONHASHSEED := 0

.PHONY: env book check-book student test test-fast notebooks lint bench release clean help

help:
	@echo "make book   - create/refresh .venv, run every notebook (profile=$(PROFILE)) and build _build/html"
	@echo "make test   - create/refresh .venv, ruff, unit tests and nbval on the committed notebooks"
	@echo "make bench  - run the speed benchmarks (benchmarks/*.py)"
	@echo "make release - the evidence release: params/studies/release/* on 220 photos -> results/release (hours, resumable)"
	@echo "make check-book - open every page of _build/html in headless Chromium (builds the book if missing)"
	@echo "make student - the chapters without exercise solutions and outputs, in _build/student (+ .zip)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -c constraints.txt -e ".[book,test,interop]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" > /dev/null
	rm -f $(VENV)/.stamp-*
	touch $(STAMP)

env: $(STAMP)

book: env
	$(PY) -m saliency_core.run --profile $(PROFILE) --jobs $(JOBS)

# Reader's check: tracebacks, missing images, unrendered math, broken links, network needs; screenshots in _build/
check-book: env
	@test -f _build/html/index.html || $(PY) -m saliency_core.run --profile $(PROFILE)
	$(PY) tools/check_book.py --install-chromium

# Hand-out copies: every chapter without its "Solution" dropdowns and outputs (no kernel, no venv needed)
student:
	$(PYTHON) tools/make_student.py --out _build/student --zip

notebooks: env
	$(PY) -m saliency_core.run --profile smoke --execute-only --in-place

# unit tests and nbval run side by side, one thread each (2 cores); every part must pass.
# Lane A: unit tests, then the notebooks in NBVAL_A; lane B: the other notebooks (balanced by their smoke run time),
# then every benchmark script at a tiny budget (tests marked bench_smoke).
NBVAL := $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg
NBVAL_A := $(wildcard notebooks/05_leaderboard.ipynb notebooks/02_invariant_perturbation.ipynb notebooks/06_performance.ipynb)
NBVAL_B := $(filter-out $(NBVAL_A),$(sort $(wildcard notebooks/*.ipynb)))
test: env
	$(PY) -m ruff check saliency_core tests benchmarks
	@mkdir -p _build; \
	( $(NBVAL) $(NBVAL_B) > _build/nbval-b.log 2>&1; echo $$? > _build/nbval-b.rc; \
	  $(PY) -m pytest -q -p no:cacheprovider -m bench_smoke tests > _build/bench-smoke.log 2>&1 ) & nb=$$!; \
	$(PY) -m pytest -q -p no:cacheprovider -m "not bench_smoke" tests; unit=$$?; \
	$(NBVAL) $(NBVAL_A) > _build/nbval-a.log 2>&1; nba=$$?; \
	wait $$nb; bench=$$?; nbb=$$(cat _build/nbval-b.rc); \
	echo "== nbval lane A ($(NBVAL_A))"; tail -n 25 _build/nbval-a.log; \
	echo "== nbval lane B ($(NBVAL_B))"; tail -n 25 _build/nbval-b.log; \
	echo "== benchmark smoke (lane B)"; tail -n 25 _build/bench-smoke.log; \
	echo "unit=$$unit nbval_a=$$nba nbval_b=$$nbb bench=$$bench"; \
	test $$unit -eq 0 && test $$nba -eq 0 && test $$nbb -eq 0 && test $$bench -eq 0

test-fast: env
	$(PY) -m pytest -q -x tests

lint: env
	$(PY) -m ruff check saliency_core tests benchmarks

# The evidence release (issue 15): resumable (committed tables are imported into the store first), niced, hours on
# 2 cores; RELEASE_N grows the image set in prefix-stable steps. Needs ../shared/data/imagenet-sample-200 (or
# SALIENCY_RELEASE_DATA); without it only the 20 embedded photos are used.
RELEASE_N ?= 20,50
release: env
	nice -n 19 $(PY) tools/release.py --n $(RELEASE_N) --workers $(JOBS)

bench: env
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build _cache
