"""`bertc optimize`: from labelled data to the fastest model within an accuracy budget, with the recipe it ran.

1. Fine-tune the pretrained model (or start from a fine-tuned artifact, ``--from``).
2. Walk the candidate space of :mod:`bertc.optimize.search` (layers by distillation, heads, FFN, each pruned with
   distillation from its parent; then fused ONNX and int8/fp16), fastest expected first, stopping a chain as soon
   as a step misses the accuracy budget on the selection slice, and within the time budget. Every stage is one
   of bertc's public stage functions; each artifact is kept under ``DIR/stages/<name>`` with its manifest.
3. Bench the baseline and every deployable side by side on the selection slice, write the report, score them
   on the test data, and copy the winner to ``DIR/best`` with a serving snippet. If nothing beats the baseline
   within the budget, ship the baseline and say so.

``DIR/optimize.json`` holds the run's state (what was built, skipped and why, timings), ``DIR/recipe.toml`` the
stages it ran, for `bertc run`. ``--resume`` reuses every complete artifact and continues interrupted training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bertc.errors import BertcError

STATE_FILE, RECIPE_FILE, SUMMARY_FILE, BENCH_FILE = "optimize.json", "recipe.toml", "summary.md", "bench.json"
STATE_FORMAT = "bertc-optimize"
LAYERS_LOSS = {"hidden_weight": 1.0, "attention_weight": 1.0}  # TinyBERT-style losses for layer reduction


@dataclass(frozen=True)
class Preset:
    finetune_samples: int | None  # training rows for fine-tuning (None: all)
    finetune_epochs: float
    distill_samples: int  # training rows the teacher labels for a shallower student
    recover_samples: int  # training rows for recovery after head/FFN pruning (distilled from the parent)
    importance_samples: int
    selection_samples: int  # rows of the eval data that choose the winner
    bench_runs: int
    batch_sizes: tuple[int, ...]
    memory: bool
    time_budget: float | None  # seconds


PRESETS = {
    # About 15 minutes on 2 CPU cores with MiniLM-L6 on SST-2 (the README's first command).
    "quick": Preset(finetune_samples=4000, finetune_epochs=1.0, distill_samples=4000, recover_samples=2000,
                    importance_samples=256, selection_samples=500, bench_runs=100, batch_sizes=(1,), memory=False,
                    time_budget=15 * 60),
    # The full search: the foundation's 16k-sample fine-tune, distillation on 32k samples (1.5-3 hours on 2 cores);
    # 2,000 selection rows, since 500 (standard error about 1.6 points at 85%) cannot resolve a 1-point budget.
    "full": Preset(finetune_samples=16000, finetune_epochs=1.0, distill_samples=32000, recover_samples=8000,
                   importance_samples=512, selection_samples=2000, bench_runs=300, batch_sizes=(1, 8), memory=True,
                   time_budget=None),
}
FINETUNE_LR, DISTILL_LR, RECOVER_LR = 8e-5, 8e-5, 5e-5


@dataclass(frozen=True)
class SelectConfig:
    max_accuracy_drop: float = 1.0  # accuracy points the winner may lose against the fine-tuned model (selection)
    latency_budget_ms: float | None = None  # p50 latency at batch 1 the winner should meet (then: most accurate)
    test: str | None = None  # labelled data for the final accuracy (test.tsv); None: no final accuracy
    test_samples: int | None = None  # use only the first N rows of the test data

    def __post_init__(self):
        problems = check_number("--max-accuracy-drop", self.max_accuracy_drop, minimum=0)
        if self.latency_budget_ms is not None:
            problems += check_number("--latency-budget-ms", self.latency_budget_ms, minimum=0, strict=True)
        if self.test_samples is not None and self.test_samples < 1:
            problems.append(f"--test-samples must be at least 1, got {self.test_samples}")
        if problems:
            raise BertcError("; ".join(problems))


@dataclass(frozen=True)
class OptimizeConfig:
    train: str  # training data: a file, or a directory with train/validation/test files
    eval: str | None = None  # selection data, of which the first --selection-samples rows are used (default: the
    #                          directory's validation file)
    test: str | None = None  # data for the final accuracy (default: the directory's test file, if any)
    model: str | None = None  # pretrained model to fine-tune first (default: the embedded all-MiniLM-L6-v2)
    start_from: str | None = None  # start from this fine-tuned artifact instead of fine-tuning (--from)
    target: Literal["cpu", "cuda"] = "cpu"  # where the model will be served: cpu (int8) or cuda (fp16)
    max_accuracy_drop: float = 1.0  # accuracy points the winner may lose against the fine-tuned model
    latency_budget_ms: float | None = None  # p50 latency at batch 1 the winner should meet
    time_budget: float | None = None  # seconds for the whole run (default: the preset's; quick has 15 minutes)
    preset: Literal["quick", "full"] = "full"  # quick: about 15 minutes on 2 CPU cores; full: the whole search
    candidates: tuple[str, ...] = ()  # candidates to try instead of the preset's, e.g. layers3+ffn50:int8-dynamic
    selection_samples: int | None = None  # rows of the eval data that choose the winner (quick 500, full 2000)
    test_samples: int | None = None  # use only the first N rows of the test data
    finetune_samples: int | None = None  # training rows for fine-tuning (preset: quick 4000, full 16000)
    finetune_epochs: float | None = None  # fine-tuning epochs (preset: 1)
    distill_samples: int | None = None  # training rows for distillation to fewer layers (preset)
    recover_samples: int | None = None  # training rows for recovery after head/FFN pruning (preset)
    importance_samples: int | None = None  # rows used to score heads and neurons (preset)
    lr: float | None = None  # fine-tuning learning rate (default 8e-5)
    batch_size: int = 32  # training batch size
    max_length: int = 128  # truncate texts to this many tokens
    bench_runs: int | None = None  # timed batch-1 calls per variant in the final bench (preset)
    text_column: str | None = None  # text column (auto-detected when omitted)
    text_pair_column: str | None = None  # second text column for sentence-pair tasks
    label_column: str | None = None  # label column (auto-detected when omitted)
    exhaustive: bool = False  # build every candidate, also those a faster in-budget one makes pointless
    seed: int = 42  # seed of every training stage

    def __post_init__(self):
        problems = check_number("--max-accuracy-drop", self.max_accuracy_drop, minimum=0)
        if self.latency_budget_ms is not None:
            problems += check_number("--latency-budget-ms", self.latency_budget_ms, minimum=0, strict=True)
        if self.time_budget is not None:
            problems += check_number("--time-budget (seconds)", self.time_budget, minimum=0, strict=True)
        if self.target not in ("cpu", "cuda"):
            problems.append(f"--target {self.target!r} is not one of cpu, cuda")
        if self.preset not in PRESETS:
            problems.append(f"--preset {self.preset!r} is not one of {', '.join(PRESETS)}")
        if self.model is not None and self.start_from is not None:
            problems.append("give --model (fine-tune it first) or --from (an artifact already fine-tuned), not both")
        for name in ("selection_samples", "test_samples", "finetune_samples", "distill_samples", "recover_samples",
                     "importance_samples", "bench_runs", "batch_size", "max_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                problems.append(f"--{name.replace('_', '-')} must be a whole number of at least 1, got {value!r}")
        for name in ("finetune_epochs", "lr"):
            if getattr(self, name) is not None:
                problems += check_number(f"--{name.replace('_', '-')}", getattr(self, name), minimum=0, strict=True)
        if problems:
            raise BertcError("; ".join(problems))

    def setting(self, name: str):
        """An option, or the preset's value when it was not given."""
        value = getattr(self, name, None)
        return value if value is not None else getattr(PRESETS[self.preset], name)


def check_number(flag: str, value, minimum: float, strict: bool = False) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return [f"{flag} must be a finite number, got {value!r}"]
    if value < minimum or (strict and value == minimum):
        return [f"{flag} must be {'above' if strict else 'at least'} {minimum:g}, got {value:g}"]
    return []


def parse_number(flag: str, text: str | None) -> float | None:
    """A budget given on the command line: a finite number, checked here so the error is one line."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BertcError(f"{flag} must be a number, got {text!r}") from None
    problems = check_number(flag, value, minimum=0)
    if problems:
        raise BertcError(problems[0])
    return value


def parse_duration(text: str | None) -> float | None:
    """``30m``, ``1.5h``, ``900s``, ``1h30m`` or a bare number of minutes, in seconds."""
    import re

    if text is None:
        return None
    units = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    cleaned = text.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m|hr|h)?", cleaned)
    rebuilt = "".join(f"{n}{u}" for n, u in parts)
    if not parts or rebuilt != cleaned.replace(" ", "") or (len(parts) > 1 and not all(u for _, u in parts)):
        raise BertcError(f"--time-budget must be a duration such as 30m, 1.5h, 900s or 1h30m, got {text!r}")
    seconds = sum(float(n) * units[u or "m"] for n, u in parts)
    if seconds <= 0:
        raise BertcError(f"--time-budget must be above zero, got {text!r}")
    return seconds


# ---------------------------------------------------------------------------------------------- the stage

def optimize(config: OptimizeConfig, out: Path | str, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Run the whole search into ``out``; returns the summary (winner, table, report path)."""
    run = Run.prepare(config, Path(out).absolute(), resume=resume, overwrite=overwrite)
    run.baseline_stage()
    run.search()
    return run.finish()


# ---------------------------------------------------------------------------------------------- checks before work

@dataclass
class DataPlan:
    train: str  # training file
    selection: str  # eval file; its first selection_rows rows choose the winner
    test: str | None  # final accuracy data
    columns: object  # bertc.data.Columns
    labels: list
    train_rows: int
    selection_rows: int
    test_rows: int


def plan_data(config: OptimizeConfig):
    """Local data files, their label sets checked against each other; returns the plan and the selection slice."""
    from bertc.artifact import read_manifest
    from bertc.data import Columns, read_dataset, read_eval_data, resolve_split
    from bertc.data.load import find_split_file

    train, selection, test = Path(config.train), config.eval, config.test
    if train.is_dir():
        selection = selection or (str(found) if (found := find_split_file(train, "validation")) else None)
        test = test or (str(found) if (found := find_split_file(train, "test")) else None)
        train = Path(resolve_split(train, "train"))
    for flag, path in (("--train", str(train)), ("--eval", selection), ("--test", test)):
        if path is not None and not Path(path).is_file():
            raise BertcError(f"{flag} {path} is not a data file; bertc optimize needs local labelled files "
                             "(.tsv/.csv/.jsonl/.json/.parquet) or a --train directory of splits")
    if selection is None:
        raise BertcError(f"no selection data: pass --eval PATH (e.g. validation.tsv), or a --train directory with a "
                         f"validation file ({train} has none)")
    task = read_manifest(config.start_from)["task"] if config.start_from else {}
    columns = Columns(config.text_column or task.get("text_column"),
                      config.text_pair_column or task.get("text_pair_column"),
                      config.label_column or task.get("label_column"))
    sets = {}
    for flag, path, split in (("--train", str(train), "train"), ("--eval", selection, "validation"),
                              ("--test", test, "test")):
        if path is not None:
            dataset = read_dataset(path, columns, split=split)
            sets[flag] = (sorted({str(label) for label in dataset.labels if label is not None}), len(dataset), path)
    problems = [f"{flag} {path} has labels {labels}" for flag, (labels, _, path) in sets.items()
                if labels != sets["--train"][0]]
    if problems:
        raise BertcError(f"the data sets have different label sets: --train {sets['--train'][2]} has labels "
                         f"{sets['--train'][0]} but {'; '.join(problems)}. Pass train and eval data of one task")
    if config.start_from:
        known = sorted(str(label) for label in task.get("labels", []))
        if known != sets["--train"][0]:
            raise BertcError(f"--from {config.start_from} predicts labels {known} but the training data has "
                             f"{sets['--train'][0]}; start from an artifact of this task")
    sample, _ = read_eval_data(selection, columns, "validation", max_samples=config.setting("selection_samples"))
    plan = DataPlan(train=str(train.resolve()), selection=str(Path(selection).resolve()),
                    test=str(Path(test).resolve()) if test else None, columns=columns, labels=sets["--train"][0],
                    train_rows=sets["--train"][1], selection_rows=len(sample),
                    test_rows=min(sets["--test"][1], config.test_samples or sets["--test"][1]) if test else 0)
    return plan, sample


@dataclass
class Probe:
    shape: object  # bertc.optimize.search.Shape
    train_rate: float  # training samples/s (forward + backward, with an allowance for the optimizer step)
    infer_rate: float  # inference samples/s in PyTorch at batch 64
    seq_len: int  # mean tokens per selection sentence


def measure(config: OptimizeConfig, plan: DataPlan, sample) -> Probe:
    """The model's shape and how fast this machine trains and runs it, measured on a few real batches."""
    import torch

    from bertc.artifact import load_artifact
    from bertc.modeling import describe_model, load_pretrained_classifier
    from bertc.optimize.search import Shape

    if config.start_from:
        artifact = load_artifact(config.start_from)
        model, tokenizer = artifact.model, artifact.tokenizer
    else:
        model, tokenizer = load_pretrained_classifier(config.model, plan.labels)
    info = describe_model(model)
    shape = Shape(layers=info["num_layers"], heads=max(info["heads_per_layer"]), ffn=max(info["ffn_per_layer"]),
                  hidden=info["hidden_size"], head_dim=info["head_size"])
    device = "cuda" if config.target == "cuda" and torch.cuda.is_available() else "cpu"
    model.to(device)

    def batch(n: int):
        texts = (sample.texts * (n // len(sample.texts) + 1))[:n]
        pairs = (sample.pairs * (n // len(sample.pairs) + 1))[:n] if sample.pairs else None
        encoded = tokenizer(texts, pairs, padding=True, truncation=True, max_length=config.max_length,
                            return_tensors="pt")
        return {k: v.to(device) for k, v in encoded.items()}

    def timed(fn) -> float:
        times = []
        for _ in range(3):  # the first call warms up
            begin = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - begin)
        return min(times[1:])

    lengths = tokenizer(sample.texts[:256], sample.pairs[:256] if sample.pairs else None, truncation=True,
                        max_length=config.max_length)["input_ids"]
    train_batch, labels = batch(config.batch_size), torch.zeros(config.batch_size, dtype=torch.long, device=device)

    def step():
        model(**train_batch, labels=labels).loss.backward()
        model.zero_grad(set_to_none=True)

    model.train()
    train_seconds = timed(step)
    model.eval()
    infer_batch = batch(64)
    with torch.inference_mode():
        infer_seconds = timed(lambda: model(**infer_batch))
    # The optimizer step, data loading, evaluation and checkpoints cost about a quarter on top.
    return Probe(shape=shape, train_rate=0.75 * config.batch_size / train_seconds, infer_rate=64 / infer_seconds,
                 seq_len=max(2, round(sum(map(len, lengths)) / max(1, len(lengths)))))


def check_cuda() -> None:
    import torch

    from bertc.export.runtime import providers_for

    if not torch.cuda.is_available():
        raise BertcError("--target cuda needs a CUDA GPU for training and measuring, and this machine has none; "
                         "use --target cpu, or run on a GPU machine")
    providers_for("cuda")  # onnxruntime-gpu must be installed: it says how otherwise


def check_out_dir(out: Path, record: dict, resume: bool, overwrite: bool) -> dict | None:
    """Fail early on an output that may not be replaced; with ``resume`` return the earlier run's state."""
    state = out / STATE_FILE
    if resume and overwrite:
        raise BertcError("give --resume (continue the run in --out) or --overwrite (start it again), not both")
    if resume:
        if not state.is_file():
            raise BertcError(f"nothing to resume: {out} holds no bertc optimize run ({STATE_FILE} is missing); "
                             "drop --resume")
        previous = json.loads(state.read_text())
        old = previous.get("config", {})
        changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        if changed:
            raise BertcError(f"--resume with different options than the run in {out} ({', '.join(changed)}); repeat "
                             "the original command with --resume, or pick another --out")
        return previous
    if out.exists():
        if not overwrite:
            raise BertcError(f"output {out} already exists; pass --resume to continue the run in it, --overwrite to "
                             "start again, or choose another --out")
        if not out.is_dir() or (any(out.iterdir()) and not state.is_file()):
            raise BertcError(f"{out} is not a bertc optimize output and bertc will not delete it; choose another "
                             "--out")
    return None


def start_out_dir(out: Path, record: dict, overwrite: bool, previous: dict | None) -> dict:
    if overwrite and previous is None and out.exists():
        shutil.rmtree(out)
    (out / "stages").mkdir(parents=True, exist_ok=True)
    state = previous or {"format": STATE_FORMAT, "format_version": 1, "config": record, "nodes": {}}
    state["finished"] = False
    return state


def config_record(config: OptimizeConfig) -> dict:
    """The options a resumed run must share with the interrupted one (the time budget may change)."""
    from bertc.artifact import to_jsonable

    record = to_jsonable(config)
    record.pop("time_budget")
    return {"mode": "optimize", **record}


def points(value: float) -> str:
    return f"{value:g} point" + ("" if value == 1 else "s")


def fmt(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ---------------------------------------------------------------------------------------------- the run

class Run:
    """One `bertc optimize` run: builds stages, records them (state and recipe) and drives the search."""

    def __init__(self, config: OptimizeConfig, out: Path, plan: DataPlan, probe: Probe, candidates: list,
                 state: dict, resume: bool, started: float):
        from bertc.optimize.search import CostModel

        self.config, self.out, self.plan, self.probe, self.candidates = config, out, plan, probe, candidates
        self.state, self.resume, self.started = state, resume, started
        self.stages_dir = out / "stages"
        self.costs = CostModel(probe.train_rate, probe.infer_rate, plan.selection_rows)
        self.failed = {n: r for n, r in state["nodes"].items() if r.get("status") == "failed"} if resume else {}
        self.inputs: dict[str, Path] = {}  # stage name -> artifact built or reused in this run
        self.done: list = []  # RecipeStage, in build order
        self.notes: list[str] = []
        self.finals: list = []  # (candidate, path) of every deployable built
        self.base_ref, self.baseline, self.base_accuracy = "", Path(), 0.0
        self.bench_config, self.select = self.measurement_configs()

    @classmethod
    def prepare(cls, config: OptimizeConfig, out: Path, *, resume: bool, overwrite: bool) -> Run:
        """Every check that can fail, before anything long runs or anything is deleted."""
        from bertc.console import console
        from bertc.optimize.search import check_candidates, parse_candidate, preset_candidates

        started = time.monotonic()
        record = config_record(config)
        previous = check_out_dir(out, record, resume, overwrite)
        if config.target == "cuda":
            check_cuda()
        plan, sample = plan_data(config)
        candidates = [parse_candidate(spec, config.target) for spec in config.candidates]
        probe = measure(config, plan, sample)
        candidates = candidates or preset_candidates(config.preset, probe.shape, config.target)
        check_candidates(candidates, probe.shape)
        run = cls(config, out, plan, probe, candidates, {"nodes": {}}, resume, started)
        budget = config.setting("time_budget")
        if config.start_from is None and budget is not None:
            rows = min(plan.train_rows, config.setting("finetune_samples") or plan.train_rows)
            need = run.costs.finetune(rows, config.setting("finetune_epochs")) + run.finish_estimate([])
            message = (f"--time-budget {fmt(budget)} is too small to fine-tune even once: {rows} samples x "
                       f"{config.setting('finetune_epochs'):g} epochs at the measured {probe.train_rate:.0f} "
                       f"samples/s plus the final bench take about {fmt(need)}")
            if need > budget and config.time_budget is not None:
                raise BertcError(f"{message}; give at least --time-budget {math.ceil(need / 60)}m, fewer "
                                 "--finetune-samples, or --from a fine-tuned artifact")
            if need > budget:  # the preset's budget, on a slow or busy machine: fine-tune anyway, try nothing else
                console.print(f"warning: the {config.preset} preset's {message}; bertc fine-tunes anyway and "
                              "skips candidates that do not fit", style="yellow", soft_wrap=True)
        run.state = start_out_dir(out, record, overwrite, previous)
        run.state["probe"] = {"train_samples_per_second": round(probe.train_rate, 2), "seq_len": probe.seq_len,
                              "inference_samples_per_second": round(probe.infer_rate, 2),
                              "shape": dataclasses.asdict(probe.shape)}
        console.print(f"optimizing for {config.target}: {len(candidates)} candidates, accuracy budget "
                      f"{points(config.max_accuracy_drop)} on {plan.selection_rows} rows of {plan.selection}"
                      + (f", time budget {fmt(budget)}" if budget else ""), soft_wrap=True)
        return run

    # -------------------------------------------------------------------------------------- stages

    def ref(self, node: str) -> str:
        """How a recipe names a node's artifact: its stage name, or the path of the --from artifact."""
        return self.base_ref if node == "base" else node

    def build(self, stage, estimate: float, must_succeed: bool = False) -> Path | None:
        """Build (or, on resume, reuse) one stage; a candidate's failure is recorded, not raised."""
        from bertc.artifact import is_artifact
        from bertc.console import console
        from bertc.optimize.recipe import run_stage

        if stage.name in self.inputs:
            return self.inputs[stage.name]
        out, record = self.stages_dir / stage.name, {"kind": stage.kind, "input": stage.input}
        if is_artifact(out) and self.resume:
            record = {**self.state["nodes"].get(stage.name, record), "status": "reused"}
        elif stage.name in self.failed:
            self.state["nodes"][stage.name] = self.failed[stage.name]
            self.notes.append(f"{stage.name}: {self.failed[stage.name]['reason']}")
            return None
        else:
            console.print(f"[bold]{stage.name}[/bold]: {stage.kind} of {stage.input or 'the pretrained model'} "
                          f"(about {fmt(estimate)})", soft_wrap=True)
            begin = time.monotonic()
            try:
                run_stage(stage, self.stages_dir, self.inputs, self.resume)
            except BertcError as err:
                if must_succeed:
                    raise
                console.print(f"{stage.name} failed: {err}", style="yellow", soft_wrap=True)
                record.update(status="failed", reason=str(err), seconds=round(time.monotonic() - begin, 1))
                self.state["nodes"][stage.name] = record
                self.notes.append(f"{stage.name}: {err}")
                self.save()
                return None
            seconds = time.monotonic() - begin
            self.costs.correct(stage.kind, estimate, seconds)
            record.update(status="built", seconds=round(seconds, 1), estimated_seconds=round(estimate, 1))
        self.state["nodes"][stage.name] = record
        self.inputs[stage.name] = out
        self.done.append(stage)
        self.save()
        return out

    def drop(self, name: str, path: Path) -> float:
        """Accuracy points ``path`` loses against the baseline on the selection slice."""
        return 100 * (self.base_accuracy - self.selection_accuracy(name, path))

    def selection_accuracy(self, name: str, path: Path, trust_manifest: bool = True) -> float:
        """Accuracy on the selection slice, recorded in the state. The stages measure it themselves (bertc gave
        them the slice as their eval data) and record it in their manifests; anything else is evaluated."""
        from bertc.artifact import read_manifest
        from bertc.inference import evaluate

        report = read_manifest(path).get("metrics", {}).get("eval") or {}
        if not (trust_manifest and report.get("samples") == self.plan.selection_rows and "accuracy" in report):
            report = evaluate(path, self.plan.selection, columns=self.plan.columns, split="validation",
                              max_samples=self.plan.selection_rows, device=self.config.target)
        self.state["nodes"].setdefault(name, {})["selection_accuracy"] = report["accuracy"]
        return report["accuracy"]

    def baseline_stage(self) -> None:
        from bertc.data import DataConfig
        from bertc.finetune import FinetuneConfig
        from bertc.optimize.recipe import RecipeStage

        config = self.config
        if config.start_from:
            self.baseline = Path(config.start_from).absolute()
            self.base_ref = str(self.baseline)
        else:
            data = DataConfig(train=self.plan.train, eval=self.plan.selection, **self.column_options(),
                              max_train_samples=config.setting("finetune_samples"),
                              max_eval_samples=self.plan.selection_rows, seed=config.seed)
            stage = RecipeStage("finetune", "finetune", FinetuneConfig(
                data=data, model=config.model, train=self.train_config(config.lr or FINETUNE_LR,
                                                                       config.setting("finetune_epochs"))))
            rows = min(self.plan.train_rows, config.setting("finetune_samples") or self.plan.train_rows)
            self.base_ref = "finetune"
            self.baseline = self.build(stage, self.costs.finetune(rows, config.setting("finetune_epochs")),
                                       must_succeed=True)
        self.inputs["base"] = self.baseline
        name = "finetune" if self.base_ref == "finetune" else "from"
        self.base_accuracy = self.selection_accuracy(name, self.baseline, trust_manifest=name == "finetune")
        self.state["nodes"][name]["path"] = str(self.baseline)

    def column_options(self) -> dict:
        columns = self.plan.columns
        return {"text_column": columns.text, "text_pair_column": columns.pair, "label_column": columns.label}

    def train_config(self, lr: float, epochs: float = 1.0):
        from bertc.finetune import TrainConfig

        return TrainConfig(lr=lr, epochs=epochs, batch_size=self.config.batch_size, max_length=self.config.max_length,
                           seed=self.config.seed, device="auto", save_steps=200, logging_steps=20)

    def task_data(self, samples: int):
        from bertc.compress.options import TaskData

        return TaskData(train=self.plan.train, eval=self.plan.selection, **self.column_options(),
                        max_train_samples=samples, max_eval_samples=self.plan.selection_rows, seed=self.config.seed)

    def compression_stage(self, node: str, step, parent: str):
        from bertc.compress.distill import DistillConfig
        from bertc.compress.options import DistillLoss
        from bertc.compress.prune import PruneConfig
        from bertc.optimize.recipe import RecipeStage

        setting = self.config.setting
        if step.kind == "layers":
            config = DistillConfig(student_layers=step.value, data=self.task_data(setting("distill_samples")),
                                   train=self.train_config(DISTILL_LR), loss=DistillLoss(**LAYERS_LOSS))
            return RecipeStage(node, "distill", config, self.ref(parent))
        targets = {"heads": step.value} if step.kind == "heads" else {"ffn": step.value / 100}
        config = PruneConfig(**targets, data=self.task_data(setting("recover_samples")), distill=True,
                             recover=self.train_config(RECOVER_LR), importance_samples=setting("importance_samples"))
        return RecipeStage(node, "prune", config, self.ref(parent))

    def deploy_stages(self, candidate, remaining_points: float | None = None):
        """The fused ONNX export of the candidate's node and, unless fp32, its quantization."""
        from bertc.export.onnx import ExportConfig
        from bertc.export.quantize import DynamicQuantConfig, Fp16Config, QuantizeConfig, StaticQuantConfig
        from bertc.optimize.recipe import RecipeStage

        export = RecipeStage(f"{candidate.node}-onnx", "export", ExportConfig(
            data=self.plan.selection, split="validation", verify_samples=self.plan.selection_rows,
            device=self.config.target), self.ref(candidate.node))
        if candidate.precision == "fp32":
            return export, None
        method = {"int8-dynamic": DynamicQuantConfig(), "fp16": Fp16Config(),
                  "int8-static": StaticQuantConfig(calibration_data=self.plan.train, seed=self.config.seed)}
        quantize = RecipeStage(candidate.name, "quantize", QuantizeConfig(
            method=method[candidate.precision], eval_data=self.plan.selection, split="validation",
            eval_samples=self.plan.selection_rows, device=self.config.target,
            max_accuracy_drop=None if remaining_points is None else round(max(0.0, remaining_points), 4)),
            export.name)
        return export, quantize

    def measurement_configs(self):
        """How the variants are benched (on the selection slice) and chosen."""
        from bertc.bench.bench import BenchConfig

        config, plan = self.config, self.plan
        bench = BenchConfig(data=plan.selection, split="validation", max_samples=plan.selection_rows,
                            **self.column_options(), device=config.target,
                            batch_sizes=config.setting("batch_sizes"), seq_lens=("real",), warmup=10,
                            runs=config.setting("bench_runs"), rounds=10, memory=config.setting("memory"))
        select = SelectConfig(max_accuracy_drop=config.max_accuracy_drop, latency_budget_ms=config.latency_budget_ms,
                              test=plan.test, test_samples=config.test_samples)
        return bench, select

    def save(self) -> None:
        """The state and the recipe of what was built so far, after every step (an interrupted run has both)."""
        from bertc.console import write_json
        from bertc.optimize.recipe import Recipe, write_recipe

        self.state["elapsed_seconds"] = round(time.monotonic() - self.started, 1)
        write_json(self.out / STATE_FILE, self.state)
        if self.base_ref:
            recipe = Recipe(stages=self.done, baseline=self.base_ref, candidates=[p.name for _, p in self.finals],
                            select=self.select, bench=self.bench_config, target=self.config.target, notes=self.notes)
            write_recipe(recipe, self.out / RECIPE_FILE, header=[
                "Written by `bertc optimize`: the stages it ran, in order. Re-run with "
                "`bertc run recipe.toml --out DIR`."])

    # -------------------------------------------------------------------------------------- the search

    def search(self) -> None:
        from bertc.console import console
        from bertc.optimize.search import Search, order_candidates

        probe = self.probe
        # With a latency budget the most accurate model that meets it wins, so slower candidates stay worth trying.
        self.searcher = Search(probe.shape, probe.seq_len, self.config.target, self.config.max_accuracy_drop,
                               exhaustive=self.config.exhaustive or self.config.latency_budget_ms is not None)
        self.state["candidates"] = records = []
        ordered = order_candidates(self.candidates, probe.shape, probe.seq_len, self.config.target)
        console.print("plan (fastest expected first; estimates from the measured "
                      f"{probe.train_rate:.0f} training samples/s): " + ", ".join(
                          f"{c.name} ~{self.searcher.expected(c):.1f}x, {fmt(self.estimate(c))}" for c in ordered),
                      soft_wrap=True)
        for candidate in ordered:
            record = {"candidate": candidate.spec, "name": candidate.name,
                      "expected_speedup": round(self.searcher.expected(candidate), 2),
                      "estimated_seconds": round(self.estimate(candidate), 1)}
            records.append(record)
            reason = self.searcher.skip_reason(candidate) or self.time_reason(candidate)
            if reason:
                record.update(status="skipped", reason=reason)
                console.print(f"skip {candidate.name}: {reason}", style="dim", soft_wrap=True)
            else:
                self.build_candidate(candidate, record)
            self.save()

    def build_candidate(self, candidate, record: dict) -> None:
        budget = self.config.max_accuracy_drop
        parent = "base"
        for i, node in enumerate(candidate.chain()):
            stage = self.compression_stage(node, candidate.steps[i], parent)
            path = self.build(stage, self.estimate_node(candidate, i))
            if path is None:
                record.update(status="failed", reason=self.state["nodes"][node]["reason"])
                return
            drop = self.drop(node, path)
            if not self.searcher.record_node(node, candidate.steps[:i + 1], drop):
                record.update(status="over budget", reason=f"{node} loses {drop:.2f} points on the selection slice "
                                                           f"(budget {budget:g}); its chain stops there")
                return
            parent = node
        export, _ = self.deploy_stages(candidate)
        relative = self.relative(candidate)
        path = self.build(export, self.costs.export(relative))
        if path is None:
            record.update(status="failed", reason=self.state["nodes"][export.name]["reason"])
            return
        drop = self.drop(export.name, path)
        # The standard recipe stays plain (no layers kept in float), so the comparison with it is fair; every other
        # quantization gets the budget left, and quantize keeps its most sensitive layers in float to meet it.
        standard = not candidate.steps
        _, quantize = self.deploy_stages(candidate, remaining_points=None if standard else budget - drop)
        if quantize is not None and (standard or drop <= budget + 1e-9):
            path = self.build(quantize, self.costs.quantize(relative, static=candidate.precision == "int8-static"))
            if path is None:
                record.update(status="over budget", reason=self.state["nodes"][quantize.name]["reason"])
                return
            drop = self.drop(quantize.name, path)
        self.searcher.record_final(candidate, drop)
        within = drop <= budget + 1e-9
        record.update(status="built" if within else "over budget", selection_drop_points=round(drop, 3),
                      artifact=str(path))
        self.finals.append((candidate, path))  # benched either way: the report shows what the budget ruled out
        if not within:
            record["reason"] = f"loses {drop:.2f} points on the selection slice (budget {budget:g})"

    def relative(self, candidate) -> float:
        from bertc.optimize.search import relative_cost

        return relative_cost(self.probe.shape, candidate.steps, self.probe.seq_len)

    def estimate_node(self, candidate, index: int) -> float:
        from bertc.optimize.search import relative_cost

        setting, shape, seq = self.config.setting, self.probe.shape, self.probe.seq_len
        parent = relative_cost(shape, candidate.steps[:index], seq)
        child = relative_cost(shape, candidate.steps[:index + 1], seq)
        if candidate.steps[index].kind == "layers":
            return self.costs.distill(min(self.plan.train_rows, setting("distill_samples")), child, parent)
        return self.costs.prune(setting("importance_samples"), min(self.plan.train_rows, setting("recover_samples")),
                                parent, child)

    def estimate(self, candidate) -> float:
        """Seconds still needed to build ``candidate`` (stages already built cost nothing)."""
        seconds = sum(self.estimate_node(candidate, i) for i, node in enumerate(candidate.chain())
                      if node not in self.inputs)
        relative = self.relative(candidate)
        if f"{candidate.node}-onnx" not in self.inputs:
            seconds += self.costs.export(relative)
        if candidate.precision != "fp32" and candidate.name not in self.inputs:
            seconds += self.costs.quantize(relative, static=candidate.precision == "int8-static")
        return seconds

    def finish_estimate(self, candidates: list) -> float:
        from bertc.optimize.search import PRECISION_SPEEDUP

        speed = PRECISION_SPEEDUP[self.config.target]
        variants = [1.0] + [self.relative(c) / speed[c.precision] for c in candidates]
        return self.costs.finish(variants, self.config.setting("bench_runs") + 10, self.plan.test_rows)

    def time_reason(self, candidate) -> str | None:
        from bertc.optimize.search import time_reason

        budget = self.config.setting("time_budget")
        if budget is None:
            return None
        wrap_up = self.finish_estimate([c for c, _ in self.finals] + [candidate])
        return time_reason(self.estimate(candidate), wrap_up, budget - (time.monotonic() - self.started))

    # -------------------------------------------------------------------------------------- the end

    def finish(self) -> dict:
        self.save()
        summary = finish_run(self.out, self.baseline, [path for _, path in self.finals], self.select,
                             self.bench_config, self.config.target, searched=self.state.get("candidates", []))
        summary["seconds"] = round(time.monotonic() - self.started, 1)
        self.state.update(finished=True, result={k: summary[k] for k in ("winner", "shipped_baseline", "text")})
        self.save()
        return summary


def finish_run(out: Path, baseline: Path, candidates: list[Path], select: SelectConfig, bench_config, target: str,
               searched: list[dict] | None = None) -> dict:
    """Bench the baseline and the candidates side by side, report, score on the test data, ship the winner."""
    from bertc.bench.bench import bench
    from bertc.bench.report import report
    from bertc.console import console
    from bertc.inference import evaluate
    from bertc.optimize.search import choose

    console.print(f"benching {len(candidates) + 1} variants side by side on {bench_config.data}", soft_wrap=True)
    bench_config = dataclasses.replace(bench_config, baseline=str(baseline))
    results = bench([baseline, *candidates], bench_config, out / BENCH_FILE, overwrite=True)
    report_dir = report([out / BENCH_FILE], out / "report", select.max_accuracy_drop, overwrite=True)
    choice = choose(results, select.max_accuracy_drop, select.latency_budget_ms)
    rows, base = choice["rows"], next(r for r in choice["rows"] if r["baseline"])
    standard = next((r for r in rows if r["name"] == f"base-{'int8-dynamic' if target == 'cpu' else 'fp16'}"), None)
    for row in rows:
        if select.test:
            row["test_accuracy"] = evaluate(row["path"], select.test, split="test", max_samples=select.test_samples,
                                            device=target)["accuracy"]
        row["vs_standard"] = standard["p50_ms"] / row["p50_ms"] if standard and row["p50_ms"] else None
    for row in rows:
        if select.test:
            row["test_drop_points"] = 100 * (base["test_accuracy"] - row["test_accuracy"])
    winner = choice["winner"]
    ship(Path(winner["path"]), out / "best", target, choice["text"])
    summary = {"winner": winner["name"], "best": str(out / "best"), "shipped_baseline": choice["shipped_baseline"],
               "text": choice["text"], "rows": rows, "searched": searched or [],
               "report": str(report_dir / "report.html"), "bench": str(out / BENCH_FILE),
               "recipe": str(out / RECIPE_FILE), "test_data": select.test}
    (out / SUMMARY_FILE).write_text(summary_markdown(summary, select))
    print_summary(summary)
    return summary


def summary_markdown(summary: dict, select: SelectConfig) -> str:
    header, lines = summary_rows(summary)
    text = ["# bertc optimize", "", summary["text"], "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    text += ["| " + " | ".join(line) + " |" for line in lines]
    notes = [f"- {s['name']}: {s['status']} ({s['reason']})" for s in summary["searched"] if s.get("reason")]
    if notes:
        text += ["", "Candidates not shipped:", "", *notes]
    text += ["", "Δ: accuracy points against the fine-tuned model. "
             f"Selection: accuracy on the selection slice, budget {points(select.max_accuracy_drop)}. "
             f"Test: {summary['test_data'] or 'no test data given'}. Latency: p50 at batch 1 with real lengths. "
             f"Report: {summary['report']}. Recipe: {summary['recipe']}.", ""]
    return "\n".join(text)


def summary_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    def pct(value):
        return "-" if value is None else f"{100 * value:.2f}"

    def signed(value):
        return "-" if value is None else f"{-value + 0.0:+.2f}"

    def ratio(value):
        return "-" if value is None else f"{value:.3g}x"

    header = ["variant", "selection %", "Δ", "test %", "Δ", "p50 ms", "vs fine-tuned", "vs standard", ""]
    lines = []
    for row in summary["rows"]:
        mark = "baseline" if row["baseline"] else ("over budget" if not row["within_budget"] else "")
        if row["name"] == summary["winner"]:
            mark = "shipped" if not mark else f"{mark}, shipped"
        lines.append([row["name"], pct(row["accuracy"]), signed(row["drop_points"]), pct(row.get("test_accuracy")),
                      signed(row.get("test_drop_points")), f"{row['p50_ms']:.3g}", ratio(row["speedup"]),
                      ratio(row.get("vs_standard")), mark])
    return header, lines


def print_summary(summary: dict) -> None:
    from rich.table import Table

    from bertc.console import console

    header, lines = summary_rows(summary)
    table = Table(title="bertc optimize")
    for column in header:
        table.add_column(column, justify="left" if column in ("variant", "") else "right",
                         overflow="fold", no_wrap=column == "variant")
    for line in lines:
        table.add_row(*line)
    console.print(table)
    for searched in summary["searched"]:
        if searched.get("reason"):
            console.print(f"  {searched['name']}: {searched['status']} ({searched['reason']})", style="dim",
                          soft_wrap=True)
    console.print(summary["text"], soft_wrap=True)
    console.print(f"best model: {summary['best']} (serve it: python {summary['best']}/serve.py \"some text\")",
                  soft_wrap=True)
    console.print(f"report: {summary['report']}   recipe: {summary['recipe']}", soft_wrap=True)


# ---------------------------------------------------------------------------------------------- shipping

def ship(src: Path, dest: Path, target: str, why: str) -> Path:
    """Copy the winner to ``dest`` with its label map, a serving script and a README; replaces ``dest``."""
    from bertc.artifact import read_manifest, staging_dir

    manifest = read_manifest(src)
    labels = manifest["task"]["labels"]
    kind = manifest["model"].get("kind", "pytorch")
    with staging_dir(dest, overwrite=True) as tmp:
        for file in src.iterdir():
            if file.is_file():
                shutil.copy2(file, tmp / file.name)
        (tmp / "labels.json").write_text(json.dumps(
            {"labels": labels, "id2label": {str(i): label for i, label in enumerate(labels)}}, indent=2) + "\n")
        (tmp / "serve.py").write_text(serving_script(kind, target, manifest["task"].get("max_length") or 128))
        lineage = [f"- {step.get('stage')}: {step.get('path')}" for step in manifest.get("lineage", [])]
        (tmp / "README.md").write_text("\n".join([
            f"# {src.name}, chosen by bertc optimize", "", why, "",
            f"A copy of `{src}` ({kind} {manifest['model'].get('variant') or ''}, for {target}).", "",
            "    python serve.py \"a gripping, beautifully acted film\" \"the plot is thin\"", "",
            "prints one label per text" + (" with plain onnxruntime and the saved tokenizer (bertc is not needed)."
                                          if kind == "onnx" else " (with bertc's loader)."),
            "`labels.json` maps output indices to labels; `bertc.json` is the manifest.", "",
            "Lineage, oldest first:", "", *lineage, f"- {manifest.get('stage')}: {src}", ""]))
    return dest


ONNX_SERVE = '''\
"""Serve the model bertc optimize chose: plain onnxruntime and the saved tokenizer, no bertc needed.

    python serve.py "a gripping, beautifully acted film" "the plot is thin and the jokes fall flat"
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer

HERE = Path(__file__).resolve().parent
tokenizer = AutoTokenizer.from_pretrained(HERE)  # right padding: the fused attention expects it
labels = json.loads((HERE / "labels.json").read_text())["labels"]
session = ort.InferenceSession(str(HERE / "model.onnx"), providers={providers})
input_names = [i.name for i in session.get_inputs()]


def classify(texts):
    encoded = tokenizer(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="np")
    logits = session.run(["logits"], {{name: encoded[name].astype(np.int64) for name in input_names}})[0]
    return [labels[i] for i in logits.argmax(-1)]


if __name__ == "__main__":
    texts = sys.argv[1:] or ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat"]
    for text, label in zip(texts, classify(texts)):
        print(f"{{label}}\\t{{text}}")
'''

TORCH_SERVE = '''\
"""Serve the model bertc optimize chose (a PyTorch artifact: nothing beat it within the accuracy budget).

    python serve.py "a gripping, beautifully acted film" "the plot is thin and the jokes fall flat"
"""
import sys
from pathlib import Path

from bertc.inference import predict

HERE = Path(__file__).resolve().parent


def classify(texts):
    return [row["label"] for row in predict(HERE, texts, device="{device}")]


if __name__ == "__main__":
    texts = sys.argv[1:] or ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat"]
    for text, label in zip(texts, classify(texts)):
        print(f"{{label}}\\t{{text}}")
'''


def serving_script(kind: str, target: str, max_length: int) -> str:
    if kind == "onnx":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if target == "cuda" else ["CPUExecutionProvider"]
        return ONNX_SERVE.format(providers=providers, max_length=max_length)
    return TORCH_SERVE.format(device=target)
