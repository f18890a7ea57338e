"""The builder's cache rows: keys over what decides a step, rows that go with their image,
and cached steps kept by a plain ``image prune``."""

from __future__ import annotations

import io
from pathlib import Path

from composer.runtime.images.archives import import_layers
from composer.runtime.images.diff import commit_config
from composer.runtime.images.store import ImageStore
from composer.state import build_cache
from tests.unit.test_diff import BASE


def test_a_key_changes_with_each_input_and_only_with_them() -> None:
    key = build_cache.step_key("sha256:a", "RUN make", env={"A": "1"}, args={"V": "2"})
    assert key == build_cache.step_key("sha256:a", "RUN make", env={"A": "1"}, args={"V": "2"})
    others = {
        build_cache.step_key("sha256:b", "RUN make", env={"A": "1"}, args={"V": "2"}),
        build_cache.step_key("sha256:a", "RUN make all", env={"A": "1"}, args={"V": "2"}),
        build_cache.step_key("sha256:a", "RUN make", env={"A": "2"}, args={"V": "2"}),
        build_cache.step_key("sha256:a", "RUN make", env={"A": "1"}, args={"V": "3"}),
        build_cache.step_key("sha256:a", "RUN make", env={"A": "1"}, args={"V": "2"},
                             content="sha256:c"),
        build_cache.step_key(None, "RUN make", env={"A": "1"}, args={"V": "2"}),
    }
    assert key not in others and len(others) == 6
    assert key.startswith("sha256:") and len(key) == 71


def test_rows_go_with_their_image_and_prune_keeps_cached_steps(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "images") as store:
        base = import_layers(store, [io.BytesIO(BASE)], ref="base:1")
        step = commit_config(store, base=base, config_changes={"Env": ["A=1"]},
                             created_by="ENV A=1")
        stray = commit_config(store, base=base, config_changes={"Env": ["B=1"]})
        key = build_cache.step_key(base.id, "ENV A=1")
        assert build_cache.lookup(store.db, key) is None
        build_cache.record(store.db, key, step.id)
        assert build_cache.lookup(store.db, key) == step.id
        assert build_cache.images(store.db) == {step.id}
        pruned = store.prune()
        assert any(stray.id.removeprefix("sha256:") in r for r in pruned), pruned
        assert store.get(step.id) is not None and build_cache.lookup(store.db, key) == step.id
        store.prune(all=True)
        assert store.get(step.id) is None
        assert build_cache.lookup(store.db, key) is None  # gone with its image
