# Sourced by .ci/run (under set -euo pipefail): make sure NATS with JetStream answers on 127.0.0.1:4222.
# Installs and starts it when it is missing; fails loudly when it cannot be had.

_nats_up() {
    # the server greets every client with INFO {...}; JetStream must be on
    ( exec 3<>/dev/tcp/127.0.0.1/4222 && IFS= read -r -t 3 line <&3 && [[ $line == *'"jetstream":true'* ]] ) 2>/dev/null
}

if [ ! -x /usr/sbin/nats-server ]; then
    echo "services: installing nats-server" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi
if ! _nats_up; then
    echo "services: starting nats-server -js on 127.0.0.1:4222" >&2
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log >&2
    for _ in $(seq 1 100); do _nats_up && break; sleep 0.1; done
fi
if ! _nats_up; then
    echo "services: NATS with JetStream does not answer on 127.0.0.1:4222 (see /var/log/nats-server.log)" >&2
    exit 1
fi
echo "services: nats ok ($(/usr/sbin/nats-server --version))" >&2
