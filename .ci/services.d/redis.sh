# Sourced by .ci/run (under set -euo pipefail): make sure the shared Redis answers on 127.0.0.1:6379.
# Installs and starts it when it is missing; fails loudly when it cannot be had.

_redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "services: installing redis-server" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! _redis_up; then
    echo "services: starting redis-server on 127.0.0.1:6379" >&2
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 100); do _redis_up && break; sleep 0.1; done
fi
if ! _redis_up; then
    echo "services: Redis does not answer on 127.0.0.1:6379 (see /var/log/redis/ci.log)" >&2
    exit 1
fi
echo "services: redis ok ($(redis-server --version | cut -d' ' -f3))" >&2
