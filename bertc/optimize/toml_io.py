"""TOML for recipes: parsing with the standard library (or tomli on Python 3.10), and a small writer."""

from __future__ import annotations

import json
import math

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from bertc.errors import BertcError


def loads(text: str) -> dict:
    """Parse TOML with the standard library (Python 3.11+) or tomli, its backport."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BertcError(str(err)) from err


def dumps(document: dict, comments: list[str] | None = None) -> str:
    """A small TOML writer for recipes: tables, arrays of tables, scalars and arrays; None values are left out."""
    lines = [f"# {line}" if line else "#" for comment in (comments or []) for line in comment.split("\n")]
    if lines:
        lines.append("")
    write_table(lines, [], document)
    return "\n".join(lines).rstrip() + "\n"


def write_table(lines: list[str], path: list[str], table: dict, array_item: bool = False) -> None:
    plain = {k: v for k, v in table.items() if v is not None and not isinstance(v, dict) and not is_table_array(v)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in table.items() if is_table_array(v)}
    if path:
        if lines and lines[-1] != "":
            lines.append("")
        dotted = ".".join(key(part) for part in path)
        lines.append(f"[[{dotted}]]" if array_item else f"[{dotted}]")
    for name, value in plain.items():
        lines.append(f"{key(name)} = {toml_value(value)}")
    for name, value in tables.items():
        write_table(lines, [*path, name], value)
    for name, items in arrays.items():
        for item in items:
            write_table(lines, [*path, name], item, array_item=True)


def is_table_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def key(name: str) -> str:
    name = str(name)
    return name if name and all(c.isalnum() or c in "_-" for c in name) and name.isascii() else json.dumps(name)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL (U+007F)
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML: {value!r}")
