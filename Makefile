# Every target installs what it needs first, so each works alone on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision are pinned to the releases this project is tested with.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# One torch thread per process unless told otherwise: on 2 shared cores, oversubscription costs more than it gains.
export OMP_NUM_THREADS ?= 1
export DEC_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test lint bench bench-denormals bench-scaling bench-peers clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dec-lightning run --config configs/digits.yaml --trainer.enable_progress_bar false

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Framework overhead, FLOP/s, data loading, k-means and refresh cost (< 10 min); results in benchmarks/results/.
bench: $(STAMP)
	$(PY) benchmarks/throughput.py && $(PY) benchmarks/kmeans_compare.py

# Late pretraining steps on a CPU: subnormal Adam moments, FlushDenormals and fused Adam (~10 min, MNIST).
bench-denormals: $(STAMP)
	$(PY) benchmarks/studies/denormals.py

# Growth of epoch, refresh and k-means time and of peak RSS with N up to 1e6, then a 4 GB memory-mapped
# file clustered end to end (peak RssAnon / file size; needs ~6 GB free in the temp folder; ~10-15 min).
bench-scaling: $(STAMP)
	$(PY) benchmarks/scaling.py

# ClustPy's DEC and IDEC against ours on MNIST, same epochs, seeds and threads, alternating (~1.5 h per seed
# on one core; the optional [peers] extra). One process per seed side by side, logs in runs/, and one more
# for ClustPy's DEC at its own epochs (seed 0, ~1 h); then benchmarks/results/peers.{json,md}.
PEER_SEEDS ?= 0 1 2 3 4
bench-peers: $(STAMP)
	$(PY) -m pip install -q $(TORCH_PINS) -e '.[dev,peers]'
	mkdir -p runs
	pids=; for s in $(PEER_SEEDS); do \
	  $(PY) benchmarks/peers.py --seed-list $$s --threads $(OMP_NUM_THREADS) --out benchmarks/results/peers_s$$s.json \
	    > runs/peers_s$$s.log 2>&1 & pids="$$pids $$!"; \
	done; \
	$(PY) benchmarks/peers.py --seed-list 0 --threads $(OMP_NUM_THREADS) --methods clustpy_dec_default \
	  --out benchmarks/results/peers_default_s0.json > runs/peers_default_s0.log 2>&1 & pids="$$pids $$!"; \
	for p in $$pids; do wait $$p || exit 1; done
	$(PY) benchmarks/peers.py --merge $(foreach s,$(PEER_SEEDS),benchmarks/results/peers_s$(s).json) \
	  benchmarks/results/peers_default_s0.json

# Measured DEC per seed -> benchmarks/results/$(DATASET).{json,md}; CONFIG=configs/$(DATASET).yaml for the paper's schedule.
DATASET ?= mnist
SEEDS ?= 5
CONFIG ?= $(if $(wildcard configs/$(DATASET)_fast.yaml),configs/$(DATASET)_fast.yaml,configs/$(DATASET).yaml)
reproduce: $(STAMP)
	$(PY) benchmarks/quality.py --dataset $(DATASET) --seeds $(SEEDS) --config $(CONFIG) --threads $(OMP_NUM_THREADS)

clean:
	rm -rf runs lightning_logs .pytest_cache
