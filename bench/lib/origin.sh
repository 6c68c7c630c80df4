#!/usr/bin/env bash
# origin.sh start|stop — (used by bench/run.sh) the nginx origin on loopback:
# http://127.0.0.1:28080/{small,big} and https://127.0.0.1:28443/{small,big}; /small = 100 B, /big = 100 MiB.
# env: RUN (state dir: www/, cert, logs/, nginx.pid), CONF (bench/conf), ORIGIN_CPUS (optional taskset list)
set -euo pipefail
RUN=${RUN:?RUN (state dir) not set}; CONF=${CONF:?CONF (bench/conf) not set}
case "${1:-}" in
start)
  mkdir -p "$RUN/www" "$RUN/logs"
  [ -s "$RUN/www/small" ] || printf '%0100d' 0 > "$RUN/www/small"
  [ "$(stat -c %s "$RUN/www/big" 2>/dev/null || echo 0)" = 104857600 ] ||
    head -c $((100 << 20)) /dev/urandom > "$RUN/www/big"
  [ -s "$RUN/cert.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -days 30 -subj /CN=127.0.0.1 -keyout "$RUN/key.pem" -out "$RUN/cert.pem" 2>/dev/null
  chmod -R a+rX "$RUN/www"
  cp "$CONF/nginx.conf" "$RUN/nginx.conf"
  ${ORIGIN_CPUS:+taskset -c "$ORIGIN_CPUS"} nginx -p "$RUN/" -c "$RUN/nginx.conf" -e "$RUN/logs/error.log"
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:28080/small && break; sleep 0.1; done
  curl -sf -o /dev/null http://127.0.0.1:28080/small || { echo "origin does not answer" >&2; exit 1; }
  echo "nginx master pid $(cat "$RUN/nginx.pid")" ;;
stop)
  if [ -s "$RUN/nginx.pid" ]; then
    p=$(cat "$RUN/nginx.pid")
    if grep -qa "nginx: master" "/proc/$p/cmdline" 2>/dev/null; then   # never a reused pid
      kill "$p" && echo "stopped nginx $p"
    fi
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$RUN/nginx.pid" ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
