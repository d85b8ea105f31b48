# bindery developer entry points. `make serve` and `make test` are the README's two commands.
.PHONY: setup serve test lint build bench

CARGO ?= cargo

setup:
	scripts/setup.sh

build: setup
	$(CARGO) build --release

serve: build
	$(CARGO) run --release -- serve $(ARGS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The Rust tests of the PostgreSQL store run the PostgreSQL that .venv-test holds, so the venv
# comes first.
test: setup lint
	scripts/setup.sh --python
	$(CARGO) test
	scripts/test_python.sh

bench: setup
	$(CARGO) bench
