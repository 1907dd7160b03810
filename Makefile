# The two commands of the README: `make run` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DEMO ?= pcaps/android.pcap
SOURCES = pyproject.toml setup.py $(wildcard ext/*.pyx ext/decode.pxd pyprobe/*.py pyprobe/*/*.py)

.PHONY: run test test-long bench bench-live peers clean

# An editable install builds the extension into pyprobe/, so the tree is what runs;
# tests/test_install.py proves a plain `pip install .` into a fresh venv as well.
$(BIN)/.installed: $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/pyprobe -r $(DEMO)

peers:
	scripts/install-peers

test: $(BIN)/.installed peers
	$(BIN)/pytest -q -m "not long"

test-long: $(BIN)/.installed peers
	$(BIN)/pytest -q -m long

bench: $(BIN)/.installed peers
	$(BIN)/python bench/run_bench.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/generate.py

# live capture on a veth between two network namespaces, tcpreplay at rising rates (root)
bench-live: $(BIN)/.installed peers
	$(BIN)/python bench/live/run_live.py

clean:
	rm -rf $(VENV) build *.egg-info ext/*.c ext/record.pxd pyprobe/*.so
