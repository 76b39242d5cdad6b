# Two commands do everything (README.md): `make dev` and `make test`.
# Each runs the idempotent set-up first.
.PHONY: setup build dev test bench fuzz crash-test token clean

PORT ?= 8787
LONG_POLL_TIMEOUT_MS ?= 20000

setup:
	@./scripts/setup.sh

build: setup
	@./scripts/build.sh

# Runs the worker locally on http://127.0.0.1:$(PORT); Durable Object storage
# persists under .wrangler/state, so streams survive a restart. Access control
# is off (AUTH_MODE=open) unless AUTH_MODE=jwt is in the environment; then the
# AUTH_* and PUBLIC_READ variables are taken from the environment too.
dev: setup
	@PORT=$(PORT) LONG_POLL_TIMEOUT_MS=$(LONG_POLL_TIMEOUT_MS) ./scripts/dev.sh

# Prints a token signed with AUTH_JWT_SECRET (from the environment):
#   make token SCOPE="read:chat/** append:chat/**" TTL=3600 [SUB=alice]
token:
	@node scripts/token.mjs

test:
	@./scripts/setup.sh --browser
	@./scripts/test.sh

# More fuzzing than `make test` does (2,000,000 request sequences).
fuzz: setup
	@FUZZ_CASES=$${FUZZ_CASES:-2000000} cargo test --release --test fuzz -- --nocapture

# The SIGKILL crash test alone (make test runs it too).
crash-test: build
	@bash -c 'source scripts/env.sh && vitest run miniflare-tests/crash.test.ts'

# Benchmarks under local workerd (README.md); not part of `make test`.
bench: build
	@mkdir -p .test-results && node bench/run.mjs --out .test-results/bench.json
	@node bench/clients.mjs

clean:
	rm -rf build target .test-results
