#!/usr/bin/env bash
# Starts a real Apache Kafka (KRaft, single node) from Maven Central jars, runs the whole suite
# against it, and stops it whatever happens.
#
# The suite runs in two passes: first every test not marked `serial`, spread over
# KASSASYNC_TEST_WORKERS pytest-xdist processes (default 3; 0 runs it in this process), one test
# file per worker at a time (--dist loadfile: a file's tests run in order, as written); then the
# tests marked `serial` (timing-sensitive ones that must not share the machine with the rest of
# the suite), one after the other. test-artifacts/junit.xml is both passes merged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${KASSASYNC_KAFKA_PORT:-19092}"
WORKERS="${KASSASYNC_TEST_WORKERS:-3}"
export KASSASYNC_KAFKA_PORT="$PORT"
# The brokers some tests start of their own (the broker lifecycle tests, the chaos test's broker
# that it restarts) take ports next to this run's (port + 50 and + 60, each with its controller
# on the next port), so that two checkouts testing at once on different ports never meet.
export KASSASYNC_KAFKA_LIFECYCLE_PORT="${KASSASYNC_KAFKA_LIFECYCLE_PORT:-$((PORT + 50))}"
export KASSASYNC_CHAOS_KAFKA_PORT="${KASSASYNC_CHAOS_KAFKA_PORT:-$((PORT + 60))}"

"$PY" deploy/kafka/broker.py fetch
mkdir -p test-artifacts
rm -f test-artifacts/junit.xml test-artifacts/junit-parallel.xml test-artifacts/junit-serial.xml
started=$("$PY" -c 'import time; print(time.time())')
# The trap comes after a successful start: a refused start must not stop someone else's broker.
BOOTSTRAP=$("$PY" deploy/kafka/broker.py start --port "$PORT")
stop_broker() {
  "$PY" deploy/kafka/broker.py stop --port "$PORT" --save-log test-artifacts/kafka-server.log \
    >/dev/null 2>&1 || true
}
trap stop_broker EXIT INT TERM
"$PY" -c "import time, sys; print(f'kafka broker ready at {sys.argv[1]} in {time.time() - float(sys.argv[2]):.1f} s')" "$BOOTSTRAP" "$started"
export KASSASYNC_KAFKA_BOOTSTRAP="$BOOTSTRAP"

PYTEST=("$PY" -m pytest -q -p no:cacheprovider)
parallel=(-m "not serial")
if [ "$WORKERS" != 0 ]; then
  parallel+=(-n "$WORKERS" --dist loadfile --no-loadscope-reorder)
fi
# A selection by marker (-m EXPR) of the caller's replaces the passes: one pass runs it.
for arg in "$@"; do
  case "$arg" in
    -m | -m*)
      "${PYTEST[@]}" "${parallel[@]:2}" --durations=25 --junitxml=test-artifacts/junit.xml "$@"
      exit $?
      ;;
  esac
done
first=0
"${PYTEST[@]}" "${parallel[@]}" --durations=25 --junitxml=test-artifacts/junit-parallel.xml "$@" \
  || first=$?
second=0
"${PYTEST[@]}" -m serial --durations=5 --junitxml=test-artifacts/junit-serial.xml "$@" || second=$?
"$PY" scripts/merge_junit.py test-artifacts/junit.xml \
  test-artifacts/junit-parallel.xml test-artifacts/junit-serial.xml
# Exit 5 is pytest's "no test selected": fine for one pass, not for both.
if [ "$first" = 5 ] && [ "$second" = 5 ]; then exit 5; fi
for code in "$first" "$second"; do
  if [ "$code" != 0 ] && [ "$code" != 5 ]; then exit "$code"; fi
done
