#!/bin/sh
# Refuses to start (exit 1) unless the migration ran: $SCHEMA_DIR/version must exist and be at
# least $REQUIRED_SCHEMA. Compose's service_completed_successfully already holds the app back
# while migrate fails; this check also covers `up --no-deps app` and a wiped volume.
version=$(cat "$SCHEMA_DIR/version" 2>/dev/null)
if [ -z "$version" ]; then
  echo "app: no $SCHEMA_DIR/version: the migrate service has not run; refusing to start" >&2
  exit 1
fi
if [ "$version" -lt "$REQUIRED_SCHEMA" ]; then
  echo "app: schema version $version is older than $REQUIRED_SCHEMA; refusing to start" >&2
  exit 1
fi

# The page: the version, the migrations applied and the schema they made.
mkdir -p /srv/www
ln -sfn "$SCHEMA_DIR" /srv/www/schema           # the raw files, under /schema/
{
  echo "<!doctype html><title>migrate example</title>"
  echo "<h1>Schema version $version</h1>"
  echo "<p>Applied migrations:</p><pre>$(cat "$SCHEMA_DIR/applied")</pre>"
  echo "<p><a href=\"/schema/schema.sql\">schema.sql</a>:</p><pre>$(cat "$SCHEMA_DIR/schema.sql")</pre>"
} >/srv/www/index.html
echo "app: schema version $version (at least $REQUIRED_SCHEMA needed): serving on :8080"
exec httpd -f -p 8080 -h /srv/www
