#!/bin/sh
# Prints an .env for docker compose with every secret it needs, each made fresh here: the
# services refuse a committed or guessable one, since compose's network is beyond loopback.
#   deploy/compose/secrets.sh > .env && docker compose up --build
# (.env is git-ignored; keep it: the NATS volume and the records are tied to its values.)
set -eu
cd "$(dirname "$0")/../.."
rand() { openssl rand -hex 32; }
echo "PHONE_HASH_KEY=$(rand)"
# NATS passwords: letters and digits, starting with a letter (users.conf reads them as is).
for u in GATEWAY SCORING OFFERS CONVERSIONS OPS; do echo "NATS_${u}_PASSWORD=p$(rand)"; done
echo "INTAKE_TOKENS=$(rand)"
echo "SITE_TOKENS=$(rand)"
echo "LINK_KEYS='$(go run ./cmd/yactl links keygen compose)'"
