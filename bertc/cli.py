"""The `bertc` command line: a table of thin commands, each building its config and calling one library function.

Options come from the configs (`bertc.cli_options`); a command's library module is imported when it runs, so
`bertc --help` never imports torch.
"""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from bertc import cli_options as opts
from bertc.bench.config import BenchConfig
from bertc.cli_options import Option, argument, build_config, command_function, config_options, split_list
from bertc.compress.config import DistillConfig, PruneConfig
from bertc.errors import BertcError
from bertc.export.config import ExportConfig, QuantizeConfig, StaticQuantConfig
from bertc.finetune.config import FinetuneConfig
from bertc.imports.config import ImportConfig
from bertc.optimize.config import OptimizeConfig, parse_duration, parse_number

try:
    from typer._click.exceptions import ClickException  # typer bundles its own Click since 0.2x
except ImportError:  # older typer runs on Click itself
    from click.exceptions import ClickException


class OneLineErrors(TyperGroup):
    """Mistakes on the command line (an unknown option, a missing argument, a value of the wrong type) are one
    line and exit code 2, like every other user error, instead of Click's usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, "bertc", complete_var, standalone_mode=False, **extra)
        except ClickException as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # `bertc` alone: the help was shown
                sys.exit(err.exit_code)
            ctx = getattr(err, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            message = " ".join(err.format_message().split())
            typer.echo(f"bertc: error: {message}{where}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            typer.echo("bertc: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make BERT-family text classifiers fast to serve.")
state = {"debug": False}


DEBUG = typer.Option("--debug", help="Show tracebacks for errors.", metavar="")


@app.callback()
def main_options(debug: Annotated[bool, DEBUG] = False):
    state["debug"] = debug


def library(target: str):
    """``module:function`` imported on use: only the command that runs pays for torch and onnxruntime."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def user_errors(fn):
    """User errors print one line and exit with code 2 (tracebacks with --debug)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BertcError as err:
            if state["debug"]:
                raise
            typer.echo(f"bertc: error: {' '.join(str(err).split())}", err=True)
            raise typer.Exit(code=2) from None

    return run


def register(name: str, run, arguments: list, options: list[Option], doc: str) -> None:
    app.command(name)(command_function(user_errors(run), arguments, options, doc))


# Parameters several commands declare by hand (not config fields).
OUT = argument("out", Path, ..., "--out", help="Output artifact directory.", option=True)
OVERWRITE = argument("overwrite", bool, False, "--overwrite", help="Replace --out if it exists.", option=True)
RESUME = argument("resume", bool, False, "--resume", option=True,
                  help="Continue an interrupted run from its last checkpoint.")
REUSE = argument("resume", bool, False, "--resume", option=True,
                 help="Keep --out as it is when it was already built from this input with these options.")
ARTIFACT = argument("artifact", Path, help="A bertc artifact directory.")
DATA_FLAGS = {"data.augment.strategies": "--augment", "data.augment.factor": "--augment-factor",
              "data.augment.probability": "--augment-probability"}
# --seed sets every seed of a run (data split, augmentation, training); it is declared first by the augmentation.
SEED = {"defaults": {"data.augment.seed": 42},
        "helps": {"data.augment.seed": "Random seed of the run: validation split, augmentation and training."}}


def stage(target: str, values: dict, src, config, show: str) -> None:
    out = library(target)(src, config, values["out"], overwrite=values["overwrite"], resume=values.get("resume", False))
    library(show)(out)


# --- import, finetune, prune, distill -----------------------------------------------------------------------
IMPORT = config_options(ImportConfig)


def import_classifier(values: dict) -> None:
    stage("bertc.imports.classifier:import_classifier", values, values["source"],
          build_config(ImportConfig, IMPORT, values), "bertc.cli_output:show_import")


register("import", import_classifier, [
    argument("source", str, help="A fine-tuned transformers sequence classifier: a directory or a Hub id."), OUT,
    OVERWRITE], IMPORT, "Make a fine-tuned transformers classifier a bertc artifact (every stage also takes one).")

FINETUNE = config_options(FinetuneConfig, flags={**DATA_FLAGS, "data.train": "--train"},
                          defaults={"data.train": ..., **SEED["defaults"]}, helps=SEED["helps"])


def finetune(values: dict) -> None:
    stage("bertc.finetune.finetune:finetune", values, values["model"],
          build_config(FinetuneConfig, FINETUNE, values), "bertc.cli_output:show_training")


register("finetune", finetune, [
    OUT, argument("model", str | None, None, "--model", option=True, help=(
        "Pretrained model: a directory, a Hub id, or a bertc artifact. Default: the embedded all-MiniLM-L6-v2.")),
    RESUME, OVERWRITE], FINETUNE, "Fine-tune a BERT-family encoder on labelled text.")

PRUNE = config_options(PruneConfig, skip=("heads", "heads_global", "heads_global_ratio"),
                       flags={**DATA_FLAGS, "data.train": "--data", "recover.epochs": "--recover-epochs",
                              "recover.max_steps": "--recover-steps"},
                       defaults={"recover.epochs": None, "recover.lr": 5e-5, **SEED["defaults"]},
                       helps={**SEED["helps"],
                              "data.train": "Labelled data for importance and recovery (default: the artifact's "
                                            "recorded training data).",
                              "recover.epochs": "Fine-tune N epochs after pruning.",
                              "recover.max_steps": "Fine-tune N steps after pruning."})


def prune(values: dict) -> None:
    recover = values["recover_epochs"] is not None or values["recover_steps"] is not None
    if recover and values["recover_epochs"] is None:
        values["recover_epochs"] = "1"
    count, share = opts.heads_global(values["heads_global"])
    heads, per_layer = opts.heads_option(values["heads"], values["heads_per_layer"])
    config = build_config(PruneConfig, PRUNE, values, heads=heads, heads_per_layer=per_layer, heads_global=count,
                          heads_global_ratio=share, **({} if recover else {"recover": None}))
    stage("bertc.compress.prune:prune", values, values["artifact"], config, "bertc.cli_output:show_compression")


register("prune", prune, [
    argument("artifact", Path, help="The bertc artifact to prune."), OUT,
    argument("heads", str | None, None, "--heads", option=True, help=(
        "Keep the N most important heads in every layer (e.g. 8), or in the named layers only: -1:8 (the last "
        "layer keeps 8), 5:8,4:10.")),
    argument("heads_global", str | None, None, "--heads-global", option=True, help=(
        "Keep N heads ranked across layers (e.g. 36), or a share of them (e.g. 0.5); layers may differ and lose "
        "all their heads.")),
    RESUME, OVERWRITE], PRUNE,
    "Structurally prune heads, layers and FFN neurons by importance; optionally recover by training.")

DISTILL = config_options(DistillConfig, skip=("student_layers", "layer_map"),
                         flags={**DATA_FLAGS, "data.train": "--train"}, defaults=SEED["defaults"],
                         helps={**SEED["helps"],
                                "data.train": "Training data (default: the teacher's recorded training data)."})


def distill(values: dict) -> None:
    text = values["student_layers"]
    layers = split_list(text, "--student-layers", int)
    count = layers[0] if values["student"] is None and len(layers) == 1 and "," not in text else None
    config = build_config(DistillConfig, DISTILL, values, student_layers=count,
                          layer_map=None if count is not None else (layers or None))
    stage("bertc.compress.distill:distill", values, values["teacher"], config, "bertc.cli_output:show_compression")


register("distill", distill, [
    argument("teacher", Path, ..., "--teacher", option=True, help="The teacher: a fine-tuned bertc artifact."), OUT,
    argument("student_layers", str | None, None, "--student-layers", option=True, help=(
        "Make the student from the teacher with K evenly spaced layers (3 of 6: every other), or from the listed "
        "teacher layers (0,2,5). With --student: the teacher layer each student layer maps to.")),
    RESUME, OVERWRITE], DISTILL,
    "Distil a teacher artifact into a smaller student (soft labels, optionally hidden states and attention).")

# --- export, quantize ---------------------------------------------------------------------------------------
EXPORT = config_options(ExportConfig)


def export(values: dict) -> None:
    stage("bertc.export.onnx:export", values, values["artifact"], build_config(ExportConfig, EXPORT, values),
          "bertc.export.summary:print_export")


register("export", export, [
    argument("artifact", Path, help="A bertc artifact (or a transformers classifier directory)."), OUT,
    argument("onnx", bool, True, "--onnx", option=True, hidden=True, help="ONNX is the format bertc exports."),
    REUSE, OVERWRITE], EXPORT,
    "Export to ONNX (fused with ONNX Runtime, the fusion checked) or OpenVINO IR (--openvino), verified against "
    "PyTorch on real samples.")

QUANTIZE = config_options(QuantizeConfig, skip=("method",), flags={"eval_data": "--eval"})
METHOD_OPTIONS = config_options(StaticQuantConfig, skip=("seed",), panel="Method",
                                defaults={"calibration": None, "calibration_samples": None, "percentile": None})


def quantize(values: dict) -> None:
    given = {o.name: o.convert(values[o.name], o.flag) if o.convert else values[o.name] for o in METHOD_OPTIONS}
    method = library("bertc.export.config:method_config")(values["method"], **given)
    stage("bertc.export.quantize:quantize", values, values["artifact"],
          build_config(QuantizeConfig, QUANTIZE, values, method=method), "bertc.export.summary:print_quantize")


register("quantize", quantize, [
    argument("artifact", Path, help="An fp32 ONNX or OpenVINO artifact, or a PyTorch one (exported first)."), OUT,
    argument("method", str, "dynamic", "--method", option=True, panel="Method", help=(
        "dynamic (ORT int8), static (ORT int8 QDQ, calibrated), fp16 (CUDA), torch-dynamic (PyTorch int8 "
        "Linear layers), or nncf-int8 (OpenVINO int8, calibrated; accuracy-aware with --max-accuracy-drop).")),
    REUSE, OVERWRITE], [*QUANTIZE, *METHOD_OPTIONS],
    "Quantize (int8 dynamic/static, fp16, PyTorch int8, OpenVINO NNCF int8) and measure it against its parent.")

# --- evaluate, predict, bench, report -----------------------------------------------------------------------
COLUMNS = [argument(name, str | None, None, "--" + name.replace("_", "-"), option=True, help=text) for name, text in (
    ("text_column", "Text column (default: the artifact's, else auto-detected)."),
    ("text_pair_column", "Second text column for sentence-pair tasks."),
    ("label_column", "Label column (default: the artifact's, else auto-detected)."))]
DEVICE = argument("device", str, "cpu", "--device", option=True, help="cpu or cuda.")
BATCH = argument("batch_size", int, 64, "--batch-size", option=True, help="Batch size.")
JSON_OUT = argument("json_out", Path | None, None, "--json", option=True, help="Also write the results as JSON here.")


def evaluate(values: dict) -> None:
    library("bertc.cli_output:evaluate_and_show")(**values)


register("evaluate", evaluate, [
    ARTIFACT, argument("data", str, ..., "--data", option=True, help=(
        "Labelled data: a file, a directory (its --split file), or a Hub id.")),
    *COLUMNS, argument("split", str, "test", "--split", option=True, help=(
        "Split to use when --data is a directory or Hub id: train, validation or test.")),
    argument("max_samples", int | None, None, "--max-samples", option=True, help="Evaluate only the first N rows."),
    DEVICE, BATCH, JSON_OUT], [],
    "Accuracy, macro-F1, per-class precision/recall and confusion matrix on labelled data.")


def predict(values: dict) -> None:
    library("bertc.cli_output:predict_and_show")(**values)


register("predict", predict, [
    ARTIFACT, argument("texts", list[str] | None, None, help="Texts to classify."),
    argument("pairs", list[str] | None, None, "--pair", option=True, help=(
        "Second text of a sentence pair, once per text, in order (sentence-pair models).")),
    argument("data", str | None, None, "--data", option=True, help="Classify every row of this file instead."),
    argument("text_column", str | None, None, "--text-column", option=True, help=(
        "Text column of --data (default: the artifact's when the file has it, else auto-detected).")),
    argument("text_pair_column", str | None, None, "--text-pair-column", option=True, help=(
        "Second text column of --data for sentence-pair models (default: the artifact's when the file has it, "
        "else auto-detected with the text column).")),
    DEVICE, BATCH, JSON_OUT], [], "Labels and class probabilities for texts or a data file.")

BENCH = config_options(BenchConfig, flags={"seq_lens": "--seq-len"})


def bench(values: dict) -> None:
    results = library("bertc.bench.bench:bench")(values["artifacts"], build_config(BenchConfig, BENCH, values),
                                                 values["out"], overwrite=values["overwrite"])
    library("bertc.cli_output:show_bench")(results, values["out"])


register("bench", bench, [
    argument("artifacts", list[Path], help="Artifact directories to compare (PyTorch or ONNX)."),
    argument("out", Path, ..., "--out", option=True, help="Results JSON to write (read by `bertc report`)."),
    OVERWRITE], BENCH, "Latency, throughput, memory, size and accuracy of every variant, measured side by side.")


def report(values: dict) -> None:
    budget = parse_number("--max-accuracy-drop", values["max_accuracy_drop"])
    path = library("bertc.bench.report:report")(values["results"], values["out"], budget,
                                                overwrite=values["overwrite"])
    typer.echo(f"wrote {path / 'report.md'} and {path / 'report.html'}")


register("report", report, [
    argument("results", list[Path], help="Results JSON files written by `bertc bench`."),
    argument("out", Path, ..., "--out", option=True, help="Directory for report.md, report.html and figures/."),
    argument("max_accuracy_drop", str, "1.0", "--max-accuracy-drop", option=True, metavar="FLOAT", help=(
        "Accuracy budget: points below the baseline a recommended variant may lose.")),
    OVERWRITE], [], "A readable report of bench results (Markdown and self-contained HTML) and the variant to ship.")

# --- optimize, run ------------------------------------------------------------------------------------------
OPTIMIZE = config_options(OptimizeConfig, flags={"start_from": "--from"}, defaults={"train": ...},
                          parsers={"time_budget": parse_duration},
                          helps={"time_budget": "Time for the whole run, e.g. 30m, 1.5h, 900s (a bare number is "
                                                "minutes). Default: the preset's (quick: 15m, full: 2.5h)."})
OPTIMIZE_DIR = argument("out", Path, ..., "--out", option=True,
                        help="Output directory: stages/, report/, best/, recipe.toml, summary.md.")
RUN_RESUME = argument("resume", bool, False, "--resume", option=True,
                      help="Continue an interrupted run in --out, reusing built stages.")


def optimize(values: dict) -> None:
    library("bertc.optimize.optimize:optimize")(build_config(OptimizeConfig, OPTIMIZE, values), values["out"],
                                                resume=values["resume"], overwrite=values["overwrite"])


register("optimize", optimize, [OPTIMIZE_DIR, RUN_RESUME, OVERWRITE], OPTIMIZE,
         "From labelled data to the fastest model within an accuracy budget: search, bench, report, ship DIR/best.")


def run(values: dict) -> None:
    library("bertc.optimize.recipe:run_recipe")(values["recipe"], values["out"], resume=values["resume"],
                                                overwrite=values["overwrite"])


register("run", run, [
    argument("recipe", Path, help="A recipe.toml (written by `bertc optimize`, or by hand)."),
    argument("out", Path, ..., "--out", option=True,
             help="Output directory, laid out as `bertc optimize` lays it out."),
    RUN_RESUME, OVERWRITE], [],
    "Run a recipe: build its stages, bench its candidates side by side, report and ship the winner.")


def main():
    app()


if __name__ == "__main__":
    main()
