"""Property tests: the config parsers and the settings precedence, over generated input."""

from __future__ import annotations

import json
import string
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ess.errors import UsageError
from ess.loaders import ini, toml
from ess.models import SettingSpec
from ess.settings import coerce, resolve

KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
# INI values: printable, one line, no leading/trailing blanks (the parser strips them),
# not starting with a comment character.
INI_VALUES = (
    st.text(alphabet=string.ascii_letters + string.digits + " .,:/@-_=+[](){}$'\"!?*&|<>~", min_size=1, max_size=40)
    .map(str.strip)
    .filter(lambda v: v and v[0] not in "#;")
)
SPACING = st.sampled_from([":", ": ", ":  ", " : ", "=", " = ", "  =  "])
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.dictionaries(KEYS, INI_VALUES, max_size=12), st.data())
def test_ini_round_trip_with_any_spacing(values, data):
    lines = ["[EC2]"] + [f"{k}{data.draw(SPACING)}{v}" for k, v in values.items()]
    assert ini.parse("\n".join(lines) + "\n", "p.conf") == {"EC2": values}


TOML_SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(alphabet=string.printable.replace("\x0b", "").replace("\x0c", "").replace("\r", ""), max_size=30),
    st.lists(st.text(alphabet=string.ascii_letters + string.digits + "-_ ", max_size=10), max_size=4),
)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a JSON string is a valid TOML basic string for this alphabet


@FAST
@given(st.dictionaries(KEYS, TOML_SCALARS, max_size=10))
def test_toml_round_trip_keeps_types(values):
    text = "[EC2]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())
    assert toml.parse(text, "p.toml") == {"EC2": values}


@FAST
@given(st.text(max_size=300))
def test_ini_parser_fails_only_with_one_line_usage_errors(text):
    try:
        ini.parse(text, "fuzz.conf")
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.conf: ")


@FAST
@given(st.text(max_size=300))
def test_toml_parser_fails_only_with_one_line_usage_errors(text):
    try:
        toml.parse(text, "fuzz.toml")
    except UsageError as exc:
        assert str(exc).startswith("fuzz.toml")


SPEC_TYPES = {
    "int": SettingSpec("n", type="int", minimum=1, maximum=1000),
    "float": SettingSpec("x", type="float"),
    "bool": SettingSpec("b", type="bool"),
    "list": SettingSpec("l", type="list"),
    "str": SettingSpec("s"),
}
ANY_RAW = st.one_of(
    st.text(max_size=50),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.none(),
)


@FAST
@given(st.sampled_from(sorted(SPEC_TYPES)), ANY_RAW)
@example("int", float("inf"))  # found by this test: int(inf) raised OverflowError
@example("float", float("nan"))  # found by this test: nan slipped through min/max
@example("float", "1e400")
def test_coerce_returns_the_declared_type_or_a_one_line_error(kind, raw):
    spec = SPEC_TYPES[kind]
    try:
        value = coerce(spec, raw, "--opt")
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("--opt: ")
        return
    expected = {"int": int, "float": float, "bool": bool, "list": list, "str": str}[kind]
    assert type(value) is expected
    if kind == "int":
        assert 1 <= value <= 1000
    if kind == "float":
        assert value == value and abs(value) != float("inf")


@FAST
@given(st.integers(min_value=1, max_value=1000), st.sampled_from(["{}", " {} ", "{:_}", "+{}"]))
def test_int_spellings_round_trip(number, template):
    assert coerce(SPEC_TYPES["int"], template.format(number), "x") == number


SOURCES = ("cli", "env", "file")
SPEC = SettingSpec("instance_type", default="m3.medium", flag="--type")


@FAST
@given(st.fixed_dictionaries({}, optional={s: st.from_regex(r"[a-z][a-z0-9.]{0,12}", fullmatch=True) for s in SOURCES}))
def test_precedence_cli_env_file_default(given_values):
    resolved = resolve(
        "ec2",
        {"instance_type": SPEC},
        sections={"EC2": {"instance_type": given_values["file"]}} if "file" in given_values else {},
        config_path=Path("cfg.conf"),
        env={"ESS_INSTANCE_TYPE": given_values["env"]} if "env" in given_values else {},
        cli={"instance_type": given_values.get("cli")},
    )
    winner = next((s for s in SOURCES if s in given_values), None)
    expected_value = given_values[winner] if winner else "m3.medium"
    expected_source = {"cli": "--type", "env": "ESS_INSTANCE_TYPE", "file": "cfg.conf", None: "default"}[winner]
    assert (resolved["instance_type"], resolved.source("instance_type")) == (expected_value, expected_source)
