# make demo  : set up .venv and run the quickstart (main job)
# make test  : set up .venv and run the test suite (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-all clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PY) -m venv $(VENV)
	# CPU build first: a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# easy-to-hard-data pins reportlab==3.5.68 which does not build on Python 3.11; the module
	# itself only needs numpy, torch and tqdm (installed with deepthink), hence --no-deps.
	$(BIN)/pip install -q --no-deps easy-to-hard-data==1.0.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deepthink demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

clean:
	rm -rf $(VENV) build *.egg-info
