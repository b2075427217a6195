#!/bin/sh
# Creates every Secret the dev overlay needs (secrets/*.env.example names them), each made
# fresh here: nothing is committed, since the services refuse a committed or guessable
# secret beyond loopback. A Secret that exists is left alone (records and links are tied to
# its value), so running it again only fills in what is missing. It prints the API token to
# POST with when it makes one, and leaves no file behind.
set -eu
cd "$(dirname "$0")/../../../.."
command -v openssl >/dev/null || { echo "secrets.sh: openssl is needed" >&2; exit 1; }
ns=${NAMESPACE:-yacredits-dev}
rand() { openssl rand -hex 32; }
exists() { kubectl -n "$ns" get secret "$1" >/dev/null 2>&1; }
kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
if ! exists phone-hash; then
	v=$(rand)
	kubectl -n "$ns" create secret generic phone-hash --from-literal=PHONE_HASH_KEY="$v" >/dev/null
fi
if ! exists audit-pseudonym; then
	v=$(rand)
	kubectl -n "$ns" create secret generic audit-pseudonym --from-literal=AUDIT_PSEUDONYM_KEY="$v" >/dev/null
fi
if ! exists link-keys; then
	keys=$(go run ./cmd/yactl links keygen "dev-$(date +%Y%m)")
	kubectl -n "$ns" create secret generic link-keys --from-literal=keys.json="$keys" >/dev/null
fi
# NATS passwords: letters and digits, starting with a letter (users.conf reads them as is).
for u in gateway scoring offers conversions catalog importer auditor provision route; do
	if ! exists "nats-$u"; then
		v=$(rand)
		kubectl -n "$ns" create secret generic "nats-$u" --from-literal=NATS_PASSWORD="p$v" >/dev/null
	fi
done
if ! exists gateway-auth; then
	token=$(rand)
	kubectl -n "$ns" create secret generic gateway-auth --from-literal=AUTH_TOKENS="$token" \
		--from-literal=AUTH_CLIENT_ID= --from-literal=AUTH_CLIENT_SECRET= >/dev/null
	echo "POST with: Authorization: Bearer $token"
fi
if ! exists conversions-intake; then
	intake=$(rand)
	site=$(rand)
	ops=$(rand)
	kubectl -n "$ns" create secret generic conversions-intake --from-literal=INTAKE_TOKENS="$intake" \
		--from-literal=SITE_TOKENS="$site" --from-literal=OPS_TOKENS="$ops" >/dev/null
fi
# A Secret made before the operators' tokens existed gets them.
if [ -z "$(kubectl -n "$ns" get secret conversions-intake -o jsonpath='{.data.OPS_TOKENS}')" ]; then
	ops=$(rand)
	kubectl -n "$ns" patch secret conversions-intake --type merge -p "{\"stringData\":{\"OPS_TOKENS\":\"$ops\"}}" >/dev/null
fi
if ! exists yandex-conversions; then
	v=$(rand)
	kubectl -n "$ns" create secret generic yandex-conversions --from-literal=YANDEX_TOKEN="$v" >/dev/null
fi
echo "The Secrets of $ns are in place."
