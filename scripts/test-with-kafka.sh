#!/usr/bin/env bash
# Starts a real Apache Kafka (KRaft, single node) from Maven Central jars, runs the whole suite
# against it, and stops it whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${KASSASYNC_KAFKA_PORT:-19092}"
export KASSASYNC_KAFKA_PORT="$PORT"

"$PY" deploy/kafka/broker.py fetch
mkdir -p test-artifacts
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
"$PY" -m pytest -q -p no:cacheprovider --durations=25 --junitxml=test-artifacts/junit.xml "$@"
