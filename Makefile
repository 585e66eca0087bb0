# unibench: `make bench` (the main job on the synthetic default world) and `make test`.
# Every target installs into .venv first when it is missing.
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
PYTHON    := $(BIN)/python
STAMP     := $(VENV)/.installed
RESULTS   ?= results
WORKERS   ?= 2
ABLATIONS ?= t5 t7 srcid_t1 srcid_fig3

.PHONY: install test bench ablations table perf perf-paper smoke clean-results

$(STAMP): pyproject.toml
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
	# torch pinned to the CPU wheel on disk (an unpinned torch drags several GB of CUDA packages)
	$(PYTHON) -m pip install --quiet "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

# then the precision tests again with oneDNN limited to AVX2: a test that silently assumes AVX-512-BF16 / AMX (a bf16
# LSTM on CPU) turns CI red on a machine that has them, instead of on users' AVX2 laptops
# (pyproject's addopts already give -q; a second -q would hide the counts line; -rs names every skip's reason)
test: $(STAMP)
	$(PYTHON) -m pytest tests -x -rs -m "not slow"
	ONEDNN_MAX_CPU_ISA=AVX2 $(PYTHON) -m pytest tests/methods/test_precision.py -x -rs -m "not slow"

# one cell list, one progress display: the main grid (3 seeds) + the TOC criterion grid + the retraining ablations
bench: $(STAMP)
	$(PYTHON) -m benchmark grid main t6 $(ABLATIONS) --results $(RESULTS) --executor pool --workers $(WORKERS)
	$(PYTHON) -m benchmark table all --results $(RESULTS) --format all
	$(PYTHON) -m benchmark claims --results $(RESULTS)
	$(PYTHON) -m benchmark plot report --results $(RESULTS)
	$(PYTHON) -m benchmark report --results $(RESULTS)

# only the ablation grids that retrain (codebook sizes, CLUB switches, quantizers); `make bench` includes them
ablations: $(STAMP)
	$(PYTHON) -m benchmark grid $(ABLATIONS) --results $(RESULTS) --executor pool --workers $(WORKERS)
	$(PYTHON) -m benchmark table all --results $(RESULTS) --format all
	$(PYTHON) -m benchmark claims --results $(RESULTS)
	$(PYTHON) -m benchmark plot report --results $(RESULTS)

table: $(STAMP)
	$(PYTHON) -m benchmark table all --results $(RESULTS) --format all
	$(PYTHON) -m benchmark claims --results $(RESULTS)

# the pytest-benchmark suite (tests/benchmarks), slow cases included (a whole `make bench` from an empty store is
# one of them: ~15 min); paper-scale cases are left to `make perf-paper`
perf: $(STAMP)
	$(PYTHON) -m pytest tests/benchmarks -m "" -k "not paper_scale" --benchmark-enable --benchmark-json=$(RESULTS)/perf.json -q
	$(PYTHON) -m benchmark.perf_summary $(RESULTS)/perf.json > $(RESULTS)/perf.md
	@cat $(RESULTS)/perf.md

# paper scale on this machine: one step per method at the released widths, and one pretraining epoch streamed from the
# paper-profile corpus (40k clips, video [10,7,7,512]; generated once into $(PAPER_WORLD), ~4 min, 20 GB) with its
# peak RSS
PAPER_WORLD ?= $(RESULTS)/data/paper-s0
perf-paper: $(STAMP)
	@test -f $(PAPER_WORLD)/pretrain.h5 || $(PYTHON) -m benchmark data synth --profile paper --seed 0 --out $(PAPER_WORLD)
	UNIBENCH_PAPER_WORLD=$(PAPER_WORLD) $(PYTHON) -m pytest tests/benchmarks -m "" -k "paper_scale" --benchmark-enable --benchmark-json=$(RESULTS)/perf-paper.json -q
	$(PYTHON) -m benchmark.perf_summary $(RESULTS)/perf-paper.json > $(RESULTS)/perf-paper.md
	@cat $(RESULTS)/perf-paper.md

smoke: $(STAMP)
	$(PYTHON) -m benchmark grid main --profile smoke --results /tmp/unibench-smoke --seeds 0

clean-results:
	rm -rf $(RESULTS)/cells $(RESULTS)/pretrain $(RESULTS)/scratch
