"""Checks every config runs on itself, so the CLI, recipes and library calls are refused the same way.

``field_problems(config)`` reads the config's type hints: a ``Literal`` field must hold one of its choices, a
number must be a finite number of the right type, text must be text, a flag a bool, a nested config its class.
Each config's ``__post_init__`` adds its own range checks and raises all problems at once with ``raise_problems``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache

from bertc.errors import BertcError


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def field_problems(config) -> list[str]:
    """What is wrong with the types and choices of ``config``'s fields, one message per field."""
    hints = _hints(type(config))
    problems = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        problem = _problem(hints[field.name], value)
        if problem:
            problems.append(f"{flag(field.name)} {problem}")
    return problems


def _problem(hint, value) -> str | None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [_problem(arg, value) for arg in args if arg is not type(None)]
        return None if None in problems else problems[0]
    if origin is typing.Literal:
        return None if value in args else f"{value!r} is not one of {', '.join(map(str, args))}"
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return f"must be a list, got {value!r}"
        item = args[0] if args else typing.Any
        for element in value:
            problem = _problem(item, element)
            if problem:
                return f"has an entry that {problem}"
        return None
    if hint is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if hint is int:
        whole = isinstance(value, int) and not isinstance(value, bool)
        return None if whole else f"must be a whole number, got {value!r}"
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        return None if math.isfinite(value) else f"must be a finite number, got {value!r}"
    if hint is str:
        return None if isinstance(value, str) else f"must be text, got {value!r}"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return None if isinstance(value, hint) else f"must be a {hint.__name__}, got {type(value).__name__}"
    return None


def raise_problems(problems: list[str]) -> None:
    """One error naming every problem found, or nothing."""
    if problems:
        raise BertcError("; ".join(problems))


def check_config(config) -> None:
    """A config's whole check: types and choices, then its own ``range_problems()`` once the types are right
    (a range means nothing for a value of the wrong type); every problem found is raised at once."""
    problems = field_problems(config)
    if not problems and hasattr(config, "range_problems"):
        problems = config.range_problems()
    raise_problems(problems)


def well_typed(config, problems: list[str]) -> set[str]:
    """The fields of ``config`` that ``field_problems`` found nothing wrong with: their ranges can be checked,
    so a config can report a wrong type in one field and a bad range in another at once."""
    flagged = {problem.split(" ", 1)[0] for problem in problems}
    return {f.name for f in dataclasses.fields(config) if flag(f.name) not in flagged}


def below_minimum(config, names: tuple[str, ...], minimum: int = 1) -> list[str]:
    """One message per named field that is set (not None) and below ``minimum``."""
    return [f"{flag(name)} must be at least {minimum}, got {getattr(config, name)}" for name in names
            if getattr(config, name) is not None and getattr(config, name) < minimum]
