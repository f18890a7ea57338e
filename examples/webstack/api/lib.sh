# What the api's CGI scripts share (sourced, not run). httpd passes its environment on, so
# STORE_URL and API_TOKEN_FILE come from the image and compose.yaml.

reply() { # STATUS [TEXT]: the CGI header, then TEXT as the body
  printf 'Status: %s\r\nContent-Type: text/plain\r\n\r\n' "$1"
  [ -z "$2" ] || printf '%s\n' "$2"
}

# Every call but health and status must carry the secret: "X-Api-Token: <api_token>".
require_token() {
  token=$(cat "$API_TOKEN_FILE" 2>/dev/null)
  if [ -z "$token" ]; then
    reply "503 Service Unavailable" "api: no token in $API_TOKEN_FILE (is the secret mounted?)"
    exit 0
  fi
  if [ "$HTTP_X_API_TOKEN" != "$token" ]; then
    reply "401 Unauthorized" "api: send the header X-Api-Token (the api_token secret)"
    exit 0
  fi
}

# (Timeouts come from the timeout applet: this busybox's "wget -T" crashes. They are generous:
# on a loaded host the chain web -> api -> store is slow, and slow must not read as down.)
store_get() { # KEY: print its value; fails when unset or the store is down
  timeout 15 wget -q -O - "$STORE_URL/cgi-bin/kv/$1" 2>/dev/null
}

store_set() { # KEY VALUE
  timeout 15 wget -q -O /dev/null --post-data "$2" "$STORE_URL/cgi-bin/kv/$1"
}

# Pass this CGI request (method, body) on to the store's PATH and print its whole response,
# status line included: busybox httpd sends output starting with "HTTP/1." as it is. Raw HTTP
# over nc, since busybox wget knows only GET and POST and drops the body of a 4xx answer.
store_forward() { # PATH
  hostport=${STORE_URL#http://}
  length=${CONTENT_LENGTH:-0}
  {
    printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: %s\r\n\r\n' \
      "$REQUEST_METHOD" "$1" "$hostport" "$length"
    [ "$length" -eq 0 ] || head -c "$length"
  } | nc -w 20 "${hostport%:*}" "${hostport#*:}" >/tmp/forward.$$
  if [ -s /tmp/forward.$$ ]; then cat /tmp/forward.$$; else reply "502 Bad Gateway" "api: no answer from the store"; fi
  rm -f /tmp/forward.$$
}
