#!/usr/bin/env bash
# Start local RabbitMQ and Redis when they do not answer (development and CI machines).
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # name port seconds
  local deadline=$((SECONDS + $3))
  until port_open "$2"; do
    if ((SECONDS > deadline)); then echo "$1 did not start on port $2" >&2; exit 1; fi
    sleep 0.5
  done
}

if ! port_open 6379; then
  command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
  echo "starting redis-server"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  wait_for redis 6379 30
fi

if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || { echo "rabbitmq-server is not installed (apt-get install rabbitmq-server)" >&2; exit 1; }
  echo "starting rabbitmq-server"
  rabbitmq-server -detached
  wait_for rabbitmq 5672 120
  rabbitmqctl await_startup >/dev/null 2>&1 || true
fi
