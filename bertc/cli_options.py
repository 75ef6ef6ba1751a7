"""Command-line options generated from config dataclasses, so each option is declared once: in its config.

A config field becomes ``--field-name``; its trailing ``# comment`` becomes the help text; nested configs are
flattened into their own help panel; fields of the same name in several nested configs (``seed``) share one
option. ``Literal`` fields take text (the config checks the choice), tuples take comma-separated values.
A command adds its own arguments and options, renames a few flags and changes a few defaults, then
``build_config`` turns the parsed values back into the nested config.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import keyword
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

import typer

from bertc.checks import flag
from bertc.errors import BertcError

PANELS = {"DataConfig": "Data", "AugmentConfig": "Data", "TrainConfig": "Training",
          "DistillLoss": "Distillation loss"}


@dataclass
class Option:
    name: str  # the Python parameter name, unique in the command
    flag: str  # --flag-name
    paths: list[tuple[str, ...]]  # where the value goes in the config: ("train", "lr")
    kind: Any  # what Typer parses: str, int, float, bool (Optional when the default is None)
    default: Any
    help: str
    panel: str | None = None
    convert: Any = None  # (text, flag) -> value, for numbers, lists and parsed text
    metavar: str | None = None  # what --help shows the option takes


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """Each field's trailing comment (continued on following comment-only lines), as help text."""
    helps, last = {}, None
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^#]*#\s*(.*)$", line)
        if match:
            last = match.group(1)
            helps[last] = match.group(2).strip()
        elif last and re.match(r"\s+#\s+\S", line):
            helps[last] += " " + line.strip().lstrip("#").strip()
        else:
            last = None
    hints = typing.get_type_hints(cls)
    return {name: sentence(text, literal_choices(hints.get(name))) for name, text in helps.items()}


def sentence(text: str, choices: tuple = ()) -> str:
    """A comment as help text: a capital and a full stop; a first word that is a value (fp32, a choice such as
    auto) keeps its case."""
    first = text.split(" ", 1)[0].rstrip(":,;")
    if first.isalpha() and first.islower() and first not in map(str, choices):
        text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def config_options(cls: type, *, skip: tuple[str, ...] = (), flags: dict[str, str] | None = None,
                   defaults: dict[str, Any] | None = None, helps: dict[str, str] | None = None,
                   parsers: dict[str, Any] | None = None, panel: str | None = None,
                   prefix: tuple[str, ...] = (), into: list[Option] | None = None) -> list[Option]:
    """The options of ``cls`` and its nested configs; names in skip/flags/defaults/helps/parsers are dotted paths.

    ``parsers`` maps a field to a function of the option's text (e.g. a duration such as 30m to seconds).
    """
    flags, defaults, helps, parsers = flags or {}, defaults or {}, helps or {}, parsers or {}
    hints = typing.get_type_hints(cls)
    options: list[Option] = [] if into is None else into
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        path = (*prefix, field.name)
        dotted = ".".join(path)
        if dotted in skip:
            continue
        hint = hints[field.name]
        nested = nested_config(hint)
        if nested is not None:
            config_options(nested, skip=skip, flags=flags, defaults=defaults, helps=helps, parsers=parsers,
                           panel=panel, prefix=path, into=options)
            continue
        default = defaults.get(dotted, field_default(field))
        kind, convert, metavar = cli_kind(hint)
        if dotted in parsers:
            kind, metavar = str | None, "TEXT"
            convert = functools.partial(parse_text, parser=parsers[dotted])
        text = helps.get(dotted) or field_help(cls).get(field.name, "")
        choices = [str(choice) for choice in literal_choices(hint)]
        if choices and not all(choice in text for choice in choices):
            text += f" One of: {', '.join(choices)}."
        flag_text = flags.get(dotted, flag(field.name))
        name = flag_text.removeprefix("--").replace("-", "_")
        name += "_" if keyword.iskeyword(name) else ""
        same = next((o for o in options if o.name == name), None)
        if same is not None:  # one option sets every field of that name (e.g. --seed)
            same.paths.append(path)
            continue
        if isinstance(default, tuple):
            default = ",".join(map(str, default)) if default else None
        options.append(Option(name=name, flag=flag_text, paths=[path], kind=kind, default=default, help=text,
                              panel=panel or PANELS.get(cls.__name__), convert=convert, metavar=metavar))
    return options


def nested_config(hint) -> type | None:
    """The dataclass a field holds (also when it may be None), else None."""
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def literal_choices(hint) -> tuple:
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    return next((typing.get_args(a) for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal), ())


def field_default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return ...  # required


def cli_kind(hint) -> tuple[Any, Any, str | None]:
    """The type Typer parses for a field, a converter from that to the field's value (or None), a metavar."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) < len(typing.get_args(hint))
    base = args[0] if optional and len(args) == 1 else hint
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        return str | None, functools.partial(split_list, item=item), "LIST"
    if typing.get_origin(base) is typing.Literal:
        base = str
    if base in (int, float):  # parsed here, so that a wrong number is one line naming the flag
        metavar = "INTEGER" if base is int else "FLOAT"
        return (str | None if optional else str), functools.partial(to_number, kind=base), metavar
    if base not in (str, bool):
        base = str
    return (base | None if optional else base), None, None


def parse_text(text: str | None, flag_name: str, parser):
    return None if text is None else parser(text)


def to_number(text, flag_name: str, kind=float):
    if text is None or isinstance(text, (int, float)):
        return text
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise BertcError(f"{flag_name} must be {what}, got {text!r}") from None


def split_list(text: str | None, flag_name: str, item=str) -> tuple:
    """'1,8,32' -> (1, 8, 32); an empty entry or a wrong type is an error naming the flag."""
    if text is None:
        return ()
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise BertcError(f"{flag_name} {text!r} has an empty entry; give comma-separated values such as a,b")
    converters = typing.get_args(item) or (item,)
    values = []
    for part in parts:
        for convert in sorted(converters, key=lambda c: c is str):  # numbers before text
            try:
                values.append(convert(part))
                break
            except (TypeError, ValueError):
                continue
        else:
            raise BertcError(f"{flag_name} takes comma-separated whole numbers such as 3,5; got {text!r}")
    return tuple(values)


def parameters(options: list[Option]) -> list[inspect.Parameter]:
    """Typer parameters for the generated options (keyword-only, in declaration order)."""
    return [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=o.kind, default=typer_option(o))
            for o in options]


def typer_option(o: Option):
    if o.kind is bool:  # a switch, --x/--no-x
        return typer.Option(o.default, f"{o.flag}/--no-{o.flag[2:]}", help=o.help, rich_help_panel=o.panel,
                            metavar="", show_default=bool(o.default))
    return typer.Option(o.default, o.flag, help=o.help, rich_help_panel=o.panel, metavar=o.metavar,
                        show_default=o.default not in (None, ...))


def build_config(cls: type, options: list[Option], values: dict[str, Any], **fixed):
    """The config ``cls`` from parsed option values (``fixed`` sets whole fields: a nested config or None)."""
    tree: dict = {}
    for option in options:
        value = values[option.name]
        if option.convert is not None:
            value = option.convert(value, option.flag)
        for path in option.paths:
            node = tree
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
    tree.update(fixed)
    try:
        return instantiate(cls, tree)
    except BertcError as err:
        raise BertcError(command_flags(str(err), options)) from err


def instantiate(cls: type, tree: dict):
    """``cls`` from a tree of values; the problems of all nested configs are raised together."""
    hints = typing.get_type_hints(cls)
    kwargs, problems = {}, []
    for name, value in tree.items():
        nested = nested_config(hints[name])
        if nested is not None and isinstance(value, dict):
            try:
                kwargs[name] = instantiate(nested, value)
            except BertcError as err:
                problems.append(str(err))
        else:
            kwargs[name] = value
    if problems:
        raise BertcError("; ".join(problems))
    return cls(**kwargs)


def command_flags(message: str, options: list[Option]) -> str:
    """A config's message in the command's words: a field's flag becomes the option's (--epochs of the recovery
    training is --recover-epochs in `bertc prune`)."""
    for option in options:
        for path in option.paths:
            field_flag = flag(path[-1])
            if field_flag != option.flag:
                message = re.sub(rf"(?<![\w-]){re.escape(field_flag)}(?![\w-])", option.flag, message)
    return message


def command_function(run, arguments: list[inspect.Parameter], options: list[Option], doc: str):
    """A function Typer can register: ``arguments`` then the generated options; calls ``run(values)``."""

    def command(**values):
        return run(values)

    command.__signature__ = inspect.Signature([*arguments, *parameters(options)])
    command.__doc__ = doc
    return command


def argument(name: str, kind, default=..., *flags: str, help: str = "", option: bool = False,
             panel: str | None = None, hidden: bool = False, metavar: str | None = None) -> inspect.Parameter:
    """A hand-declared parameter: a positional argument, or an option with ``option=True``."""
    show_default = True
    if kind is bool:  # a switch, --x/--no-x (a hidden one is only accepted, not offered)
        metavar, show_default = "", bool(default)
        flags = flags if hidden else tuple(f"{f}/--no-{f[2:]}" for f in flags)
    info = (typer.Option(default, *flags, help=help, rich_help_panel=panel, metavar=metavar, hidden=hidden,
                         show_default=show_default)
            if option else typer.Argument(default, help=help))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=info)


# --- options parsed by hand ---------------------------------------------------------------------------------

def heads_global(value: str | None) -> tuple[int | None, float | None]:
    """--heads-global 36 is a head count; 0.5 (a decimal point or below 1) is a share of all heads."""
    if value is None:
        return None, None
    try:
        number = float(value)
    except ValueError:
        raise BertcError(f"--heads-global takes a head count (36) or a share (0.5), got {value!r}") from None
    return (None, number) if "." in value or number < 1 else (int(number), None)


def heads_option(value: str | None, per_layer: str | None) -> tuple[int | None, str | None]:
    """--heads 8 keeps 8 heads in every layer; --heads -1:8 (layer:heads entries) is --heads-per-layer's short form."""
    if value is None or ":" not in value:
        return to_number(value, "--heads", int), per_layer
    if per_layer is not None:
        raise BertcError("give only one of --heads and --heads-per-layer")
    return None, value
