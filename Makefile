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

test: setup lint
	$(CARGO) test
	scripts/test_python.sh

bench: setup
	$(CARGO) bench
