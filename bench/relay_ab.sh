#!/bin/bash
# The relay process (default) against the relay on the service's event loop (HELPDESK_OUTBOX_RELAY=inline), run
# alternately in one window: ticket_create.py, then portal_api_create.py, ROUNDS pairs each (docs/performance.md,
# section 18). Usage: bench/relay_ab.sh [ROUNDS] [TICKET_CLIENTS] [PORTAL_CLIENTS]; nothing else should run meanwhile.
set -u
cd "$(dirname "$0")/.."
rounds=${1:-3} ticket_clients=${2:-24} portal_clients=${3:-16}
calibrate() {
  python3 -c "import time
t=time.perf_counter(); s=0
for i in range(10**7): s+=i
print('calibration (docs/performance.md, section 15):', round(time.perf_counter()-t, 3), 's')"
}
calibrate
for bench in "ticket_create.py --clients $ticket_clients" "portal_api_create.py --clients $portal_clients"; do
  for i in $(seq "$rounds"); do
    for mode in auto inline; do
      echo "=== $bench, HELPDESK_OUTBOX_RELAY=$mode, pair $i, $(date -u +%T) UTC"
      # shellcheck disable=SC2086
      HELPDESK_OUTBOX_RELAY=$mode .venv/bin/python bench/$bench --runs 1 2>&1 | grep -E "^  run|throughput|p99 .*target"
    done
  done
done
calibrate
