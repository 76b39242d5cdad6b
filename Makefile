# Two commands do everything (README.md): `make dev` and `make test`.
# Each runs the idempotent set-up first.
.PHONY: setup build dev test bench clean

PORT ?= 8787
LONG_POLL_TIMEOUT_MS ?= 20000

setup:
	@./scripts/setup.sh

build: setup
	@./scripts/build.sh

# Runs the worker locally on http://127.0.0.1:$(PORT); Durable Object storage
# persists under .wrangler/state, so streams survive a restart.
dev: setup
	@bash -c 'source scripts/env.sh && exec wrangler dev --ip 127.0.0.1 --port $(PORT) \
		--persist-to .wrangler/state --var LONG_POLL_TIMEOUT_MS:$(LONG_POLL_TIMEOUT_MS)'

test: setup
	@./scripts/test.sh

# Benchmarks under local workerd (README.md); not part of `make test`.
bench: build
	@mkdir -p .test-results && node bench/live.mjs --out .test-results/bench-live.json

clean:
	rm -rf build target .test-results
