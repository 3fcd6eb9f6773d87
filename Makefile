# make demo  : set up .venv and run the quickstart (main job)
# make test  : set up .venv and run the test suite (what CI runs), on this CPU's own best kernels
# make test-isa : the same fast suite under ONEDNN_MAX_CPU_ISA=AVX2 (another CPU's kernel paths)
# make test-learning-isa : only the learning tests (-m learning) under AVX2 (CI runs this after `make test`)
# make test-all : every test, slow ones included (installs the `cluster` extra, ray[default], first)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CLUSTER_STAMP := $(VENV)/.installed-cluster

.PHONY: venv demo test test-isa test-learning-isa test-all clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PY) -m venv $(VENV)
	# CPU build first: a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# easy-to-hard-data pins reportlab==3.5.68 which does not build on Python 3.11; the module
	# itself only needs numpy, torch and tqdm (installed with deepthink), hence --no-deps.
	$(BIN)/pip install -q --no-deps easy-to-hard-data==1.0.0
	$(BIN)/pip install -q -e '.[test,optuna]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deepthink demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# CPUs round differently along their kernel paths (AVX-512, AMX, AVX2): a test that asserts learning
# must pass on each. ONEDNN_MAX_CPU_ISA=AVX2 makes an AVX-512 machine take an AVX2 machine's paths.
test-isa: $(STAMP)
	ONEDNN_MAX_CPU_ISA=AVX2 $(BIN)/python -m pytest -q

test-learning-isa: $(STAMP)
	ONEDNN_MAX_CPU_ISA=AVX2 $(BIN)/python -m pytest -q -m learning

# The slow tests start a real `ray start --head` and submit `ray job`s: they need ray[default]
# (the `cluster` extra), which the fast suite and CI do not; without it those tests skip, saying so.
$(CLUSTER_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,cluster]'
	touch $(CLUSTER_STAMP)

test-all: $(CLUSTER_STAMP)
	$(BIN)/python -m pytest -q -m ''

clean:
	rm -rf $(VENV) build *.egg-info
