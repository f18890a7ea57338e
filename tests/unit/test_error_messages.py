"""Golden error messages for the mistakes people make in compose files, through the whole loader.

Each case is a file as a user might write it and the exact message composer prints: the place
(file:line:column), the path in YAML words, what is wrong and, where it helps, what to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.errors import ManifestError
from composer.manifest.loader import LoadOptions, load

WEB = "services:\n  web:\n    image: nginx\n"


def web(body: str) -> str:
    """A file with the service ``web`` (image nginx) and these settings, indented under it."""
    return WEB + "".join(f"    {line}\n" for line in body.strip("\n").split("\n"))


# name -> (the file, the error's first line, its hint)
MISTAKES = {
    'a tab used for indentation': (
        'services:\n\tweb:\n\t\timage: nginx\n',
        'compose.yaml:2:1: invalid YAML: a tab character is used for indentation',
        'YAML indents with spaces only: replace the tabs at the start of this line'),
    'a key written twice': (
        web('image: redis'),
        "compose.yaml:4:5: duplicate key 'image' (first defined at line 3)",
        'a mapping may name each key once: remove or merge one of them'),
    'an unclosed quote': (
        'services:\n  web:\n    image: "nginx\n',
        'compose.yaml:4:1: invalid YAML: found unexpected end of stream',
        'a quote or bracket opened earlier is not closed'),
    'a mis-indented key': (
        WEB
        + '   ports: []\n',
        'compose.yaml:4:4: invalid YAML: did not find expected key',
        'check the indentation of this line against the lines above it'),
    'an unquoted value with a colon and space': (
        web('command: echo a: b'),
        'compose.yaml:4:20: invalid YAML: mapping values are not allowed in this context',
        "a value that contains ': ' must be quoted, or the line above is mis-indented"),
    'an alias with no anchor': (
        'services:\n  web: *base\n',
        "compose.yaml:2:8: invalid YAML: found undefined alias 'base'",
        'define the anchor (&name) before using it as *name'),
    'a required variable left unset': (
        'services:\n  web:\n    image: "nginx:${TAG:?set TAG to the release}"\n',
        'compose.yaml:3:5: services.web.image: required variable TAG is missing a value: set '
        'TAG to the release',
        'set TAG in the environment or in the .env file'),
    'an unterminated ${': (
        'services:\n  web:\n    image: "nginx:${TAG"\n',
        "compose.yaml:3:5: services.web.image: invalid interpolation format in 'nginx:${TAG'",
        'write $$ for a literal $; variables are $NAME, ${NAME}, ${NAME:-default}, '
        '${NAME:?error} or ${NAME:+alternate}'),
    'a misspelt service key': (
        'services:\n  web:\n    imgae: nginx\n',
        "compose.yaml:3:5: services.web: unknown key 'imgae'",
        "did you mean 'image'?"),
    'a misspelt top-level key': (
        'servics:\n  web:\n    image: nginx\n',
        "compose.yaml:1:1: unknown key 'servics'",
        "did you mean 'services'?"),
    'a version 1 file': (
        'web:\n  image: nginx\n',
        "compose.yaml:1:1: unknown key 'web'",
        "services go under 'services:' (this looks like a version 1 file)"),
    'a port with too many parts': (
        web('ports:\n  - "80:80:80:80"'),
        'compose.yaml:5:9: services.web.ports[0]: invalid IP address: 80:80',
        'write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g. 8080:80 or '
        '127.0.0.1:53:53/udp'),
    'a port that is not a number': (
        web('ports:\n  - "8o80:80"'),
        'compose.yaml:5:9: services.web.ports[0]: invalid hostPort: 8o80',
        'write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g. 8080:80 or '
        '127.0.0.1:53:53/udp'),
    'port ranges of different sizes': (
        web('ports:\n  - "8000-8002:80-81"'),
        'compose.yaml:5:9: services.web.ports[0]: invalid ranges specified for container and '
        'host Ports: 80-81 and 8000-8002',
        'write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g. 8080:80 or '
        '127.0.0.1:53:53/udp'),
    'an unknown port protocol': (
        web('ports:\n  - "80:80/icmp"'),
        'compose.yaml:5:9: services.web.ports[0]: invalid proto: icmp',
        'write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g. 8080:80 or '
        '127.0.0.1:53:53/udp'),
    'a boolean that is not one': (
        web('tty: maybe'),
        "compose.yaml:4:5: services.web.tty: must be a boolean, got 'maybe'",
        'use true or false'),
    'a number that is not one': (
        web('deploy:\n  replicas: two'),
        "compose.yaml:5:7: services.web.deploy.replicas: must be an integer, got 'two'",
        'write a whole number'),
    'a duration without unit syntax': (
        web('healthcheck:\n  interval: 5 seconds'),
        'compose.yaml:5:7: services.web.healthcheck.interval: invalid duration "5 seconds"',
        'write a duration like 10s, 1m30s or 500ms (units: ns, us, ms, s, m, h)'),
    'a size in words': (
        web('shm_size: 64 megs'),
        "compose.yaml:4:5: services.web.shm_size: invalid size '64 megs'",
        'write a size like 512m, 1g or a number of bytes (suffixes b, k, m, g, t, p)'),
    'a misspelt restart policy': (
        web('restart: alwyas'),
        "compose.yaml:4:5: services.web.restart: invalid restart policy 'alwyas'",
        'use no, always, unless-stopped or on-failure[:max-retries]'),
    'a misspelt depends_on condition': (
        web('depends_on:\n  db:\n    condition: service_healty'),
        'compose.yaml:6:9: services.web.depends_on.db.condition: invalid condition '
        "'service_healty'",
        "did you mean 'service_healthy'? (use one of: service_started, service_healthy, "
        'service_completed_successfully)'),
    'a healthcheck test without CMD': (
        web('healthcheck:\n  test: [curl, -f, localhost]'),
        'compose.yaml:5:14: services.web.healthcheck.test[0]: healthcheck.test must start '
        "with CMD, CMD-SHELL or NONE, not 'curl'",
        'write [CMD, curl, ...] to run a program, or a string to run a shell command'),
    'a command given as a mapping': (
        web('command: {a: 1}'),
        'compose.yaml:4:5: services.web.command: must be null, a string or a sequence, got a '
        'mapping',
        'write a shell command line, or the program and its arguments as a sequence'),
    'a service with nothing to run': (
        'services:\n  web:\n    restart: always\n',
        'compose.yaml:2:3: services.web: service "web" has neither an image nor a build '
        'context specified',
        "add 'image: NAME' or 'build: DIRECTORY' to the service"),
    'an undefined named volume': (
        web('volumes:\n  - data:/data'),
        'compose.yaml:5:9: services.web.volumes[0]: service "web" refers to undefined volume '
        'data',
        "declare it under the top-level 'volumes:', or write a path starting with ./ or / for "
        'a bind mount'),
    'an undefined network': (
        web('networks: [front]'),
        'compose.yaml:4:15: services.web.networks.front: service "web" refers to undefined '
        'network front',
        "declare it under the top-level 'networks:'"),
    'an undefined secret': (
        web('secrets: [token]'),
        'compose.yaml:4:15: services.web.secrets[0]: service "web" refers to undefined secret '
        'token',
        "declare it under the top-level 'secrets:'"),
    'a depends_on typo': (
        web('depends_on: [dbb]')
        + '  db:\n    image: postgres\n',
        'compose.yaml:4:17: services.web.depends_on.dbb: service "web" depends on undefined '
        'service "dbb"',
        "did you mean 'db'?"),
    'a dependency cycle': (
        web('depends_on: [api]')
        + '  api:\n    image: a\n    depends_on: [db]\n  db:\n    image: p\n    depends_on: '
          '[web]\n',
        'compose.yaml:4:17: services.web.depends_on.api: dependency cycle: api -> db -> web '
        '-> api',
        'remove one of these depends_on entries'),
    'an extends cycle': (
        'services:\n  a:\n    image: x\n    extends: b\n  b:\n    extends: a\n',
        'compose.yaml:4:5: services.a.extends: extends cycle: a -> b -> a',
        'a service cannot extend itself, even through others'),
    'extends of a missing service': (
        'services:\n  a:\n    image: x\n    extends: base\n',
        "compose.yaml:4:5: services.a.extends.service: cannot extend service 'a': service "
        "'base' not found",
        'services in this file: a'),
    'container_name with replicas': (
        web('container_name: web\ndeploy:\n  replicas: 2'),
        "compose.yaml:6:7: services.web.deploy.replicas: can't set container_name and 2 "
        'replicas: a container name must be unique',
        'remove container_name, or run a single replica'),
    'one host port published twice': (
        'services:\n  a:\n    image: nginx\n    ports: ["8080:80"]\n  b:\n    image: nginx\n    '
        'ports: ["8080:80"]\n',
        'compose.yaml:7:13: services.b.ports[0]: host port 8080/tcp is already published by '
        'services.a.ports[0]',
        "publish a different host port, or leave 'published' empty for a random one"),
    'network_mode beside networks': (
        web('network_mode: host\nnetworks: [default]'),
        'compose.yaml:4:5: services.web.network_mode: service web declares mutually exclusive '
        '`network_mode` and `networks`',
        "keep one of them: network_mode replaces the service's networks"),
    'network_mode on an undefined service': (
        web('network_mode: service:vpn'),
        'compose.yaml:4:5: services.web.network_mode: service "web" depends on undefined '
        'service "vpn"',
        'define that service, or remove the reference'),
    'a missing env_file': (
        web('env_file: missing.env'),
        'compose.yaml:4:5: services.web.env_file[0]: env file missing.env not found',
        "create the file or fix the path, or mark it 'required: false'"),
    'a dependency on a disabled profile': (
        web('depends_on: [debug]')
        + '  debug:\n    image: busybox\n    profiles: [dev]\n',
        "compose.yaml:4:17: services.web.depends_on.debug: service 'web' needs service "
        "'debug', which is not enabled (profiles: dev)",
        'enable profile dev with --profile dev'),
    'a secret from a file and the environment': (
        WEB
        + 'secrets:\n  s:\n    file: ./s\n    environment: S\n',
        'compose.yaml:7:5: secrets.s.environment: file|environment attributes are mutually '
        'exclusive',
        'keep one of file, environment'),
    'a config from nowhere': (
        WEB
        + 'configs:\n  c: {}\n',
        'compose.yaml:5:3: configs.c: one of file|environment|content must be set',
        "say where the value comes from, or mark it 'external: true'"),
    'an external volume with a driver': (
        WEB
        + 'volumes:\n  v:\n    external: true\n    driver: local\n',
        'compose.yaml:7:5: volumes.v.driver: conflicting parameters "external" and "driver" '
        'specified',
        "remove 'driver', or 'external: true' to let composer create the volume"),
    'scale and replicas that disagree': (
        web('scale: 2\ndeploy:\n  replicas: 3'),
        "compose.yaml:4:5: services.web.scale: can't set distinct values on 'scale' (2) and "
        "'deploy.replicas' (3)",
        'keep one of them'),
    'a bind mount without a source': (
        web('volumes:\n  - type: bind\n    target: /x'),
        "compose.yaml:5:9: services.web.volumes[0]: a bind mount needs a 'source'",
        "add 'source:', the host path to mount"),
    'a sync rule without a target': (
        web('develop:\n  watch:\n    - path: .\n      action: sync'),
        "compose.yaml:6:11: services.web.develop.watch[0]: action 'sync' needs a 'target'",
        "add 'target:', the path in the container to sync to"),
    'a missing include': (
        'include:\n  - missing/compose.yaml\nservices:\n  web:\n    image: nginx\n',
        'compose.yaml:2:5: include[0]: included file missing/compose.yaml not found',
        'include paths are relative to the project directory'),
    'a file that is a list': (
        '- services\n',
        'compose.yaml:1:1: a compose file must be a mapping at the top level',
        "start the file with keys such as 'services:'"),
    'an empty file': (
        '# nothing yet\n',
        'compose.yaml:1:1: empty compose file',
        "a compose file needs at least a 'services:' mapping"),
    'an invalid service name': (
        "services:\n  'a b':\n    image: nginx\n",
        "compose.yaml:2:3: services: invalid service name 'a b'",
        "use letters, digits, '.', '_' and '-' only"),
    'a number as a service name': (
        'services:\n  1:\n    image: nginx\n',
        'compose.yaml:2:3: a mapping key must be a string, but 1 is an integer',
        'quote the key: "1":'),
    'the same dependency twice': (
        web('depends_on: [db, db]') + '  db:\n    image: postgres\n',
        "compose.yaml:4:22: services.web.depends_on: items 0 and 1 are the same ('db')",
        'list each entry once'),
    'a volume over a tmpfs': (
        web('tmpfs: [/cache]\nvolumes:\n  - ./cache:/cache'),
        'compose.yaml:6:9: services.web.volumes[0]: target /cache already mounted as '
        'services.web.tmpfs[0]',
        'mount one thing per container path'),
    'a Dockerfile named twice': (
        'services:\n  web:\n    build:\n      context: .\n      dockerfile: Dockerfile\n'
        '      dockerfile_inline: FROM busybox\n',
        'compose.yaml:6:7: services.web.build.dockerfile_inline: service "web" declares '
        'mutually exclusive dockerfile and dockerfile_inline',
        'keep one of them'),
    'an undefined build secret': (
        'services:\n  web:\n    build:\n      context: .\n      secrets: [token]\n',
        'compose.yaml:5:17: services.web.build.secrets[0]: service "web" refers to undefined '
        'build secret token',
        "declare it under the top-level 'secrets:'"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_mistake_gets_its_golden_message(tmp_path: Path, mistake: str) -> None:
    text, message, hint = MISTAKES[mistake]
    (tmp_path / "compose.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "s").write_text("secret", encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load(LoadOptions(cwd=str(tmp_path), environ={"HOME": "/home/user", "PATH": "/bin"}))
    expected = f"{message}\n  hint: {hint}" if hint else message
    assert str(caught.value).replace(f"{tmp_path}/", "") == expected


def test_there_are_at_least_thirty_kinds_of_mistakes() -> None:
    assert len(MISTAKES) >= 30


def test_unknown_keys_of_extends_are_ignored_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  base:\n    image: nginx\n  web:\n    extends:\n      service: base\n"
        "      name: other\n", encoding="utf-8")
    loaded = load(LoadOptions(cwd=str(tmp_path), environ={"PATH": "/bin"}))
    assert [str(w).replace(f"{tmp_path}/", "") for w in loaded.warnings] == [
        "compose.yaml:7:7: services.web.extends: unknown key 'name' is ignored "
        "(extends takes service and file)"]
    assert loaded.tree["services"]["web"]["image"] == "nginx"
