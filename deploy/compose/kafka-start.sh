#!/bin/sh
# Starts the compose Kafka broker with deploy/kafka/server.properties, the same file the tests'
# broker (deploy/kafka/broker.py) uses. Only log.dirs is rewritten (to the data volume); the
# listeners stay on 127.0.0.1:19092/19093 because every service runs on the host network.
set -eu
CONFIG=/tmp/server.properties
sed 's|^log\.dirs=.*|log.dirs=/var/lib/kafka/data|' /etc/kassasync/server.properties > "$CONFIG"
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  /opt/kafka/bin/kafka-storage.sh format --standalone \
    --cluster-id "${KAFKA_CLUSTER_ID:-kassasync-compose-01}" --config "$CONFIG"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$CONFIG"
