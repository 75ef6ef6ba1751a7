"""Recipes: a pipeline of bertc stages written as TOML, so a team can review it and `bertc run` it again.

``bertc optimize`` writes the recipe it actually ran (``DIR/recipe.toml``): every stage it built, with the full
options of that stage's config, then how the candidates are measured and chosen. ``bertc run recipe.toml --out
DIR`` builds the same stages through the same public stage functions, benches the same candidates and ships the
winner the same way::

    [recipe]
    format = "bertc-recipe"
    target = "cpu"
    baseline = "finetune"                 # a stage name, or the path of an artifact made elsewhere
    candidates = ["base-int8-dynamic", "layers3-int8-dynamic"]

    [select]                              # bertc.optimize.config.SelectConfig
    max_accuracy_drop = 1.0

    [bench]                               # bertc.bench.bench.BenchConfig
    data = "/data/sst2/validation.tsv"

    [[stages]]
    name = "layers3"                      # its artifact goes to DIR/stages/layers3
    kind = "distill"                      # finetune, prune, distill, export or quantize
    input = "finetune"                    # a stage name or an artifact path (finetune takes none)
    [stages.config]                       # the stage's config dataclass, field by field
    student_layers = 3

Options left out take the config's defaults. TOML has no null, so options that are None are left out too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertc.errors import BertcError

RECIPE_FORMAT = "bertc-recipe"
RECIPE_VERSION = 1


@dataclass
class RecipeStage:
    name: str  # the artifact's directory under DIR/stages/
    kind: str  # finetune, prune, distill, export or quantize
    config: Any  # the stage's config dataclass
    input: str | None = None  # a stage name or an artifact path; None for finetune


@dataclass
class Recipe:
    stages: list[RecipeStage]
    baseline: str  # the fine-tuned model: a stage name or an artifact path
    candidates: list[str]  # stage names of the deployables measured side by side with the baseline
    select: Any  # bertc.optimize.config.SelectConfig
    bench: Any  # bertc.bench.bench.BenchConfig
    target: str = "cpu"
    notes: list[str] = field(default_factory=list)  # comments: what was tried and not kept, and why


# ---------------------------------------------------------------------------------------------- stages

def stage_kinds() -> dict[str, tuple[type, Any]]:
    """kind -> (config class, runner(src, config, out, resume)); imported lazily to keep `bertc --help` fast."""
    from bertc.compress.config import DistillConfig, PruneConfig
    from bertc.compress.distill import distill
    from bertc.compress.prune import prune
    from bertc.export.config import ExportConfig, QuantizeConfig
    from bertc.export.onnx import export
    from bertc.export.quantize import quantize
    from bertc.finetune.config import FinetuneConfig
    from bertc.finetune.finetune import finetune

    return {
        "finetune": (FinetuneConfig, lambda src, config, out, resume: finetune(config, out, resume=resume)),
        "prune": (PruneConfig, lambda src, config, out, resume: prune(src, config, out, resume=resume)),
        "distill": (DistillConfig, lambda src, config, out, resume: distill(src, config, out, resume=resume)),
        "export": (ExportConfig, lambda src, config, out, resume: export(src, config, out)),
        "quantize": (QuantizeConfig, lambda src, config, out, resume: quantize(src, config, out)),
    }


def run_stage(stage: RecipeStage, stages_dir: Path, inputs: dict[str, Path], resume: bool) -> Path:
    """Build one stage into ``stages_dir/<name>`` through its public stage function.

    ``inputs`` maps the names of stages already built to their directories. With ``resume`` an interrupted
    training stage continues from its last checkpoint.
    """
    from bertc.training.trainer import work_dir_for

    out = stages_dir / stage.name
    source = None
    if stage.kind != "finetune":
        source = inputs.get(stage.input) if stage.input in inputs else Path(stage.input)
    runner = stage_kinds()[stage.kind][1]
    interrupted = resume and any((work_dir_for(out) / marker).is_file() for marker in interrupted_markers(stage.kind))
    return Path(runner(source, stage.config, out, interrupted))


def interrupted_markers(kind: str) -> tuple[str, ...]:
    """Files an interrupted run of a stage leaves in its work directory once it can be resumed."""
    from bertc.compress.prune import RUN_FILE
    from bertc.training.trainer import CONFIG_FILE

    return {"finetune": (CONFIG_FILE,), "distill": (CONFIG_FILE,), "prune": (RUN_FILE,)}.get(kind, ())


# ---------------------------------------------------------------------------------------------- configs <-> dicts

def config_to_dict(config) -> dict:
    from bertc.jsonio import to_jsonable

    return to_jsonable(config)


def config_from_dict(cls: type, values: dict, where: str):
    """Rebuild a (nested, frozen) config dataclass; unknown options are an error naming them."""
    if not isinstance(values, dict):
        raise BertcError(f"{where} must be a table of options, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    settable = {name for name, f in fields.items() if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BertcError(f"{where} has unknown option(s) {', '.join(unknown)}; {cls.__name__} takes "
                         f"{', '.join(sorted(settable))}")
    kwargs = {}
    for name in settable & set(values):
        kwargs[name] = convert(hints[name], values[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise BertcError(f"{where}: {err}") from err


def convert(hint, value, where: str):
    """``value`` read from TOML as the type ``hint`` expects: nested configs, tuples, floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None:
            return None
        configs = [a for a in options if dataclasses.is_dataclass(a)]
        if len(configs) > 1:  # a union of method configs, told apart by their "method" field
            return config_from_dict(pick_method(configs, value, where), value, where)
        if len(options) == 1:
            return convert(options[0], value, where)
        return value
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def pick_method(classes: list[type], value: dict, where: str) -> type:
    names = {cls.__dataclass_fields__["method"].default: cls for cls in classes
             if "method" in cls.__dataclass_fields__}
    method = value.get("method") if isinstance(value, dict) else None
    if method not in names:
        raise BertcError(f"{where}.method {method!r} is not one of {', '.join(names)}")
    return names[method]


# ---------------------------------------------------------------------------------------------- TOML

def loads(text: str) -> dict:
    """Parse TOML with the standard library (Python 3.11+) or tomli, its backport."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BertcError(str(err)) from err


def read_recipe(path: Path | str) -> Recipe:
    """A recipe file, checked: every stage's config is rebuilt (and validated) before anything runs."""
    from bertc.bench.config import BenchConfig
    from bertc.optimize.config import SelectConfig

    path = Path(path)
    if not path.is_file():
        raise BertcError(f"recipe {path} does not exist; pass a recipe.toml written by `bertc optimize`")
    try:
        data = loads(path.read_text())
    except (BertcError, UnicodeDecodeError) as err:
        raise BertcError(f"{path} is not valid TOML ({err}); fix the file or re-create it with `bertc optimize`") \
            from err
    head = data.get("recipe", {})
    if head.get("format") != RECIPE_FORMAT:
        raise BertcError(f"{path} is not a bertc recipe ([recipe] format = \"{RECIPE_FORMAT}\" is missing)")
    if head.get("version") != RECIPE_VERSION:
        raise BertcError(f"{path} is recipe version {head.get('version')!r}; this bertc reads version "
                         f"{RECIPE_VERSION}. Re-create it with `bertc optimize`")
    kinds = stage_kinds()
    stages, names = [], set()
    for i, raw in enumerate(data.get("stages", [])):
        name, kind = raw.get("name"), raw.get("kind")
        where = f"{path.name}: stage {i + 1} ({name or 'unnamed'})"
        if not name or not isinstance(name, str) or "/" in name or name.startswith("."):
            raise BertcError(f"{where}: give each stage a plain directory name (name = \"layers3\")")
        if name in names:
            raise BertcError(f"{where}: the name {name!r} is used twice; stage names must be unique")
        if kind not in kinds:
            raise BertcError(f"{where}: kind {kind!r} is not one of {', '.join(kinds)}")
        source = raw.get("input")
        if kind != "finetune" and not source:
            raise BertcError(f"{where}: a {kind} stage needs input = a stage name or an artifact path")
        if source and source not in names and not Path(source).is_absolute():
            raise BertcError(f"{where}: input {source!r} is neither an earlier stage nor an absolute artifact path")
        stages.append(RecipeStage(name, kind, config_from_dict(kinds[kind][0], raw.get("config", {}),
                                                               f"{where} config"), source))
        names.add(name)
    if head.get("target", "cpu") not in ("cpu", "cuda"):
        raise BertcError(f"{path.name}: [recipe] target {head.get('target')!r} is not one of cpu, cuda")
    baseline, candidates = head.get("baseline"), head.get("candidates", [])
    if not baseline or (baseline not in names and not Path(baseline).is_absolute()):
        raise BertcError(f"{path.name}: [recipe] baseline {baseline!r} must name a stage or an absolute artifact "
                         "path")
    missing = [c for c in candidates if c not in names]
    if missing:
        raise BertcError(f"{path.name}: [recipe] candidates {missing} are not stages of the recipe")
    return Recipe(stages=stages, baseline=baseline, candidates=list(candidates),
                  select=config_from_dict(SelectConfig, data.get("select", {}), f"{path.name} [select]"),
                  bench=config_from_dict(BenchConfig, data.get("bench", {}), f"{path.name} [bench]"),
                  target=head.get("target", "cpu"))


def write_recipe(recipe: Recipe, path: Path, header: list[str] | None = None) -> Path:
    bench = config_to_dict(recipe.bench)
    bench.pop("baseline", None)  # set to the recipe's baseline when it runs
    document = {
        "recipe": {"format": RECIPE_FORMAT, "version": RECIPE_VERSION, "target": recipe.target,
                   "baseline": recipe.baseline, "candidates": list(recipe.candidates)},
        "select": config_to_dict(recipe.select),
        "bench": bench,
        "stages": [{"name": s.name, "kind": s.kind, "input": s.input, "config": config_to_dict(s.config)}
                   for s in recipe.stages],
    }
    comments = list(header or []) + [f"not kept: {note}" for note in recipe.notes]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps(document, comments))
    tmp.replace(path)
    return path


def dumps(document: dict, comments: list[str] | None = None) -> str:
    """A small TOML writer for recipes: tables, arrays of tables, scalars and arrays; None values are left out."""
    lines = [f"# {line}" if line else "#" for line in (comments or [])]
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
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML: {value!r}")


# ---------------------------------------------------------------------------------------------- bertc run

def run_recipe(path: Path | str, out: Path | str, *, resume: bool = False, overwrite: bool = False) -> dict:
    """`bertc run`: build every stage of the recipe into ``out/stages``, then bench, report and ship the winner
    exactly as `bertc optimize` does. Returns the same summary."""
    import hashlib
    import shutil

    from bertc.artifact import is_artifact
    from bertc.console import console
    from bertc.jsonio import write_json
    from bertc.optimize.config import STATE_FILE
    from bertc.optimize.finish import finish_run
    from bertc.optimize.optimize import check_out_dir, start_out_dir

    path, out = Path(path), Path(out).absolute()
    recipe = read_recipe(path)
    record = {"mode": "run", "recipe_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    previous = check_out_dir(out, record, resume, overwrite)
    state = start_out_dir(out, record, overwrite, previous)
    if (out / "recipe.toml").resolve() != path.resolve():
        shutil.copyfile(path, out / "recipe.toml")
    inputs: dict[str, Path] = {}
    for i, stage in enumerate(recipe.stages):
        built = out / "stages" / stage.name
        if resume and is_artifact(built):
            state["nodes"][stage.name] = {"kind": stage.kind, "status": "reused"}
        else:
            console.print(f"[bold][{i + 1}/{len(recipe.stages)}] {stage.name}[/bold]: {stage.kind} of "
                          f"{stage.input or 'the pretrained model'}", soft_wrap=True)
            run_stage(stage, out / "stages", inputs, resume)
            state["nodes"][stage.name] = {"kind": stage.kind, "status": "built"}
        inputs[stage.name] = built
        write_json(out / STATE_FILE, state)
    baseline = inputs.get(recipe.baseline) or Path(recipe.baseline)
    summary = finish_run(out, baseline, [inputs[name] for name in recipe.candidates], recipe.select, recipe.bench,
                         recipe.target)
    state.update(finished=True, result={k: summary[k] for k in ("winner", "shipped_baseline", "text")})
    write_json(out / STATE_FILE, state)
    return summary
