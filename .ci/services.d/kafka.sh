# Kafka: sourced by .ci/run before the tests (under set -euo pipefail).
#
# No Apache Kafka can be installed from the registries this project reaches. The Kafka
# sink's tests use librdkafka's mock cluster instead: a Kafka-protocol broker shipped inside
# the confluent-kafka wheel (PyPI), which tests/kafka_broker.py starts in a child process on
# free 127.0.0.1 ports, one per test session (and its own for the tests that stop a broker).
# Nothing has to keep running here: this installs the client into the project's venv and
# checks that a mock cluster starts and acknowledges a produce with acks=all, failing loudly
# (never skipping) when it cannot.

kafka_service_check() {
    local py="${VIRTUAL_ENV:-$PWD/.venv}/bin/python"
    if [ ! -x "$py" ]; then
        python3 -m venv .venv
        py="$PWD/.venv/bin/python"
    fi
    if ! "$py" -c 'import confluent_kafka' 2>/dev/null; then
        "$py" -m pip install -q 'confluent-kafka>=2.6'
    fi
    timeout 60 "$py" - <<'PY'
import sys
sys.path.insert(0, "tests")
import confluent_kafka
from kafka_broker import KafkaBroker

with KafkaBroker(3) as broker:
    broker.create_topic("ci-check", 3)
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.first, "acks": "all",
                                         "enable.idempotence": True, "message.timeout.ms": 10000})
    errors = []
    for n in range(10):
        producer.produce("ci-check", b"%d" % n, key=b"k%d" % n, on_delivery=lambda err, msg: errors.append(err))
    left = producer.flush(15)
    if left or len(errors) != 10 or any(errors):
        sys.exit(f"kafka: the mock cluster did not acknowledge: left={left} errors={errors}")
    print(f"kafka: librdkafka {confluent_kafka.libversion()[0]} mock cluster OK ({broker.bootstrap})")
PY
}

if ! kafka_service_check; then
    echo "kafka: cannot start a Kafka-protocol broker (librdkafka mock cluster); the Kafka tests need it" >&2
    exit 1
fi
unset -f kafka_service_check
