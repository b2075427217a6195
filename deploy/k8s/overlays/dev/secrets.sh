#!/bin/sh
# Creates every Secret the dev overlay needs (secrets/*.env.example names them), each made
# fresh here: nothing is committed, since the services refuse a committed or guessable
# secret beyond loopback. Run once per cluster, from the repository's root:
#   deploy/k8s/overlays/dev/secrets.sh
# It prints the API token to POST with, and leaves no file behind.
set -eu
ns=${NAMESPACE:-yacredits-dev}
rand() { openssl rand -hex 32; }
k() { kubectl -n "$ns" create secret generic "$@" --dry-run=client -o yaml | kubectl apply -f - >/dev/null; }
kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
k phone-hash --from-literal=PHONE_HASH_KEY="$(rand)"
keys=$(mktemp) && trap 'rm -f "$keys"' EXIT
go run ./cmd/yactl links keygen "dev-$(date +%Y%m)" > "$keys"
k link-keys --from-file=keys.json="$keys"
# NATS passwords: letters and digits, starting with a letter (users.conf reads them as is).
for u in gateway scoring offers conversions ops route; do k "nats-$u" --from-literal=NATS_PASSWORD="p$(rand)"; done
token=$(rand)
k gateway-auth --from-literal=AUTH_TOKENS="$token" --from-literal=AUTH_CLIENT_ID= --from-literal=AUTH_CLIENT_SECRET=
k conversions-intake --from-literal=INTAKE_TOKENS="$(rand)" --from-literal=SITE_TOKENS="$(rand)"
k yandex-conversions --from-literal=YANDEX_TOKEN="$(rand)"
echo "Secrets made in $ns. POST with: Authorization: Bearer $token"
