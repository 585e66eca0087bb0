# unibench: `make bench` (the main job on the synthetic default world) and `make test`.
# Every target installs into .venv first when it is missing.
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
PYTHON    := $(BIN)/python
STAMP     := $(VENV)/.installed
RESULTS   ?= results
SEEDS     ?= 0 1 2
WORKERS   ?= 2
ABLATIONS ?= t5 t7 srcid_t1 srcid_fig3

.PHONY: install test bench ablations table perf smoke clean-results

$(STAMP): pyproject.toml
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
	# torch pinned to the CPU wheel on disk (an unpinned torch drags several GB of CUDA packages)
	$(PYTHON) -m pip install --quiet "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest tests -x -q -m "not slow"

bench: $(STAMP)
	$(PYTHON) -m benchmark grid main --results $(RESULTS) --seeds $(SEEDS) --executor pool --workers $(WORKERS)
	$(PYTHON) -m benchmark grid t6 --results $(RESULTS) --executor pool --workers $(WORKERS)
	for g in $(ABLATIONS); do $(PYTHON) -m benchmark grid $$g --results $(RESULTS) --executor pool --workers $(WORKERS) || exit 1; done
	$(PYTHON) -m benchmark table all --results $(RESULTS) --format all
	$(PYTHON) -m benchmark claims --results $(RESULTS)
	$(PYTHON) -m benchmark plot report --results $(RESULTS)

# only the ablation grids that retrain (codebook sizes, CLUB switches, quantizers); `make bench` includes them
ablations: $(STAMP)
	for g in $(ABLATIONS); do $(PYTHON) -m benchmark grid $$g --results $(RESULTS) --executor pool --workers $(WORKERS) || exit 1; done
	$(PYTHON) -m benchmark table all --results $(RESULTS) --format all
	$(PYTHON) -m benchmark claims --results $(RESULTS)
	$(PYTHON) -m benchmark plot report --results $(RESULTS)

table: $(STAMP)
	$(PYTHON) -m benchmark table all --results $(RESULTS) --format all
	$(PYTHON) -m benchmark claims --results $(RESULTS)

perf: $(STAMP)
	$(PYTHON) -m pytest tests/benchmarks -m "" -k "not paper_scale" --benchmark-enable --benchmark-json=$(RESULTS)/perf.json -q
	$(PYTHON) -m benchmark.perf_summary $(RESULTS)/perf.json > $(RESULTS)/perf.md
	@cat $(RESULTS)/perf.md

smoke: $(STAMP)
	$(PYTHON) -m benchmark grid main --profile smoke --results /tmp/unibench-smoke --seeds 0

clean-results:
	rm -rf $(RESULTS)/cells $(RESULTS)/pretrain $(RESULTS)/scratch
