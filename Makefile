# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create the virtual environment and install everything first.

PYTHON ?= python3
VENV   ?= .venv
# PyTorch first, pinned, so no requirement can pull a multi-GB CUDA build.
# Override for a GPU machine, e.g.  make TORCH="torch==2.13.0 --index-url <PyTorch CUDA wheel index>"
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.microsr-installed

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(PY) -m pytest || { s=$$?; [ $$s -ne 5 ] || echo 'pytest collected no tests' >&2; exit $$s; }

demo: install
	$(VENV)/bin/microsr demo --output demo_output

clean:
	rm -rf $(VENV) demo_output build *.egg-info src/*.egg-info .pytest_cache
