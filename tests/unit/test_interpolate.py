"""Phase 3: interpolation, against behaviour verified with Docker Compose v2.40.3."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.errors import Loc, ManifestError, ManifestWarning
from composer.manifest.interpolate import Interpolator, Variable, list_variables
from composer.manifest.tree import YMap, YSeq

ENV = {"A": "1", "EMPTY": ""}
INVALID = "INVALID"

# (template, expected value | INVALID | "ERR:<message>", names warned about as unset).
# Every row was checked with `docker-compose config --format json` (Compose v2.40.3) on a
# label holding the template, with A=1 and EMPTY= in the environment. Compose prints a literal
# "$" as "$$" in its output; the values here are the interpolated text itself.
CASES: list[tuple[str, str, list[str]]] = [
    ('plain', 'plain', []),
    ('$A', '1', []),
    ('${A}', '1', []),
    ('$A$A', '11', []),
    ('x${A}y', 'x1y', []),
    ('$$', '$', []),
    ('$$A', '$A', []),
    ('$${A}', '${A}', []),
    ('$$$A', '$1', []),
    ('$', '$', []),
    ('a$', 'a$', []),
    ('$ a', '$ a', []),
    ('$1', '$1', []),
    ('$-', '$-', []),
    ('${1}', 'INVALID', []),
    ('${A', 'INVALID', []),
    ('${A:x}', 'INVALID', []),
    ('${A x}', 'INVALID', []),
    ('${}', 'INVALID', []),
    ('${A:-d}', '1', []),
    ('${UNSET:-d}', 'd', []),
    ('${EMPTY:-d}', 'd', []),
    ('${A-d}', '1', []),
    ('${UNSET-d}', 'd', []),
    ('${EMPTY-d}', '', []),
    ('${A:+alt}', 'alt', []),
    ('${UNSET:+alt}', '', []),
    ('${EMPTY:+alt}', '', []),
    ('${A+alt}', 'alt', []),
    ('${UNSET+alt}', '', []),
    ('${EMPTY+alt}', 'alt', []),
    ('${A:?msg}', '1', []),
    ('${EMPTY:?msg}', 'ERR:required variable EMPTY is missing a value: msg', []),
    ('${UNSET:?msg}', 'ERR:required variable UNSET is missing a value: msg', []),
    ('${A?msg}', '1', []),
    ('${EMPTY?msg}', '', []),
    ('${UNSET?msg}', 'ERR:required variable UNSET is missing a value: msg', []),
    ('${UNSET?}', 'ERR:required variable UNSET is missing a value', []),
    ('${UNSET:-${A:-x}}', '1', []),
    ('${UNSET:-${UNSET2:-x}}', 'x', []),
    ('${A:-${UNSET2}}', '1', ['UNSET2']),
    ('${A:-${UNSET2:?boom}}', 'ERR:required variable UNSET2 is missing a value: boom', []),
    ('${UNSET:-{x}}', '{x}', []),
    ('${UNSET:-a}b}', 'ab}', []),
    ('${UNSET:-x}${A}', 'x1', []),
    ('${UNSET:-$A}', '1', []),
    ('${UNSET:-$$}', '$', []),
    ('${UNSET:-a\nb}', 'INVALID', []),
    ('${UNSET:-x}\n${A}', 'x\n1', []),
    ('$UNSET', '', ['UNSET']),
    ('${UNSET}', '', ['UNSET']),
    ('$UNSET $UNSET', ' ', ['UNSET']),
    ('${a}', '', ['a']),
    ('$_A', '', ['_A']),
    ('${A_1}', '', ['A_1']),
    ('$A.b', '1.b', []),
    ('$A-x', '1-x', []),
    ('${A-}', '1', []),
    ('${A:-}', '1', []),
    ('${UNSET:-}', '', []),
    ('${UNSET:-x:-y}', 'x:-y', []),
    ('${UNSET-x?y}', 'x?y', []),
    ('${A?}', '1', []),
    ('${UNSET:?${A}}', 'ERR:required variable UNSET is missing a value: 1', []),
    ('${UNSET:?$$}', 'ERR:required variable UNSET is missing a value: $', []),
    ('${UNSET:-${}', 'INVALID', []),
    ('${UNSET:-${A}', 'INVALID', []),
    ('${A}}', '1}', []),
    ('{$A}', '{1}', []),
    ('$}', '$}', []),
    ('$${', '${', []),
    ('${A:?msg}}', '1}', []),
    ('${UNSET:- spaced }', ' spaced ', []),
    ('é$A', 'é1', []),
    ('$Aé', '1é', []),
    ('${UNSET:-é}', 'é', []),
    ('$A\n$A', '1\n1', []),
    ('${UNSET:-${UNSET2:-${A}}}', '1', []),
    ('${UNSET+${UNSET2}}', '', ['UNSET2']),
    ('${A+${UNSET2}}', '', ['UNSET2']),
    ('${UNSET:+${UNSET3}}', '', ['UNSET3']),
]


@pytest.mark.parametrize(("template", "expected", "unset"), CASES)
def test_matches_compose(template: str, expected: str, unset: list[str]) -> None:
    warnings: list[ManifestWarning] = []
    interpolator = Interpolator(ENV, warnings.append)
    if expected == INVALID:
        with pytest.raises(ManifestError, match="invalid interpolation format"):
            interpolator.text(template)
    elif expected.startswith("ERR:"):
        with pytest.raises(ManifestError) as caught:
            interpolator.text(template)
        assert caught.value.message == expected[4:]
    else:
        assert interpolator.text(template) == expected
    assert sorted(w.message.split('"')[1] for w in warnings) == unset


def test_warns_once_per_name_with_compose_words() -> None:
    warnings: list[ManifestWarning] = []
    interpolator = Interpolator({}, warnings.append)
    where = Loc("compose.yaml", 3, 12)
    assert interpolator.text("$X $X ${X}", loc=where, path="services.a.image") == "  "
    assert interpolator.text("$X") == ""
    assert [str(w) for w in warnings] == [
        'compose.yaml:3:12: services.a.image: '
        'The "X" variable is not set. Defaulting to a blank string.']


def test_required_error_carries_place_path_and_hint() -> None:
    where = Loc("compose.yaml", 4, 9)
    with pytest.raises(ManifestError) as caught:
        Interpolator({}, _no_warnings).text("${ID:?ID variable must be set}", loc=where,
                                            path="services.web.image")
    error = caught.value
    assert error.message == "required variable ID is missing a value: ID variable must be set"
    assert error.loc == where and error.path == "services.web.image"
    assert error.hint and "ID" in error.hint


def test_invalid_format_carries_place_and_hint() -> None:
    where = Loc("compose.yaml", 2, 5)
    with pytest.raises(ManifestError) as caught:
        Interpolator({}, _no_warnings).text("a ${VAR:x}", loc=where, path="x-a")
    assert caught.value.loc == where and caught.value.path == "x-a"
    assert "'a ${VAR:x}'" in caught.value.message
    assert caught.value.hint and "$$" in caught.value.hint


def _no_warnings(warning: ManifestWarning) -> None:
    raise AssertionError(f"unexpected warning: {warning}")


def _located_tree() -> YMap:
    web = YMap({"image": "${IMG:-nginx}", "ports": YSeq(["$PORT:80", 8080],
                                                         item_locs=[Loc("c", 5, 9), None]),
                "environment": YMap({"X": "${X_VALUE}"}), "labels": YMap({"${KEY}": "v"})},
               loc=Loc("c", 3, 5))
    web.key_locs = {"image": Loc("c", 4, 12), "environment": Loc("c", 6, 5)}
    web["environment"].key_locs = {"X": Loc("c", 7, 10)}
    root = YMap({"services": YMap({"web": web}), "x-ext": YMap({"v": "$PORT"}),
                 "name": "${NAME:-demo}"}, loc=Loc("c", 1, 1))
    return root


def test_tree_interpolates_values_in_place_and_never_keys() -> None:
    root = _located_tree()
    web = root["services"]["web"]
    result = Interpolator({"PORT": "8000", "X_VALUE": "x", "KEY": "k"},
                          _no_warnings).tree(root)
    assert result is root
    assert web["image"] == "nginx" and web["ports"] == ["8000:80", 8080]
    assert web["environment"] == {"X": "x"}
    assert web["labels"] == {"${KEY}": "v"}  # Compose leaves keys as written
    assert root["x-ext"] == {"v": "8000"} and root["name"] == "demo"
    assert web.key_locs["image"] == Loc("c", 4, 12)
    assert web["ports"].item_locs[0] == Loc("c", 5, 9)


def test_tree_errors_point_at_the_value() -> None:
    root = _located_tree()
    root["services"]["web"]["environment"]["X"] = "${X_VALUE:?needed}"
    with pytest.raises(ManifestError) as caught:
        Interpolator({}, lambda w: None).tree(root)
    assert caught.value.loc == Loc("c", 7, 10)
    assert caught.value.path == "services.web.environment.X"
    root = _located_tree()
    root["services"]["web"]["ports"][0] = "${"
    with pytest.raises(ManifestError) as caught:
        Interpolator({"IMG": "i"}, lambda w: None).tree(root)
    assert caught.value.loc == Loc("c", 5, 9) and caught.value.path == "services.web.ports[0]"


def test_list_variables_like_compose_config_variables() -> None:
    # Verified with `docker-compose config --variables --format json` (Compose v2.40.3):
    # the top-level name is left out, nested variables are listed, defaults stay as written.
    root = YMap({
        "name": "${PN:-proj}",
        "x-ext": YMap({"k": "${XV:-xdef}", "${KEYVAR}": 1}),
        "services": YMap({"s": YMap({
            "image": "${IMG:?image required}",
            "environment": YMap({"FOO": "${BAR-bardef}", "LIST": "$PLAIN"}),
            "labels": YSeq(["a=${ALT:+alternate}", "b=${ALT2+alt2}", "c=${NEST:-${INNER:-in}}",
                            "d=${REQ?must set}", "e=$$ESC ${ESC2:-$$x}", "f=${BAD:x}"]),
        })}),
    })
    assert list_variables(root) == [
        Variable("ALT", False, None, "alternate"),
        Variable("ALT2", False, None, "alt2"),
        Variable("BAR", False, "bardef", None),
        Variable("ESC2", False, "$$x", None),
        Variable("IMG", True, None, None),
        Variable("INNER", False, "in", None),
        Variable("NEST", False, "${INNER:-in}", None),
        Variable("PLAIN", False, None, None),
        Variable("REQ", True, None, None),
        Variable("XV", False, "xdef", None),
    ]


def test_list_variables_merges_repeated_names() -> None:
    root = YMap({"services": YSeq(["${D:-one}", "${D:-two}", "$R", "${R:?x}", "${D:+alt}"])})
    assert list_variables(root) == [Variable("D", False, "one", "alt"),
                                    Variable("R", True, None, None)]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("${}:-?+_aZ9 \n#'\"é")), max_size=40)
       | st.text(max_size=40))
def test_random_text_only_raises_manifest_error(text: str) -> None:
    interpolator = Interpolator({"a": "1", "Z": ""}, lambda w: None)
    try:
        result = interpolator.text(text)
    except ManifestError:
        return
    assert isinstance(result, str)
    if "$" not in text:
        assert result == text
    list_variables(YMap({"k": text}))


def test_five_hundred_services_interpolate() -> None:
    # Speed is bench/'s (config -q on 500 services): this checks the result only.
    services = YMap()
    for n in range(500):
        services[f"s{n}"] = YMap({
            "image": "${REGISTRY:-docker.io}/app:${TAG:-latest}",
            "environment": YMap({f"K{i}": f"value-{i}-${{V{i}:-d}}" for i in range(10)}),
            "labels": YSeq([f"plain-label-{i}" for i in range(10)]),
            "command": ["sh", "-c", "echo $$HOME && exec app"],
        })
    root = YMap({"services": services})
    Interpolator({"TAG": "1"}, lambda w: None).tree(root)
    assert services["s499"]["image"] == "docker.io/app:1"
    assert services["s499"]["environment"]["K9"] == "value-9-d"
    assert services["s0"]["command"][2] == "echo $HOME && exec app"
