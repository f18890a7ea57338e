#!/bin/sh
# Every $INTERVAL seconds, POST a heartbeat to the api (which counts it in the store) and log
# the answer. The api wants the token from the api_token secret in X-Api-Token.
token=$(cat "$API_TOKEN_FILE") || { echo "worker: no token at $API_TOKEN_FILE" >&2; exit 1; }
trap 'echo "worker: stopping"; exit 0' TERM INT
echo "worker: sending a heartbeat to $API_URL every ${INTERVAL}s"
while :; do
  if answer=$(timeout 5 wget -q -O - --header "X-Api-Token: $token" --post-data "$(hostname)" \
      "$API_URL/cgi-bin/heartbeat" 2>&1); then
    echo "worker: $(date -u +%H:%M:%S) $answer"
  else
    echo "worker: $(date -u +%H:%M:%S) heartbeat failed: $answer" >&2
  fi
  sleep "$INTERVAL" & wait $!   # in the background, so SIGTERM is handled at once
done
