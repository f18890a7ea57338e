"""``--mount``, ``-v`` and ``--volumes-from`` into the spec's mounts, as Docker reads them."""

from __future__ import annotations

import os
import re

import pytest

from composer.cli.commands.container_flags import spec_from_options
from composer.cli.commands.mount_flags import parse_mount, parse_volume
from composer.cli.parser import build_parser
from composer.errors import UsageError
from composer.runtime import bundle_mounts
from composer.runtime.spec import ContainerSpec, Mount


def spec(*args: str) -> ContainerSpec:
    options = build_parser().parse_args(["container", "run", *args])
    return ContainerSpec.from_json(spec_from_options(options))


def mount(text: str) -> Mount:
    return ContainerSpec.from_json({"image": "x", "mounts": [parse_mount(text)]}).mounts[0]


def test_volume_mounts_named_anonymous_subpath_and_nocopy() -> None:
    assert mount("type=volume,src=data,dst=/data") == Mount("volume", "/data", "data")
    assert mount("source=data,target=/data,readonly") == Mount("volume", "/data", "data",
                                                               read_only=True)
    assert mount("dst=/data") == Mount("volume", "/data")  # type defaults to volume
    assert mount("src=data,destination=/d,ro=false,volume-subpath=a/b,volume-nocopy") == \
        Mount("volume", "/d", "data", subpath="a/b", options=("nocopy",))
    assert mount("src=data,dst=/d,volume-nocopy=false,consistency=cached") == \
        Mount("volume", "/d", "data")
    assert mount('"src=data","dst=/d"') == Mount("volume", "/d", "data")  # CSV quoting


def test_bind_mounts_need_their_source_unless_asked_and_keep_propagation(
        tmp_path: object) -> None:
    got = mount("type=bind,src=/srv/x,dst=/x,bind-propagation=rshared,ro=true")
    assert got == Mount("bind", "/x", "/srv/x", read_only=True, options=("rshared",))
    assert got.create_host_path is False
    assert mount("type=bind,src=/s,dst=/x,bind-create-src").create_host_path is True
    assert mount("type=bind,src=/s,dst=/x,bind-nonrecursive").options == ("bind",)
    assert mount("type=bind,src=rel,dst=/x").source == os.path.abspath("rel")
    # The propagation reaches the OCI mount, and makes the root shared as Docker does.
    oci = bundle_mounts.user_mounts((), (got,))
    assert oci == [{"destination": "/x", "type": "bind", "source": "/srv/x",
                    "options": ["rbind", "ro", "rshared"]}]
    assert bundle_mounts.rootfs_propagation(oci) == "rshared"


def test_tmpfs_mounts_take_size_and_mode() -> None:
    assert mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770") == \
        Mount("tmpfs", "/t", options=(f"size={64 << 20}", "mode=1770"))


@pytest.mark.parametrize(("text", "message"), [
    ("src=data", "target is required"),
    ("dst=rel", "must be an absolute path"),
    ("type=nfs,dst=/x", "type 'nfs' is not supported"),
    ("type=bind,dst=/x", "source is required when specifying bind mounts"),
    ("type=tmpfs,src=x,dst=/x", "source is not allowed for tmpfs"),
    ("type=bind,src=/s,dst=/x,volume-nocopy", "cannot mix 'volume-*' options with mount "
                                              "type 'bind'"),
    ("type=volume,dst=/x,tmpfs-size=1m", "cannot mix 'tmpfs-*' options"),
    ("type=bind,src=/s,dst=/x,bind-propagation=sideways", "invalid bind-propagation"),
    ("type=tmpfs,dst=/x,tmpfs-size=lots", "invalid tmpfs-size"),
    ("type=tmpfs,dst=/x,tmpfs-mode=999", "invalid tmpfs-mode"),
    ("dst=/x,readonly=maybe", "invalid value for readonly"),
    ("dst=/x,volume-driver=nfs", "unknown option 'volume-driver'"),
    ("dst=/x,colour=blue", "unknown option 'colour'"),
])
def test_bad_mounts_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)) as caught:
        parse_mount(text)
    assert f'invalid argument "{text}" for "--mount" flag' in str(caught.value)


def test_dash_v_forms() -> None:
    assert parse_volume("/data") == {"type": "volume", "target": "/data", "source": "",
                                     "read_only": False, "options": [], "subpath": "",
                                     "create_host_path": False}
    named = parse_volume("cache:/c:ro,nocopy")
    assert (named["type"], named["source"], named["read_only"], named["options"],
            named["create_host_path"]) == ("volume", "cache", True, ["nocopy"], False)
    bind = parse_volume("./here:/h:rslave")
    assert (bind["type"], bind["source"], bind["options"], bind["create_host_path"]) == (
        "bind", os.path.abspath("here"), ["rslave"], True)
    for bad in ("data", ":/x", "/a:", "/a:rel"):
        with pytest.raises(UsageError, match="invalid volume"):
            parse_volume(bad)


def test_run_flags_together() -> None:
    got = spec("-v", "/anon", "-v", "n:/n", "--mount", "type=tmpfs,dst=/t",
               "--mount", "src=m,dst=/m,volume-subpath=sub", "--volumes-from", "db:ro",
               "--volumes-from", "cache", "img")
    assert got.mounts == (Mount("volume", "/anon"), Mount("volume", "/n", "n"),
                          Mount("tmpfs", "/t"), Mount("volume", "/m", "m", subpath="sub"))
    assert got.volumes_from == ("db:ro", "cache")
    assert ContainerSpec.from_json(got.to_json()) == got
