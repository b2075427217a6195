#!/bin/sh
# Writes .env for docker compose with every secret it needs, each made fresh here: the
# services refuse a committed or guessable one, since compose's network is beyond loopback.
#   deploy/compose/secrets.sh && docker compose up --build
# It never overwrites an .env (the NATS volume and the records are tied to its values:
# keep it), and writes it readable by you alone. With -, it prints to standard output.
set -eu
cd "$(dirname "$0")/../.."
command -v openssl >/dev/null || { echo "secrets.sh: openssl is needed" >&2; exit 1; }
rand() { openssl rand -hex 32; }
out=.env
[ "${1:-}" = - ] && out=/dev/stdout
if [ "$out" = .env ] && [ -e .env ]; then
	echo "secrets.sh: .env exists; keep it (the volume is tied to it), or move it away first" >&2
	exit 1
fi
# Every value first, each on its own line, so that a failure stops the script (set -e does
# not see one inside an echo's arguments).
phone=$(rand)
audit=$(rand)
intake=$(rand)
site=$(rand)
ops=$(rand)
links=$(go run ./cmd/yactl links keygen compose)
passwords=""
for u in GATEWAY SCORING OFFERS CONVERSIONS CATALOG IMPORTER AUDITOR PROVISION; do
	p=$(rand)
	passwords="${passwords}NATS_${u}_PASSWORD=p$p
"
done
umask 077
{
	echo "PHONE_HASH_KEY=$phone"
	echo "AUDIT_PSEUDONYM_KEY=$audit"
	# NATS passwords: letters and digits, starting with a letter (users.conf reads them as is).
	printf '%s' "$passwords"
	echo "INTAKE_TOKENS=$intake"
	echo "SITE_TOKENS=$site"
	echo "OPS_TOKENS=$ops"
	echo "LINK_KEYS='$links'"
} >"$out"
