# bindery developer entry points. `make serve` and `make test` are the README's two commands.
.PHONY: setup serve test lint build bench

CARGO ?= cargo

# Video decoding needs FFmpeg's libraries (scripts/setup.sh installs them on Debian as root); the
# feature is on when pkg-config finds them, so a machine without them still builds and tests.
# Evaluated when used, so `make test` sees what its setup step just installed.
FEATURES ?= $(shell pkg-config --exists libavformat libavcodec libswscale libavutil libswresample 2>/dev/null && echo --features video)

setup:
	scripts/setup.sh

build: setup
	$(CARGO) build --release $(FEATURES)

serve: build
	$(CARGO) run --release $(FEATURES) -- serve $(ARGS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets $(FEATURES) -- -D warnings

# The Rust tests of the PostgreSQL store run the PostgreSQL that .venv-test holds, so the venv
# comes first.
test: setup lint
	scripts/setup.sh --python
	$(CARGO) test $(FEATURES)
	scripts/test_python.sh

bench: setup
	$(CARGO) bench $(FEATURES)
