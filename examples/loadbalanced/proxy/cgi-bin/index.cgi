#!/bin/sh
# GET / (busybox httpd runs /cgi-bin/index.cgi for a directory that has no index.html): look
# $BACKEND up afresh, send the request to the first address the DNS server gave, and return
# the replica's answer.
#
# The name is resolved with nslookup rather than by wget itself: wget resolves through the
# C library's getaddrinfo, which sorts the addresses (RFC 6724 rule 9, the longest prefix
# shared with our own address first) and so always picks the same replica. nslookup keeps
# the DNS server's order, which rotates from one query to the next.
addr=$(nslookup -type=a "$BACKEND" 2>/dev/null | awk '/^Name:/ { getline; print $2; exit }')
if [ -z "$addr" ]; then
  printf 'Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\n'
  echo "proxy: $BACKEND does not resolve"
  exit 0
fi
if answer=$(timeout 5 wget -q -O - "http://$addr:$BACKEND_PORT/cgi-bin/whoami"); then
  printf 'Content-Type: text/plain\r\n\r\n'
  echo "proxy $(hostname) -> $BACKEND ($addr): $answer"
else
  printf 'Status: 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\n'
  echo "proxy: no answer from $BACKEND at $addr"
fi
