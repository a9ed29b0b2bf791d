# Every target creates .venv on first use. torch==2.13.0 is installed first so pip takes
# the CPU build on this machine's disk instead of fetching a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg $(BIN)/hiddenlens analyze demo --out runs/demo

# Browser tests render reports in headless Chromium; install it where apt-get can (CI, root).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: browser tests will be skipped"

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	for f in benchmarks/*.py; do HF_HUB_OFFLINE=1 $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check hiddenlens tests experiments benchmarks

clean:
	rm -rf $(VENV) runs
