"""terminal.toml fed hostile documents: any value of any type under any key, unknown keys and sections, broken
TOML, non-UTF-8 bytes. load_config either returns a configuration or raises ConfigError (naming a key or the
file) — never another exception. tests/terminal/test_config.py checks the exact message of each known mistake."""

from __future__ import annotations

import contextlib
import tomllib
from pathlib import Path

import pytest
from fuzzing import fuzz, tried
from hypothesis import given
from hypothesis import strategies as st

from terminal.config import ConfigError, load_config

BASE = {
    "terminal": {"id": "QP000001", "merchant_id": "898310054110001", "country": "0156", "currency": "0156"},
    "host": {"url": "http://127.0.0.1:8380", "key": "00" * 32, "timeout": 5.0},
    "capk": {"file": "capk.json"},
    "reader": {"interface": "hsu", "port": "pn532-pos", "baud": 115200, "reset_pin": 17},
    "limits": {"contactless_limit": 2_000_000, "floor_limit": 200_000, "cvm_limit": 100_000},
    "gpio": {"backend": "sim", "lights": [5, 6, 13, 19], "buzzer": 18},
    "journal": {"path": "journal.sqlite3"},
    "ecr": {"listen": "127.0.0.1:8381", "secret": "s" * 43},
    "transit": {"keys": "capk.json"},
}
TOML_VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True), st.text(max_size=12),
              st.sampled_from(["", "/dev/null", "..", "0156", "hsu", "i2c", "spi", "rpi", "127.0.0.1:0",
                               "http://[::1]:1", "ftp://x", "9" * 40])),
    lambda inner: st.lists(inner, max_size=5), max_leaves=8)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    assert isinstance(value, list)
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _document(sections: dict[str, dict[str, object]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f'["{name}"]')
        lines += [f'"{key}" = {_toml_value(value)}' for key, value in values.items()]
    return "\n".join(lines) + "\n"


@st.composite
def documents(draw: st.DrawFn) -> str:
    sections = {name: dict(values) for name, values in BASE.items()}
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from([*sorted(BASE), "bogus"]))
        key = draw(st.one_of(st.sampled_from(sorted({k for v in BASE.values() for k in v})), st.text(max_size=6)))
        change = draw(st.sampled_from(["set", "drop key", "drop section"]))
        if change == "drop section":
            sections.pop(section, None)
        elif change == "drop key":
            sections.get(section, {}).pop(key, None)
        else:
            sections.setdefault(section, {})[key] = draw(TOML_VALUES)
    return _document(sections)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("config-fuzz")
    (root / "capk.json").write_text("{}")
    return root


@fuzz(300)
@given(text=documents())
def test_any_configuration_loads_or_is_a_config_error(folder: Path, text: str) -> None:
    tried("config: hostile terminal.toml")
    path = folder / "terminal.toml"
    path.write_text(text)
    with contextlib.suppress(tomllib.TOMLDecodeError):
        tomllib.loads(text)
    try:
        config = load_config(path)
    except ConfigError as error:
        assert str(error) and "Traceback" not in str(error)
    else:
        assert config.terminal.id and len(config.host.key) == 32


@fuzz(100)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_any_bytes_load_or_are_a_config_error(folder: Path, raw: bytes) -> None:
    tried("config: hostile bytes")
    path = folder / "terminal.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError):
        load_config(path)  # no [terminal] section can come out of a few random bytes
