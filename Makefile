# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create the virtual environment and install everything first.

PYTHON ?= python3
VENV   ?= .venv
# PyTorch first, pinned, so no requirement can pull a multi-GB CUDA build.
# Override for a GPU machine, e.g.  make TORCH="torch==2.13.0 --index-url <PyTorch CUDA wheel index>"
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.microsr-installed
# The napari GUI tests need an X display: Xvfb and the libraries Qt 6's xcb platform plugin loads, from the
# distribution's packages. `make test` installs the missing ones when it runs as root with apt-get; otherwise
# those tests are skipped with the reason.
GUI_APT := xvfb xauth libgl1 libegl1 libgl1-mesa-dri libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 \
           libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
           libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1
XVFB    := xvfb-run -a -s '-screen 0 1600x1200x24'

.PHONY: install display test demo screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test,napari,napari-test,bioimageio,distributed]'
	touch $(STAMP)

display:
	@[ -z "$$(dpkg-query -W -f='$${db:Status-Abbrev} $${Package}\n' $(GUI_APT) 2>&1 | grep -v '^ii')" ] \
	|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	     && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(GUI_APT); } \
	|| echo 'no Xvfb (installing it needs root and apt-get): the napari GUI tests will be skipped' >&2

test: install display
	@if command -v xvfb-run >/dev/null; then set -- $(XVFB); else set --; fi; \
	echo "$$* $(PY) -m pytest"; \
	"$$@" $(PY) -m pytest || { s=$$?; [ $$s -ne 5 ] || echo 'pytest collected no tests' >&2; exit $$s; }

demo: install
	$(VENV)/bin/microsr demo --output demo_output

screenshots: install display
	$(XVFB) $(PY) docs/screenshots.py

clean:
	rm -rf $(VENV) demo_output build *.egg-info src/*.egg-info .pytest_cache
