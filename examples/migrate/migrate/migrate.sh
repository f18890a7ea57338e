#!/bin/sh
# Applies, in name order, every /migrations/NNN_name.sql not yet listed in $SCHEMA_DIR/applied,
# then writes the schema version (NNN of the last one) to $SCHEMA_DIR/version. Running it again
# applies nothing new. "Applying" here appends the migration to $SCHEMA_DIR/schema.sql; a real
# job would feed it to its database.
set -eu
schema=${SCHEMA_DIR:-/schema}

if [ "${MIGRATE_FAIL:-0}" = 1 ]; then
  echo "migrate: MIGRATE_FAIL=1: failing on purpose, nothing applied" >&2
  exit 1
fi

mkdir -p "$schema"
touch "$schema/applied"
new=0
for file in /migrations/*.sql; do
  name=$(basename "$file" .sql)
  if grep -qx "$name" "$schema/applied"; then
    echo "migrate: $name: already applied"
    continue
  fi
  echo "migrate: $name: applying"
  { echo "-- $name"; cat "$file"; } >>"$schema/schema.sql"
  echo "$name" >>"$schema/applied"
  new=$((new + 1))
done

last=$(tail -n 1 "$schema/applied")
version=$(echo "${last%%_*}" | sed 's/^0*//')
echo "${version:-0}" >"$schema/version.new"
mv "$schema/version.new" "$schema/version"   # the app looks for this file: write it last
echo "migrate: schema at version ${version:-0} ($new new migration(s)); done"
