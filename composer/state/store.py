"""The SQLite store: what was asked for and what was allocated, kept in the state root.

The runtime and the kernel are the truth for what is running; this database is the truth for
desired project specs, IP leases, image references and image metadata. Design points:

- **WAL journal** so that readers (``composer ps``, the engine's observers) never block the one
  writer, and a writer never blocks readers.
- **busy_timeout** so that several composer processes (an engine and a CLI, or two CLIs during a
  hand-over) can share the file: a second writer waits for the first instead of failing at once
  with "database is locked".
- **Every change is a transaction** opened with ``BEGIN IMMEDIATE``: the write lock is taken up
  front, so a transaction never has to upgrade a read lock to a write lock half way through
  (SQLite reports that case as SQLITE_BUSY *without* waiting, to avoid deadlocks).
  ``synchronous=FULL`` makes a commit durable across power loss, not only across process death,
  because a lost commit of an IP lease or an image registration is worse than a slower commit.
- **Versioned migrations** in :data:`MIGRATIONS`, one transaction each, with ``PRAGMA
  user_version`` recording the version reached. A crash in the middle of a migration leaves the
  previous version intact, and the next open simply runs it again. A database written by a newer
  composer is refused before anything is touched.

Ordering with the blob store: blobs are written and fsynced *before* the rows naming them are
committed, so a crash leaves at worst an unreferenced blob (garbage collected later), never a row
naming a blob that is not there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.errors import ComposerError

__all__ = [
    "MIGRATIONS",
    "BlobRow",
    "ImageRow",
    "LayerInfo",
    "LayerRow",
    "Store",
    "StoreError",
    "chain_id",
]

#: The file name of the database inside a state root.
DB_NAME = "state.db"

#: The default time a writer waits for another process's transaction to finish, in seconds.
DEFAULT_TIMEOUT = 10.0


class StoreError(ComposerError):
    """The state database cannot be opened, migrated or written as asked."""


#: ``(version, SQL script)`` pairs, versions strictly increasing from 1. Never edit a released
#: migration: add a new one. Each script runs inside one transaction together with the update of
#: ``PRAGMA user_version``, so it is applied entirely or not at all.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        -- NOT NULL on every key: SQLite, unlike the SQL standard, lets a TEXT PRIMARY KEY be NULL.
        -- Blobs known to the content-addressed store (the files live under images/blobs).
        CREATE TABLE blobs (
            digest     TEXT PRIMARY KEY NOT NULL,
            size       INTEGER NOT NULL,
            media_type TEXT,
            created    REAL NOT NULL
        );
        -- An image is identified by the digest of its config, as Docker does.
        CREATE TABLE images (
            id              TEXT PRIMARY KEY NOT NULL,
            manifest_digest TEXT,
            config          TEXT NOT NULL,
            created         REAL NOT NULL
        );
        CREATE TABLE image_refs (
            ref      TEXT PRIMARY KEY NOT NULL,
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
        );
        -- Without this index, deleting an image scans every ref to apply the cascade.
        CREATE INDEX image_refs_image_id ON image_refs(image_id);
        CREATE TABLE image_layers (
            image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            position    INTEGER NOT NULL,
            diff_id     TEXT,
            chain_id    TEXT,
            blob_digest TEXT,
            PRIMARY KEY (image_id, position)
        );
        -- Unpacked layers, shared between images by chain id.
        CREATE TABLE layers (
            chain_id TEXT PRIMARY KEY NOT NULL,
            diff_id  TEXT NOT NULL,
            parent   TEXT,
            size     INTEGER
        );
        """,
    ),
    (
        2,
        """
        -- Containers the engine made: what was asked (spec, as JSON) and what it last saw.
        -- The OCI runtime and conmon's exit files are the truth for what runs; these rows say
        -- what to adopt, restart and report after an engine restart.
        CREATE TABLE containers (
            id              TEXT PRIMARY KEY NOT NULL,
            name            TEXT NOT NULL UNIQUE,
            image_id        TEXT NOT NULL,
            image_ref       TEXT NOT NULL,
            spec            TEXT NOT NULL,
            created         REAL NOT NULL,
            status          TEXT NOT NULL,
            started_at      REAL,
            finished_at     REAL,
            exit_code       INTEGER,
            oom_killed      INTEGER NOT NULL DEFAULT 0,
            restart_count   INTEGER NOT NULL DEFAULT 0,
            stopped_by_user INTEGER NOT NULL DEFAULT 0,
            health          TEXT,
            boot_id         TEXT,
            conmon_pid      INTEGER,
            pid             INTEGER,
            runtime         TEXT
        );
        -- Image GC asks "does a container use this image?" for every candidate.
        CREATE INDEX containers_image_id ON containers(image_id);
        """,
    ),
    (
        3,
        """
        -- Named volumes: directories under the state root (volumes/<name>/_data) with what
        -- was asked of them. They outlive containers; only an explicit removal deletes them.
        CREATE TABLE volumes (
            name    TEXT PRIMARY KEY NOT NULL,
            driver  TEXT NOT NULL,
            labels  TEXT NOT NULL,
            options TEXT NOT NULL,
            created REAL NOT NULL
        );
        """,
    ),
    (
        4,
        """
        -- IP leases: one address of a network per container attachment. The primary key is
        -- what makes an address impossible to hand out twice, whatever crashed when.
        CREATE TABLE leases (
            network   TEXT NOT NULL,
            address   TEXT NOT NULL,
            container TEXT NOT NULL,
            created   REAL NOT NULL,
            PRIMARY KEY (network, address)
        );
        CREATE UNIQUE INDEX leases_attachment ON leases(network, container);
        """,
    ),
    (
        5,
        """
        -- Networks: what was asked of each (name, driver, options, labels) and what was
        -- chosen for it (bridge name, subnet, gateway). The bridge's name carries the state
        -- root's tag, so teardown finds it whatever the configuration says today.
        CREATE TABLE networks (
            id       TEXT PRIMARY KEY NOT NULL,
            name     TEXT NOT NULL UNIQUE,
            driver   TEXT NOT NULL,
            bridge   TEXT NOT NULL UNIQUE,
            subnet   TEXT NOT NULL,
            gateway  TEXT NOT NULL,
            ip_range TEXT NOT NULL,
            reserved TEXT NOT NULL,
            internal INTEGER NOT NULL,
            labels   TEXT NOT NULL,
            options  TEXT NOT NULL,
            created  REAL NOT NULL
        );
        -- The host ports a running container was given (random ones are chosen at start):
        -- what `port` reports and what the NAT table is rebuilt from.
        ALTER TABLE containers ADD COLUMN ports TEXT;
        """,
    ),
    (
        6,
        """
        -- The builder's cache: a step's key (its parent image, its instruction, its args and
        -- env, the content of what it copies) -> the image that step made. It goes with the
        -- image (an image removed or pruned is a cache miss, never a dangling hit).
        CREATE TABLE build_cache (
            key      TEXT PRIMARY KEY NOT NULL,
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            created  REAL NOT NULL
        );
        CREATE INDEX build_cache_image_id ON build_cache(image_id);
        """,
    ),
    (
        7,
        """
        -- Compose projects the engine brought up: the desired project (the normalized model
        -- and the options of the last up) so that `ls` and later reconciles know it without
        -- the compose files. A project's row goes with `down`.
        CREATE TABLE projects (
            name     TEXT PRIMARY KEY NOT NULL,
            desired  TEXT NOT NULL,
            updated  REAL NOT NULL
        );
        -- The hashed configuration each project container was created from: the planner's
        -- field-level reasons ("environment.DEBUG changed") compare against it.
        CREATE TABLE service_configs (
            container_id TEXT PRIMARY KEY NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
            config       TEXT NOT NULL
        );
        """,
    ),
    (
        8,
        """
        -- Background watchers (`up -d --watch`): one `composer watch` process per project,
        -- started by the engine and outliving it. A pid alone could name another process
        -- after the watcher died, so its start time (/proc/PID/stat, clock ticks since boot)
        -- and the boot it ran in are kept beside it: all three must match before it is
        -- reported as watching, or signalled.
        CREATE TABLE watchers (
            project     TEXT PRIMARY KEY NOT NULL,
            pid         INTEGER NOT NULL,
            start_ticks INTEGER NOT NULL,
            boot_id     TEXT NOT NULL,
            started_at  REAL NOT NULL,
            log_path    TEXT NOT NULL,
            argv        TEXT NOT NULL
        );
        """,
    ),
]


@dataclass(frozen=True, slots=True)
class LayerRow:
    """One layer of an image, bottom first.

    ``diff_id`` is the digest of the uncompressed tar (from the config's ``rootfs.diff_ids``),
    ``chain_id`` identifies the unpacked filesystem up to and including this layer (see
    :func:`chain_id`), ``blob_digest`` is the (usually compressed) blob in the blob store, and
    ``size`` the size of the uncompressed tar when known.
    """

    diff_id: str
    chain_id: str
    blob_digest: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ImageRow:
    """A registered image: its config (JSON text), layers bottom first and references."""

    id: str
    manifest_digest: str | None
    config: str
    created: float
    layers: tuple[LayerRow, ...]
    refs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """An unpacked layer known to the store, shared by every image whose stack contains it."""

    chain_id: str
    diff_id: str
    parent: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class BlobRow:
    """Metadata about a blob in the content-addressed store."""

    digest: str
    size: int
    media_type: str | None
    created: float


def chain_id(parent: str | None, diff_id: str) -> str:
    """The OCI chain id of a layer: its diff id at the bottom, else sha256(parent + " " + diff).

    Two images that share their bottom layers share the chain ids of those layers, so the
    unpacked directories are shared too.
    """
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into single statements.

    ``executescript`` cannot be used: it COMMITs any open transaction first, which would apply a
    migration outside the transaction that records its version. Pieces are joined until SQLite
    says the statement is complete, so a ``;`` inside a string literal or a trigger body does not
    split it.
    """
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if _strip_comments(statement).strip(" \t\r\n;"):
                yield statement
    if _strip_comments(buffer).strip(" \t\r\n;"):
        raise StoreError(f"incomplete SQL statement in migration: {buffer.strip()[:80]!r}")


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


class Store:
    """The state database of one state root.

    A ``Store`` holds one connection. It may be shared between threads (calls are serialized by
    a lock); several processes may each open their own ``Store`` on the same file.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(path)
        self._timeout = timeout
        self._lock = threading.RLock()
        self._savepoints = 0
        # Create the file ourselves so that it is private from the first byte: it holds project
        # specs, which hold environment variables, which hold secrets. SQLite gives the -wal and
        # -shm files the permissions of the database file.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
        except OSError as e:
            raise StoreError(f"cannot open state database {self.path}: {e.strerror}") from e
        try:
            # isolation_level=None: no implicit transactions; every one is explicit, below.
            conn = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open state database {self.path}: {e}") from e
        self._conn: sqlite3.Connection | None = conn
        try:
            self._setup(conn)
        except BaseException:
            conn.close()
            self._conn = None
            raise

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> Store:
        """Open (creating if needed) the store of a state root: ``root/state.db``."""
        root = Path(root)
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create state root {root}: {e.strerror}") from e
        return cls(root / DB_NAME, timeout=timeout)

    # -- connection, transactions, migrations -------------------------------------------------

    def _setup(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            # Read the version before changing anything (even the journal mode, which is stored
            # in the file): a database from a newer composer must be left exactly as it was.
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path} is not a usable composer state database: {e}") from e
        self._refuse_newer(version)
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            # Foreign keys are off by default in SQLite and are a per-connection setting; the
            # ON DELETE CASCADE of refs and layers depends on them.
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.OperationalError as e:
            raise StoreError(f"cannot configure state database {self.path}: {e}") from e
        if mode != "wal":
            # WAL needs shared memory between processes; network filesystems lack it.
            raise StoreError(
                f"state database {self.path} cannot use WAL journaling (got {mode!r}); "
                "put the state root on a local filesystem"
            )
        self._migrate()

    def _refuse_newer(self, version: int) -> None:
        latest = _latest()
        if version > latest:
            raise StoreError(
                "state root was written by a newer composer: upgrade composer "
                f"({self.path} has schema version {version}, this composer knows up to {latest})"
            )

    def _migrate(self) -> None:
        for version, script in _checked_migrations():
            if self.schema_version >= version:
                continue
            with self.transaction() as conn:
                # Another process may have migrated between our check and our lock: re-read
                # under the write lock, and refuse if it was a newer composer.
                current = int(conn.execute("PRAGMA user_version").fetchone()[0])
                self._refuse_newer(current)
                if current >= version:
                    continue
                try:
                    for statement in _statements(script):
                        conn.execute(statement)
                except sqlite3.Error as e:
                    raise StoreError(f"state database migration {version} failed: {e}") from e
                # PRAGMA takes no parameters; version is an int from our own table.
                conn.execute(f"PRAGMA user_version = {int(version)}")

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database (``PRAGMA user_version``)."""
        with self._locked() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        if not self._lock.acquire(timeout=self._timeout):
            raise StoreError(f"state database {self.path} is busy in this process")
        try:
            if self._conn is None:
                raise StoreError(f"state database {self.path} is closed")
            yield self._conn
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on exception.

        Nested use (a helper called inside a caller's transaction) becomes a savepoint, so the
        outer transaction still commits or rolls back as one.
        """
        with self._locked() as conn:
            if conn.in_transaction:
                yield from self._savepoint(conn)
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise self._busy_error(e) from e
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise StoreError(f"cannot commit to state database {self.path}: {e}") from e

    def _savepoint(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        else:
            conn.execute(f"RELEASE {name}")
        finally:
            self._savepoints -= 1

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state without taking the
        write lock (WAL readers do not block writers)."""
        with self._locked() as conn:
            if conn.in_transaction:
                yield conn
                return
            try:
                conn.execute("BEGIN DEFERRED")
            except sqlite3.OperationalError as e:
                raise self._busy_error(e) from e
            try:
                yield conn
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("COMMIT")

    def snapshot(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A read transaction for modules that keep their own tables (see state/containers)."""
        return self._snapshot()

    def _busy_error(self, e: sqlite3.OperationalError) -> StoreError:
        if "locked" in str(e) or "busy" in str(e):
            return StoreError(
                f"state database {self.path} is locked by another composer process "
                f"(waited {self._timeout:g} s)"
            )
        return StoreError(f"state database {self.path}: {e}")

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- images ---------------------------------------------------------------------------------

    def put_image(
        self,
        image_id: str,
        manifest_digest: str | None,
        config_json: str,
        layers: Sequence[LayerRow],
        *,
        refs: Sequence[str] = (),
        created: float | None = None,
    ) -> None:
        """Register an image, its layers and (optionally) references, as ONE transaction.

        An interrupted pull therefore leaves either nothing or the whole image. Registering an
        image that exists updates its manifest digest and layer blobs (the same config can come
        from differently compressed manifests) and keeps its creation time.
        """
        try:
            json.loads(config_json)
        except ValueError as e:
            raise StoreError(f"image {image_id}: config is not JSON: {e}") from e
        parent: str | None = None
        for position, layer in enumerate(layers):
            # A wrong chain id would share an unpacked directory between unrelated stacks.
            expected = chain_id(parent, layer.diff_id)
            if layer.chain_id != expected:
                raise StoreError(
                    f"image {image_id}: layer {position} has chain id {layer.chain_id}, "
                    f"expected {expected}"
                )
            parent = layer.chain_id
        now = time.time() if created is None else created
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO images (id, manifest_digest, config, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest, "
                "config = excluded.config",
                (image_id, manifest_digest, config_json, now),
            )
            conn.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
            parent = None
            for position, layer in enumerate(layers):
                conn.execute(
                    "INSERT INTO layers (chain_id, diff_id, parent, size) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(chain_id) DO UPDATE SET "
                    "size = COALESCE(excluded.size, layers.size)",
                    (layer.chain_id, layer.diff_id, parent, layer.size),
                )
                conn.execute(
                    "INSERT INTO image_layers (image_id, position, diff_id, chain_id, blob_digest)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (image_id, position, layer.diff_id, layer.chain_id, layer.blob_digest),
                )
                parent = layer.chain_id
            for ref in refs:
                self.tag(ref, image_id)

    def tag(self, ref: str, image_id: str) -> str | None:
        """Point ``ref`` at an image (moving it if it pointed elsewhere).

        Returns the image the ref pointed at before, if any. The ref is stored as given: callers
        normalize it (``docker.io/library/nginx:latest``) first.
        """
        if not isinstance(ref, str) or not ref:
            raise StoreError(f"invalid image reference {ref!r}")
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                raise StoreError(f"cannot tag {ref}: no image {image_id}")
            row = conn.execute("SELECT image_id FROM image_refs WHERE ref = ?", (ref,)).fetchone()
            conn.execute(
                "INSERT INTO image_refs (ref, image_id) VALUES (?, ?) "
                "ON CONFLICT(ref) DO UPDATE SET image_id = excluded.image_id",
                (ref, image_id),
            )
            return None if row is None else str(row[0])

    def untag(self, ref: str) -> bool:
        """Remove a reference (the image stays, possibly dangling); False if there was none."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM image_refs WHERE ref = ?", (ref,)).rowcount > 0

    def resolve(self, ref: str) -> str | None:
        """The image id a reference points at, or None."""
        with self._locked() as conn:
            row = conn.execute("SELECT image_id FROM image_refs WHERE ref = ?", (ref,)).fetchone()
        return None if row is None else str(row[0])

    def image(self, image_id: str) -> ImageRow | None:
        """One image with its layers and refs, or None."""
        with self._snapshot() as conn:
            row = conn.execute(
                "SELECT id, manifest_digest, config, created FROM images WHERE id = ?",
                (image_id,),
            ).fetchone()
            if row is None:
                return None
            return self._image_row(conn, row)

    def images(self) -> list[ImageRow]:
        """Every image, ordered by id (deterministic)."""
        with self._snapshot() as conn:
            rows = conn.execute(
                "SELECT id, manifest_digest, config, created FROM images ORDER BY id"
            ).fetchall()
            return [self._image_row(conn, row) for row in rows]

    @staticmethod
    def _image_row(conn: sqlite3.Connection, row: tuple[Any, ...]) -> ImageRow:
        image_id = str(row[0])
        layers = tuple(
            LayerRow(diff_id=d, chain_id=c, blob_digest=b, size=s)
            for d, c, b, s in conn.execute(
                "SELECT il.diff_id, il.chain_id, il.blob_digest, l.size FROM image_layers il "
                "LEFT JOIN layers l ON l.chain_id = il.chain_id "
                "WHERE il.image_id = ? ORDER BY il.position",
                (image_id,),
            )
        )
        refs = tuple(
            r for (r,) in conn.execute(
                "SELECT ref FROM image_refs WHERE image_id = ? ORDER BY ref", (image_id,)
            )
        )
        return ImageRow(
            id=image_id,
            manifest_digest=None if row[1] is None else str(row[1]),
            config=str(row[2]),
            created=float(row[3]),
            layers=layers,
            refs=refs,
        )

    def refs_of(self, image_id: str) -> list[str]:
        """The references pointing at an image, sorted."""
        with self._locked() as conn:
            return [
                str(r) for (r,) in conn.execute(
                    "SELECT ref FROM image_refs WHERE image_id = ? ORDER BY ref", (image_id,)
                )
            ]

    def remove_image(self, image_id: str) -> bool:
        """Delete an image; its refs and layer list go with it (ON DELETE CASCADE).

        Unpacked layers and blobs are left for garbage collection, which compares them with
        :meth:`used_layers` and :meth:`used_blobs`. False if there was no such image.
        """
        with self.transaction() as conn:
            return conn.execute("DELETE FROM images WHERE id = ?", (image_id,)).rowcount > 0

    def used_blobs(self) -> set[str]:
        """Every blob digest some image needs: manifests, configs (the image ids) and layers."""
        with self._locked() as conn:
            rows = conn.execute(
                "SELECT id FROM images UNION SELECT manifest_digest FROM images "
                "UNION SELECT blob_digest FROM image_layers"
            ).fetchall()
        return {str(r) for (r,) in rows if r is not None}

    def used_layers(self) -> set[str]:
        """Every chain id in the layer stack of some image."""
        with self._locked() as conn:
            rows = conn.execute("SELECT DISTINCT chain_id FROM image_layers").fetchall()
        return {str(r) for (r,) in rows if r is not None}

    # -- unpacked layers and blob metadata ------------------------------------------------------

    def layers(self) -> list[LayerInfo]:
        """Every unpacked layer recorded, ordered by chain id."""
        with self._locked() as conn:
            rows = conn.execute(
                "SELECT chain_id, diff_id, parent, size FROM layers ORDER BY chain_id"
            ).fetchall()
        return [LayerInfo(chain_id=c, diff_id=d, parent=p, size=s) for c, d, p, s in rows]

    def remove_layer(self, chain_id: str) -> bool:
        """Forget an unpacked layer (after its directory is gone); refuses one still in use."""
        with self.transaction() as conn:
            used = conn.execute(
                "SELECT image_id FROM image_layers WHERE chain_id = ? LIMIT 1", (chain_id,)
            ).fetchone()
            if used is not None:
                raise StoreError(f"layer {chain_id} is still used by image {used[0]}")
            return conn.execute("DELETE FROM layers WHERE chain_id = ?", (chain_id,)).rowcount > 0

    def record_blob(self, digest: str, size: int, media_type: str | None = None) -> None:
        """Record a blob's metadata (after the blob file is in place); keeps the first record."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO blobs (digest, size, media_type, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(digest) DO UPDATE SET "
                "media_type = COALESCE(blobs.media_type, excluded.media_type)",
                (digest, size, media_type, time.time()),
            )

    def blob(self, digest: str) -> BlobRow | None:
        """A blob's recorded metadata, or None."""
        with self._locked() as conn:
            row = conn.execute(
                "SELECT digest, size, media_type, created FROM blobs WHERE digest = ?", (digest,)
            ).fetchone()
        return None if row is None else BlobRow(*row)

    def forget_blob(self, digest: str) -> bool:
        """Delete a blob's metadata (before removing the file, so no row outlives it)."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,)).rowcount > 0


def _checked_migrations() -> list[tuple[int, str]]:
    # Read the module global at call time: tests substitute it to exercise failing migrations.
    versions = [v for v, _ in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"internal error: migration versions must be 1, 2, 3...: {versions}")
    return MIGRATIONS


def _latest() -> int:
    return MIGRATIONS[-1][0] if MIGRATIONS else 0
