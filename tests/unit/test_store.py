"""The SQLite state store: migrations, transactions, sharing between processes, image rows."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.state import store as store_mod
from composer.state.store import (
    MIGRATIONS,
    LayerRow,
    Store,
    StoreError,
    chain_id,
)

LATEST = MIGRATIONS[-1][0]
ROOT = Path(__file__).resolve().parents[2]
TABLES = {"blobs", "images", "image_refs", "image_layers", "layers"}


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def stack(*names: str) -> list[LayerRow]:
    """Layers with correct chain ids, one blob each."""
    rows: list[LayerRow] = []
    parent: str | None = None
    for name in names:
        diff = digest("diff " + name)
        chain = chain_id(parent, diff)
        rows.append(LayerRow(diff_id=diff, chain_id=chain, blob_digest=digest("blob " + name),
                             size=len(name)))
        parent = chain
    return rows


def config(*names: str) -> str:
    return json.dumps({"rootfs": {"type": "layers",
                                  "diff_ids": [digest("diff " + n) for n in names]}})


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


# -- opening and migrations -------------------------------------------------------------------


def test_migrates_an_empty_root(tmp_path: Path) -> None:
    root = tmp_path / "state" / "root"
    with Store.open(root) as s:
        assert s.schema_version == LATEST
        assert s.path == root / "state.db"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    # The database holds secrets (environment variables): private from its first byte.
    assert stat.S_IMODE((root / "state.db").stat().st_mode) == 0o600
    assert tables(root / "state.db") >= TABLES
    with sqlite3.connect(root / "state.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST


def test_wal_foreign_keys_and_busy_timeout_are_on(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s, s.transaction() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000


def test_reopening_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as s:
        s.put_image("sha256:" + "a" * 64, None, "{}", [], refs=["r:1"])
    with sqlite3.connect(path) as conn:
        schema = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    with Store(path) as s:
        assert s.schema_version == LATEST
        assert s.resolve("r:1") == "sha256:" + "a" * 64
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema


def test_a_newer_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    # As a future composer would leave it: rollback journal, unknown table, newer version.
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE future (x)")
        conn.execute(f"PRAGMA user_version = {LATEST + 3}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError) as err:
        Store(path)
    message = str(err.value)
    assert "state root was written by a newer composer: upgrade composer" in message
    assert f"schema version {LATEST + 3}" in message
    assert isinstance(err.value, ComposerError)
    assert path.read_bytes() == before  # not even the journal mode was switched to WAL
    assert not (tmp_path / "s.db-wal").exists()
    assert tables(path) == {"future"}


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable composer state database"):
        Store(path)


def test_a_failing_migration_is_applied_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    broken = (LATEST + 1, "CREATE TABLE half (a); INSERT INTO nowhere VALUES (1);")
    monkeypatch.setattr(store_mod, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(StoreError, match=f"migration {LATEST + 1} failed"):
        Store(path)
    assert "half" not in tables(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    # Fixed in the next release: the next open converges.
    fixed = (LATEST + 1, "CREATE TABLE half (a); -- a comment; with a semicolon\n"
             "INSERT INTO half VALUES ('x;y');")
    monkeypatch.setattr(store_mod, "MIGRATIONS", [*MIGRATIONS, fixed])
    with Store(path) as s:
        assert s.schema_version == LATEST + 1
        with s.transaction() as conn:
            assert conn.execute("SELECT a FROM half").fetchall() == [("x;y",)]


# -- transactions and sharing -----------------------------------------------------------------


def test_a_transaction_rolls_back_on_exception(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        with pytest.raises(RuntimeError), s.transaction() as conn:
            conn.execute("INSERT INTO blobs VALUES ('sha256:x', 1, NULL, 0)")
            conn.execute("INSERT INTO blobs VALUES ('sha256:y', 1, NULL, 0)")
            raise RuntimeError("crash half way")
        with s.transaction() as conn:
            assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 0
            assert conn.in_transaction
        assert s.blob("sha256:x") is None


def test_nested_transactions_are_savepoints(tmp_path: Path) -> None:
    image = digest("img")
    with Store(tmp_path / "s.db") as s:
        with pytest.raises(RuntimeError), s.transaction():
            s.put_image(image, None, "{}", [], refs=["a:1"])  # nested: a savepoint
            raise RuntimeError("the outer transaction fails after the helper succeeded")
        assert s.image(image) is None
        assert s.resolve("a:1") is None
        with s.transaction():
            s.put_image(image, None, "{}", [])
            with pytest.raises(StoreError):
                s.tag("b:1", digest("missing"))  # the inner failure is contained...
            s.tag("a:1", image)
        assert s.refs_of(image) == ["a:1"]  # ...and the rest committed


def test_two_stores_on_one_file_see_each_others_commits(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as one, Store(path) as two:
        one.put_image(digest("i"), None, "{}", [], refs=["x:1"])
        assert two.resolve("x:1") == digest("i")
        two.untag("x:1")
        assert one.resolve("x:1") is None


def test_a_reader_is_not_blocked_by_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as one, Store(path, timeout=0) as two:
        one.put_image(digest("i"), None, "{}", [], refs=["x:1"])
        with one.transaction() as conn:
            conn.execute("DELETE FROM image_refs")
            # WAL: the other connection reads the last committed state, at once.
            assert two.resolve("x:1") == digest("i")
        assert two.resolve("x:1") is None


def test_a_second_writer_waits_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with Store(path) as s, s.transaction() as conn:
            conn.execute("INSERT INTO blobs VALUES ('sha256:a', 1, NULL, 0)")
            holding.set()
            release.wait(5)

    Store(path).close()
    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    try:
        # Without a busy timeout the write lock is refused at once: the contention is real...
        with (
            Store(path, timeout=0) as impatient,
            pytest.raises(StoreError, match="locked"),
            impatient.transaction(),
        ):
            pass
        # ...and with one, the second writer simply waits for the first to commit.
        threading.Timer(0.1, release.set).start()
        with Store(path) as patient:
            patient.record_blob("sha256:b", 2)
            assert patient.blob("sha256:a") is not None  # it ran after the holder's commit
    finally:
        release.set()
        holder.join(5)


def test_concurrent_writers_do_not_see_database_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def writer(n: int) -> None:
        try:
            with Store(path) as s:
                start.wait(5)
                for i in range(25):
                    with s.transaction() as conn:
                        # Read-modify-write: only correct if transactions really serialize.
                        (count,) = conn.execute("SELECT count(*) FROM blobs").fetchone()
                        conn.execute("INSERT INTO blobs VALUES (?, ?, NULL, 0)",
                                     (f"sha256:{n}-{i}", count))
        except BaseException as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    with Store(path) as s, s.transaction() as conn:
        sizes = sorted(r[0] for r in conn.execute("SELECT size FROM blobs"))
    assert sizes == list(range(75))


def test_closed_store_says_so(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.resolve("x")


# -- images -----------------------------------------------------------------------------------


def test_image_registration_round_trip(tmp_path: Path) -> None:
    image, manifest = digest("config"), digest("manifest")
    layers = stack("base", "app")
    with Store(tmp_path / "s.db") as s:
        s.put_image(image, manifest, config("base", "app"), layers,
                    refs=["docker.io/library/app:1", "docker.io/library/app:latest"],
                    created=1234.5)
        row = s.image(image)
        assert row is not None
        assert row.id == image
        assert row.manifest_digest == manifest
        assert json.loads(row.config)["rootfs"]["diff_ids"] == [x.diff_id for x in layers]
        assert row.created == 1234.5
        assert row.layers == tuple(layers)
        assert row.refs == ("docker.io/library/app:1", "docker.io/library/app:latest")
        assert s.resolve("docker.io/library/app:1") == image
        assert s.refs_of(image) == ["docker.io/library/app:1", "docker.io/library/app:latest"]
        assert [i.id for i in s.images()] == [image]
        infos = {i.chain_id: i for i in s.layers()}
        assert infos[layers[1].chain_id].parent == layers[0].chain_id
        assert infos[layers[0].chain_id].parent is None
        assert s.image(digest("other")) is None


class Interrupted(BaseException):
    """Like KeyboardInterrupt or a cancelled pull: not an Exception."""


class InterruptingRefs(list[str]):
    """Refs whose iteration is interrupted after the first one: a pull stopped half way."""

    def __iter__(self) -> Iterator[str]:
        yield self[0]
        raise Interrupted


def test_registration_is_one_transaction(tmp_path: Path) -> None:
    image = digest("config")
    with Store(tmp_path / "s.db") as s:
        s.put_image(digest("victim"), None, "{}", [], refs=["ok:1"])
        with pytest.raises(Interrupted):
            s.put_image(image, None, "{}", stack("a"), refs=InterruptingRefs(["good:1", "x:2"]))
        assert s.image(image) is None
        assert s.resolve("good:1") is None
        assert s.used_layers() == set()
        assert s.layers() == []
        assert s.resolve("ok:1") == digest("victim")
        with pytest.raises(StoreError, match="invalid image reference"):
            s.put_image(image, None, "{}", [], refs=["good:1", ""])
        assert s.images() == [s.image(digest("victim"))]


def test_a_process_killed_mid_transaction_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    code = f"""
import os
from composer.state.store import Store
s = Store({str(path)!r})
with s.transaction() as conn:
    conn.execute("INSERT INTO images VALUES ('sha256:dead', NULL, '{{}}', 0)")
    conn.execute("INSERT INTO image_refs VALUES ('dead:1', 'sha256:dead')")
    os._exit(9)  # like kill -9: no rollback, no close
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=30)
    assert done.returncode == 9
    with Store(path) as s:
        assert s.resolve("dead:1") is None
        assert s.images() == []
        s.put_image("sha256:dead", None, "{}", [], refs=["dead:1"])  # and it converges
        assert s.resolve("dead:1") == "sha256:dead"


def test_bad_rows_are_refused_before_writing(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        with pytest.raises(StoreError, match="not JSON"):
            s.put_image(digest("c"), None, "{nope", [])
        wrong = [LayerRow(diff_id=digest("d1"), chain_id=digest("d1")),
                 LayerRow(diff_id=digest("d2"), chain_id=digest("d2"))]
        with pytest.raises(StoreError, match="layer 1 has chain id"):
            s.put_image(digest("c"), None, "{}", wrong)
        with pytest.raises(StoreError, match="no image"):
            s.tag("x:1", digest("c"))
        assert s.images() == []


def test_chain_id_follows_the_oci_definition() -> None:
    d1, d2 = digest("1"), digest("2")
    assert chain_id(None, d1) == d1
    assert chain_id(d1, d2) == "sha256:" + hashlib.sha256(f"{d1} {d2}".encode()).hexdigest()


def test_tag_moves_and_untag_removes(tmp_path: Path) -> None:
    old, new = digest("old"), digest("new")
    with Store(tmp_path / "s.db") as s:
        s.put_image(old, None, "{}", [], refs=["app:latest"])
        s.put_image(new, None, "{}", [])
        assert s.tag("app:latest", new) == old
        assert s.tag("app:2", new) is None
        assert s.refs_of(old) == []
        assert s.refs_of(new) == ["app:2", "app:latest"]
        assert s.untag("app:latest") is True
        assert s.untag("app:latest") is False
        assert s.resolve("app:latest") is None
        assert s.image(old) is not None  # untagging never deletes the image: GC decides


def test_removing_an_image_cascades_to_refs_and_layer_lists(tmp_path: Path) -> None:
    image = digest("c")
    with Store(tmp_path / "s.db") as s:
        s.put_image(image, digest("m"), "{}", stack("a", "b"), refs=["x:1", "x:2"])
        assert s.remove_image(image) is True
        assert s.remove_image(image) is False
        assert s.resolve("x:1") is None
        assert s.refs_of(image) == []
        with s.transaction() as conn:
            assert conn.execute("SELECT count(*) FROM image_layers").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM image_refs").fetchone()[0] == 0
        # Unpacked layers stay recorded until GC removes their directories.
        assert len(s.layers()) == 2
        assert s.used_layers() == set()


def test_used_blobs_and_layers(tmp_path: Path) -> None:
    one, two = digest("c1"), digest("c2")
    base_app, base_db = stack("base", "app"), stack("base", "db")
    with Store(tmp_path / "s.db") as s:
        s.put_image(one, digest("m1"), "{}", base_app, refs=["app:1"])
        s.put_image(two, None, "{}", base_db, refs=["db:1"])
        assert s.used_blobs() == {
            one, two, digest("m1"),
            digest("blob base"), digest("blob app"), digest("blob db"),
        }
        assert base_app[0].chain_id == base_db[0].chain_id  # shared bottom layer
        assert s.used_layers() == {base_app[0].chain_id, base_app[1].chain_id,
                                   base_db[1].chain_id}
        s.remove_image(one)
        assert s.used_blobs() == {two, digest("blob base"), digest("blob db")}
        assert s.used_layers() == {base_db[0].chain_id, base_db[1].chain_id}
        unused = {i.chain_id for i in s.layers()} - s.used_layers()
        assert unused == {base_app[1].chain_id}
        with pytest.raises(StoreError, match="still used"):
            s.remove_layer(base_db[0].chain_id)
        assert s.remove_layer(base_app[1].chain_id) is True


def test_reregistering_keeps_created_and_replaces_layers(tmp_path: Path) -> None:
    image = digest("c")
    with Store(tmp_path / "s.db") as s:
        s.put_image(image, digest("gzip"), "{}", stack("a"), created=1.0)
        recompressed = [LayerRow(x.diff_id, x.chain_id, digest("zstd"), None) for x in stack("a")]
        s.put_image(image, digest("zstd-manifest"), "{}", recompressed, created=2.0)
        row = s.image(image)
        assert row is not None
        assert row.created == 1.0
        assert row.manifest_digest == digest("zstd-manifest")
        assert [x.blob_digest for x in row.layers] == [digest("zstd")]
        assert row.layers[0].size == 1  # the known unpacked size is not forgotten


def test_blob_metadata(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        s.record_blob("sha256:" + "1" * 64, 10, "application/vnd.oci.image.layer.v1.tar+gzip")
        s.record_blob("sha256:" + "1" * 64, 10)
        row = s.blob("sha256:" + "1" * 64)
        assert row is not None
        assert (row.size, row.media_type) == (10, "application/vnd.oci.image.layer.v1.tar+gzip")
        assert s.forget_blob("sha256:" + "1" * 64) is True
        assert s.blob("sha256:" + "1" * 64) is None
