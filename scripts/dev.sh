#!/usr/bin/env bash
# `make dev`: wrangler dev on the embedded default (storage persisted under
# .wrangler/state). AUTH_MODE defaults to open here; with AUTH_MODE=jwt the
# access variables are passed from the environment.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# A throwaway webhook signing key for subscriptions, kept with the local
# storage so receivers' cached JWKS stay valid across restarts; webhooks to
# loopback receivers are allowed here (README.md, Subscriptions).
mkdir -p .wrangler
if [ ! -s .wrangler/dev-signing-key ]; then
  node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("base64url"))' > .wrangler/dev-signing-key
fi
args=(--ip 127.0.0.1 --port "${PORT:-8787}" --persist-to .wrangler/state
  --var "SUBSCRIPTION_SIGNING_KEY:${SUBSCRIPTION_SIGNING_KEY:-$(cat .wrangler/dev-signing-key)}"
  --var "SUBSCRIPTION_DEV_LOOPBACK:${SUBSCRIPTION_DEV_LOOPBACK:-1}"
  --var "LONG_POLL_TIMEOUT_MS:${LONG_POLL_TIMEOUT_MS:-20000}"
  --var "AUTH_MODE:${AUTH_MODE:-open}")
if [ "${AUTH_MODE:-open}" = "jwt" ]; then
  for v in AUTH_JWT_SECRET AUTH_JWKS AUTH_ISSUER AUTH_AUDIENCE PUBLIC_READ CORS_ORIGINS; do
    if [ -n "${!v:-}" ]; then args+=(--var "$v:${!v}"); fi
  done
fi
exec wrangler dev "${args[@]}"
