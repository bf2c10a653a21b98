# Two entry points for a new user: `make demo` and `make test`. Both set up .venv once (stamp file).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: setup test demo clean

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,slurm]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q tests

demo: $(STAMP)
	$(BIN)/mertool demo --out $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
