#!/usr/bin/env bash
# System packages the lab runs on: PostgreSQL and Mosquitto (Debian packages), and
# docker-compose, which the tests use to validate docker-compose.yml statically,
# Chromium for the browser tests and Node.js/npm for the TimescaleDB test engine.
# Installs them with apt-get when they are missing; says clearly what to do when
# it cannot. Safe to run again and again: it does nothing when all is present.
set -euo pipefail

missing=()
pg_ok=false
for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then pg_ok=true; fi
done
$pg_ok || missing+=(postgresql)
{ command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } || missing+=(mosquitto)
# the documented onboarding walk-through (run by the tests) uses mosquitto_pub and jq
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v jq >/dev/null 2>&1 || missing+=(jq)
# the tests validate docker-compose.yml with `docker-compose config` (no Docker engine needed)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# the Fleet health dashboard's PromQL runs on a real Prometheus (and promtool checks its configuration)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# the lab console is tested in a real headless browser
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# the TimescaleDB test engine (PGlite) is installed with npm
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "setup: installing system packages: ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: apt-get not found. Install ${missing[*]} with your system's package manager, then run make again." >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "setup: installing ${missing[*]} needs root. Run: sudo apt-get install -y ${missing[*]}   then run make again." >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
