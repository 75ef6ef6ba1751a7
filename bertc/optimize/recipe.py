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

    [bench]                               # bertc.bench.config.BenchConfig
    data = "/data/sst2/validation.tsv"

    [[stages]]
    name = "layers3"                      # its artifact goes to DIR/stages/layers3
    kind = "distill"                      # finetune, prune, distill, export or quantize
    input = "finetune"                    # a stage name or an artifact path; for finetune, the starting model
    [stages.config]                       # the stage's config dataclass, field by field
    student_layers = 3

Options left out take the config's defaults. TOML has no null, so options that are None are left out too (a
finetune stage without input starts from the embedded MiniLM). Recipes written before the finetune stage took its
model as input (``[stages.config] model = ...``) are read with that model moved to the input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertc.artifact import is_artifact, read_manifest
from bertc.bench.config import BenchConfig
from bertc.compress.config import DistillConfig, PruneConfig
from bertc.compress.distill import distill
from bertc.compress.prune import RUN_FILE, prune
from bertc.console import console
from bertc.data.config import Columns
from bertc.data.labels import check_known_labels
from bertc.data.prepare import read_eval_data
from bertc.errors import BertcError
from bertc.export.config import ExportConfig, QuantizeConfig
from bertc.export.onnx import export
from bertc.export.quantize import quantize
from bertc.finetune.config import FinetuneConfig
from bertc.finetune.finetune import finetune
from bertc.imports.classifier import import_classifier
from bertc.imports.config import ImportConfig
from bertc.jsonio import to_jsonable
from bertc.optimize import rundir
from bertc.optimize.config import SelectConfig
from bertc.optimize.finish import finish_run
from bertc.optimize.toml_io import dumps, loads
from bertc.training.workdir import CONFIG_FILE, work_dir_for

RECIPE_FORMAT = "bertc-recipe"
RECIPE_VERSION = 1

# kind -> (config class, stage function): every stage is called as fn(src, config, out, resume=...).
STAGES = {
    "finetune": (FinetuneConfig, finetune),
    "prune": (PruneConfig, prune),
    "distill": (DistillConfig, distill),
    "export": (ExportConfig, export),
    "quantize": (QuantizeConfig, quantize),
    "import": (ImportConfig, import_classifier),
}
# Files an interrupted run of a stage leaves in its work directory once it can be resumed.
RESUME_MARKERS = {"finetune": (CONFIG_FILE,), "distill": (CONFIG_FILE,), "prune": (RUN_FILE,)}


@dataclass
class RecipeStage:
    name: str  # the artifact's directory under DIR/stages/
    kind: str  # finetune, prune, distill, export, quantize or import
    config: Any  # the stage's config dataclass
    input: str | None = None  # a stage name or an artifact path; for finetune the starting model (None: MiniLM)


@dataclass
class Recipe:
    stages: list[RecipeStage]
    baseline: str  # the fine-tuned model: a stage name or an artifact path
    candidates: list[str]  # stage names of the deployables measured side by side with the baseline
    select: SelectConfig
    bench: BenchConfig
    target: str = "cpu"
    notes: list[str] = field(default_factory=list)  # comments: what was tried and not kept, and why


# ---------------------------------------------------------------------------------------------- stages

def run_stage(stage: RecipeStage, stages_dir: Path, inputs: dict[str, Path], resume: bool) -> Path:
    """Build one stage into ``stages_dir/<name>`` through its stage function.

    ``inputs`` maps the names of stages already built to their directories; any other input is passed on as
    written (an artifact path or, for finetune, a model name). With ``resume`` a training stage interrupted after
    its first checkpoint continues from it; one killed before has nothing to resume and is built again.
    """
    out = stages_dir / stage.name
    markers = RESUME_MARKERS.get(stage.kind, ())
    interrupted = resume and any((work_dir_for(out) / marker).is_file() for marker in markers)
    stage_fn = STAGES[stage.kind][1]
    return Path(stage_fn(inputs.get(stage.input, stage.input), stage.config, out, resume=interrupted))


# ---------------------------------------------------------------------------------------------- configs <-> dicts

def config_to_dict(config) -> dict:
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


# ---------------------------------------------------------------------------------------------- files

def read_recipe(path: Path | str) -> Recipe:
    """A recipe file, checked: every stage's config is rebuilt (and validated) before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise BertcError(f"recipe {path} does not exist; pass a recipe.toml written by `bertc optimize`")
    try:
        text = path.read_text()
    except OSError as err:
        raise BertcError(f"cannot read recipe {path} ({err.strerror or err}); check its permissions") from err
    except UnicodeDecodeError as err:
        raise BertcError(f"{path} is not valid TOML ({err}); fix the file or re-create it with `bertc optimize`") \
            from err
    try:
        data = loads(text)
    except BertcError as err:
        raise BertcError(f"{path} is not valid TOML ({err}); fix the file or re-create it with `bertc optimize`") \
            from err
    head = data.get("recipe", {})
    if not isinstance(head, dict) or head.get("format") != RECIPE_FORMAT:
        raise BertcError(f"{path} is not a bertc recipe ([recipe] format = \"{RECIPE_FORMAT}\" is missing)")
    if head.get("version") != RECIPE_VERSION:
        raise BertcError(f"{path} is recipe version {head.get('version')!r}; this bertc reads version "
                         f"{RECIPE_VERSION}. Re-create it with `bertc optimize`")
    stages: list[RecipeStage] = []
    raws = data.get("stages", [])
    if not isinstance(raws, list) or not all(isinstance(raw, dict) for raw in raws):
        raise BertcError(f"{path.name}: stages must be [[stages]] tables, got {raws!r}")
    for i, raw in enumerate(raws):
        stages.append(read_stage(raw, f"{path.name}: stage {i + 1} ({raw.get('name') or 'unnamed'})",
                                 [s.name for s in stages]))
    names = {s.name for s in stages}
    if head.get("target", "cpu") not in ("cpu", "cuda"):
        raise BertcError(f"{path.name}: [recipe] target {head.get('target')!r} is not one of cpu, cuda")
    baseline, candidates = head.get("baseline"), head.get("candidates", [])
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise BertcError(f"{path.name}: [recipe] candidates must be a list of stage names, got {candidates!r}")
    if not isinstance(baseline, str) or not baseline or (baseline not in names and not Path(baseline).is_absolute()):
        raise BertcError(f"{path.name}: [recipe] baseline {baseline!r} must name a stage or an absolute artifact "
                         "path")
    missing = [c for c in candidates if c not in names]
    if missing:
        raise BertcError(f"{path.name}: [recipe] candidates {missing} are not stages of the recipe")
    return Recipe(stages=stages, baseline=baseline, candidates=list(candidates),
                  select=config_from_dict(SelectConfig, data.get("select", {}), f"{path.name} [select]"),
                  bench=config_from_dict(BenchConfig, data.get("bench", {}), f"{path.name} [bench]"),
                  target=head.get("target", "cpu"))


def read_stage(raw: dict, where: str, earlier: list[str]) -> RecipeStage:
    """One ``[[stages]]`` table; ``earlier``: the names of the stages before it."""
    name, kind, source = raw.get("name"), raw.get("kind"), raw.get("input")
    if not name or not isinstance(name, str) or "/" in name or name.startswith("."):
        raise BertcError(f"{where}: give each stage a plain directory name (name = \"layers3\")")
    if name in earlier:
        raise BertcError(f"{where}: the name {name!r} is used twice; stage names must be unique")
    if not isinstance(kind, str) or kind not in STAGES:
        raise BertcError(f"{where}: kind {kind!r} is not one of {', '.join(STAGES)}")
    values = raw.get("config", {})
    if kind == "finetune" and isinstance(values, dict) and "model" in values:
        # Written before finetune took its starting model as input: the model was a config option.
        values = dict(values)
        model = values.pop("model")
        if source is not None and source != model:
            raise BertcError(f"{where}: input {source!r} and config.model {model!r} disagree; give the starting "
                             "model once, as input")
        source = model
    if source is not None and (not isinstance(source, str) or not source):
        raise BertcError(f"{where}: input must name an earlier stage or an artifact (for finetune, a pretrained "
                         f"model), got {source!r}")
    if kind != "finetune":
        if not source:
            raise BertcError(f"{where}: a {kind} stage needs input = a stage name or an artifact path")
        if source not in earlier and not Path(source).is_absolute():
            raise BertcError(f"{where}: input {source!r} is neither an earlier stage nor an absolute artifact path")
    return RecipeStage(name, kind, config_from_dict(STAGES[kind][0], values, f"{where} config"), source)


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


# ---------------------------------------------------------------------------------------------- bertc run

def run_recipe(path: Path | str, out: Path | str, *, resume: bool = False, overwrite: bool = False) -> dict:
    """`bertc run`: build every stage of the recipe into ``out/stages``, then bench, report and ship the winner
    exactly as `bertc optimize` does. Returns the same summary."""
    path, out = Path(path), Path(out).absolute()
    recipe = read_recipe(path)
    record = {"mode": "run", "recipe_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    previous = rundir.check_out_dir(out, record, resume, overwrite)
    check_inputs(recipe)
    state = rundir.start_out_dir(out, record, overwrite, previous)
    with rundir.kept_for_resume(out, created=previous is None):
        if (out / rundir.RECIPE_FILE).resolve() != path.resolve():
            shutil.copyfile(path, out / rundir.RECIPE_FILE)
        inputs: dict[str, Path] = {}
        for i, stage in enumerate(recipe.stages):
            built = out / rundir.STAGES_DIR / stage.name
            if resume and is_artifact(built):
                state["nodes"][stage.name] = {"kind": stage.kind, "status": "reused"}
            else:
                console.print(f"[bold][{i + 1}/{len(recipe.stages)}] {stage.name}[/bold]: {stage.kind} of "
                              f"{stage.input or 'the pretrained model'}", soft_wrap=True)
                run_stage(stage, out / rundir.STAGES_DIR, inputs, resume)
                state["nodes"][stage.name] = {"kind": stage.kind, "status": "built"}
            inputs[stage.name] = built
            rundir.save_state(out, state)
        baseline = inputs.get(recipe.baseline) or Path(recipe.baseline)
        summary = finish_run(out, baseline, [inputs[name] for name in recipe.candidates], recipe.select,
                             recipe.bench, recipe.target)
        rundir.mark_finished(state, summary)
        rundir.save_state(out, state)
    return summary


def check_inputs(recipe: Recipe) -> None:
    """What would fail only after stages were built, checked first: the artifacts the recipe names by path, and
    the bench and test data (readable, with the columns and labels of the baseline's task)."""
    names = {stage.name for stage in recipe.stages}
    for stage in recipe.stages:
        if stage.kind in ("finetune", "import") or stage.input in names:  # they check their model first thing
            continue
        kind = read_manifest(stage.input)["model"].get("kind", "pytorch")
        if stage.kind != "quantize" and kind != "pytorch":
            raise BertcError(f"stage {stage.name} ({stage.kind}) needs a PyTorch artifact as input, but "
                             f"{stage.input} holds a {kind} model; use the PyTorch artifact it was made from")
    if recipe.baseline in names:  # built by the recipe: it is trained with the columns its data options name
        data = getattr(next(s for s in recipe.stages if s.name == recipe.baseline).config, "data", None)
        task = {"labels": None} if data is None else {
            "text_column": data.text_column, "text_pair_column": data.text_pair_column,
            "label_column": data.label_column, "labels": None}
    else:
        task = read_manifest(recipe.baseline)["task"]
    bench = recipe.bench
    columns = Columns(bench.text_column or task.get("text_column"),
                      bench.text_pair_column or task.get("text_pair_column"),
                      bench.label_column or task.get("label_column"))
    checks = [("[bench] data", bench.data, bench.split, bench.max_samples)]
    if recipe.select.test:
        checks.append(("[select] test", recipe.select.test, "test", recipe.select.test_samples))
    for what, data_path, split, samples in checks:
        dataset, _ = read_eval_data(data_path, columns, split=split, max_samples=samples)
        if task["labels"] is not None:
            check_known_labels(dataset.labels, task["labels"], f"{what} {dataset.source}",
                               "Pass data of the task the baseline was trained on")
