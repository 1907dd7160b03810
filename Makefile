# The two commands of the README: `make run` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DEMO ?= pcaps/android.pcap
SOURCES = pyproject.toml setup.py $(wildcard ext/*.pyx ext/meter/*.pxi ext/decode.pxd ext/extension.pxd pyprobe/*.py pyprobe/*/*.py)

.PHONY: run test test-long fuzz bench bench-live bench-against peers man deb clean

# An editable install builds the extension into pyprobe/, so the tree is what runs (compat
# mode: a plain path in a .pth, not an import hook, which would cost every start 10 ms),
# its bytecode compiled now (even where PYTHONDONTWRITEBYTECODE is set, starts need not compile);
# tests/test_install.py proves a plain `pip install .` into a fresh venv as well.
$(BIN)/.installed: $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	$(BIN)/python -m compileall -q pyprobe
	touch $@

run: $(BIN)/.installed
	$(BIN)/pyprobe -r $(DEMO)

peers:
	scripts/install-peers

test: $(BIN)/.installed peers
	$(BIN)/pytest -q -m "not long"

test-long: $(BIN)/.installed peers
	$(BIN)/pytest -q -m long

# The fuzz target (tests/fuzz/) for FUZZ_SECONDS, its extensions built apart with clang,
# bounds checks, AddressSanitizer and coverage for libFuzzer (PYPROBE_SANITIZE=1 in setup.py).
FUZZ_SECONDS ?= 600
FUZZ = build/fuzz
fuzz: $(BIN)/.installed
	command -v clang >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null)
	$(BIN)/pip install -q --disable-pip-version-check 'Cython>=3.0'
	CC=clang LDSHARED="clang -shared" PYPROBE_SANITIZE=1 $(BIN)/python setup.py -q build_ext --build-lib $(FUZZ)/lib --build-temp $(FUZZ)/tmp
	mkdir -p $(FUZZ)/corpus && find ../shared/pcaps/corpus pcaps -size -64k \( -name '*.pcap' -o -name '*.pcapng' \) -exec cp {} $(FUZZ)/corpus/ \;
	PYPROBE_EXT_DIR=$(FUZZ)/lib/pyprobe ASAN_OPTIONS=detect_leaks=0 \
	LD_PRELOAD="$$($(BIN)/python -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so" \
	$(BIN)/python tests/fuzz/capture_target.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=65536 -artifact_prefix=$(FUZZ)/ $(FUZZ)/corpus

bench: $(BIN)/.installed peers
	$(BIN)/python bench/run_bench.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/generate.py

# make bench-against BASE=<commit>: this tree against that one
bench-against: $(BIN)/.installed peers
	$(BIN)/python bench/against.py $(BASE)

# live capture on a veth between two network namespaces, tcpreplay at rising rates (root)
bench-live: $(BIN)/.installed peers
	$(BIN)/python bench/live/run_live.py

# The manual pages, made from the option table: build/man/pyprobe.8, pyprobe-generate.8, pyprobe-ctl.8
man: $(BIN)/.installed
	$(BIN)/python -m pyprobe.manpage --write build/man

# The Debian package build/pyprobe_VERSION_ARCH.deb (apt-get install ./build/pyprobe_*.deb):
# the venv's extensions, for Debian's python3 of the same minor version
deb: $(BIN)/.installed
	scripts/make-deb $(BIN)/python build

clean:
	rm -rf $(VENV) build *.egg-info ext/*.c ext/record.pxd ext/codes.pxd ext/meter/measures.pxi pyprobe/*.so
