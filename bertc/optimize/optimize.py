"""`bertc optimize`: from labelled data to the fastest model within an accuracy budget, with the recipe it ran.

1. Fine-tune the pretrained model (or start from a fine-tuned artifact, ``--from``).
2. Walk the candidate space of :mod:`bertc.optimize.search` (layers by distillation; hidden width, heads in
   every layer or in the last layers, FFN, each pruned with distillation from its parent; then fused ONNX and
   int8/fp16), fastest expected first, stopping a chain as soon as a step misses the accuracy budget on the
   selection slice, and within the time budget. Every stage is one of bertc's public stage functions; each
   artifact is kept under ``DIR/stages/<name>`` with its manifest. Each candidate is deployed in both runtimes
   (:mod:`bertc.optimize.runtimes`): ONNX Runtime, and OpenVINO (fp32 or NNCF int8, and bf16 where the CPU has
   it) when the openvino extra is installed.
3. Bench the baseline and every deployable side by side on the selection slice at batch 1 and ``--serve-batch``,
   write the report, score them on the test data, and copy the winner (the fastest at the serve batch within
   the budget) to ``DIR/best`` with a serving snippet. If nothing beats the baseline within the budget, ship the
   baseline and say so.

``DIR/optimize.json`` holds the run's state (what was built, skipped and why, timings), ``DIR/recipe.toml`` the
stages it ran, for `bertc run`. ``--resume`` reuses every complete artifact and continues interrupted training.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from bertc.artifact import is_artifact
from bertc.bench.results import accuracy_delta
from bertc.console import console
from bertc.errors import BertcError
from bertc.formatting import duration, points
from bertc.imports.config import ImportConfig
from bertc.inference.evaluation import evaluate
from bertc.jsonio import to_jsonable
from bertc.optimize.config import OptimizeConfig
from bertc.optimize.finish import finish_run, shipped_line
from bertc.optimize.plan import DataPlan, Probe, check_cuda, measure, plan_data
from bertc.optimize.recipe import Recipe, RecipeStage, run_stage, write_recipe
from bertc.optimize.rundir import (
    RECIPE_FILE,
    STAGES_DIR,
    check_out_dir,
    kept_for_resume,
    mark_finished,
    save_state,
    start_out_dir,
)
from bertc.optimize.runtimes import Runtimes, measured_runtimes
from bertc.optimize.search import (
    PRECISION_SPEEDUP,
    Candidate,
    CostModel,
    Search,
    candidates_for,
    order_candidates,
    parse_candidate,
    relative_cost,
    time_reason,
)
from bertc.optimize.stages import (
    compression_stage,
    deploy_stages,
    distilled_rows,
    finetune_stage,
    measurement_configs,
    openvino_stages,
)


def optimize(config: OptimizeConfig, out: Path | str, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Run the whole search into ``out``; returns the summary (winner, table, report path)."""
    run = Run.prepare(config, Path(out).absolute(), resume=resume, overwrite=overwrite)
    with kept_for_resume(run.out, created=run.created):
        run.baseline_stage()
        run.search()
        return run.finish()


def config_record(config: OptimizeConfig) -> dict:
    """The options a resumed run must share with the interrupted one (the time budget may change)."""
    record = to_jsonable(config)
    record.pop("time_budget")
    return {"mode": "optimize", **record}


class Run:
    """One `bertc optimize` run: builds stages, records them (state and recipe) and drives the search."""

    def __init__(self, config: OptimizeConfig, out: Path, plan: DataPlan, probe: Probe,
                 candidates: list[Candidate], resume: bool, started: float, runtimes: Runtimes | None = None):
        self.config, self.out, self.plan, self.probe, self.candidates = config, out, plan, probe, candidates
        self.runtimes = runtimes or Runtimes(openvino=False, bf16=False)
        self.state: dict = {"nodes": {}}
        self.resume, self.started = resume, started
        self.created = False  # whether this run made ``out`` (so may remove it when it fails before building)
        self.stages_dir = out / STAGES_DIR
        self.costs = CostModel(probe.train_rate, probe.infer_rate, plan.selection_rows)
        self.inputs: dict[str, Path] = {}  # stage name -> artifact built or reused in this run
        self.done: list[RecipeStage] = []  # in build order
        self.notes: list[str] = []
        self.finals: list[tuple[Candidate, Path]] = []  # every deployable built
        self.base_ref, self.baseline, self.base_accuracy, self.base_correct = "", Path(), 0.0, ""
        self.bench_config, self.select = measurement_configs(config, plan)
        # With a latency budget the most accurate model that meets it wins, so slower candidates stay worth trying.
        self.searcher = Search(probe.shape, probe.seq_len, config.target, config.max_accuracy_drop,
                               exhaustive=config.exhaustive or config.latency_budget_ms is not None)

    @classmethod
    def prepare(cls, config: OptimizeConfig, out: Path, *, resume: bool, overwrite: bool) -> Run:
        """Every check that can fail, before anything long runs or anything is deleted."""
        started = time.monotonic()
        record = config_record(config)
        previous = check_out_dir(out, record, resume, overwrite)
        if config.target == "cuda":
            check_cuda()
        plan, sample = plan_data(config)
        given = [parse_candidate(spec, config.target) for spec in config.candidates]
        probe = measure(config, plan, sample)
        candidates = candidates_for(given, config.preset, probe.shape, config.target)
        run = cls(config, out, plan, probe, candidates, resume, started, measured_runtimes(config.target))
        run.check_time_budget()
        run.created = previous is None
        run.state = start_out_dir(out, record, overwrite, previous)
        run.state["probe"] = {"train_samples_per_second": round(probe.train_rate, 2), "seq_len": probe.seq_len,
                              "inference_samples_per_second": round(probe.infer_rate, 2),
                              "shape": dataclasses.asdict(probe.shape)}
        budget = config.setting("time_budget")
        console.print(f"optimizing for {config.target}: {len(candidates)} candidates, accuracy budget "
                      f"{points(config.max_accuracy_drop)} on {plan.selection_rows} rows of {plan.selection}"
                      + (f", time budget {duration(budget)}" if budget else "")
                      + (f", serving at batch {config.serve_batch}" if config.serve_batch > 1 else ""), soft_wrap=True)
        for note in run.runtimes.notes:
            console.print(note, style="yellow", soft_wrap=True)
        return run

    def check_time_budget(self) -> None:
        """Refuse a time budget given that cannot fit even the fine-tuning; warn when the preset's cannot."""
        config, plan, probe = self.config, self.plan, self.probe
        budget = config.setting("time_budget")
        if config.start_from is not None or budget is None:
            return
        rows = config.finetune_rows_seen(plan.train_rows)
        need = self.costs.finetune(rows, 1.0) + self.finish_estimate([])
        if need <= budget:
            return
        message = (f"--time-budget {duration(budget)} is too small to fine-tune even once: {rows:.0f} training rows "
                   f"(search trials and epochs) at the measured {probe.train_rate:.0f} samples/s plus the final "
                   f"bench take about {duration(need)}")
        if config.time_budget is not None:
            raise BertcError(f"{message}; give at least --time-budget {math.ceil(need / 60)}m, fewer "
                             "--finetune-samples, or --from a fine-tuned artifact")
        # The preset's budget, on a slow or busy machine: fine-tune anyway, try nothing else.
        console.print(f"warning: the {config.preset} preset's {message}; bertc fine-tunes anyway and skips "
                      "candidates that do not fit", style="yellow", soft_wrap=True)

    # -------------------------------------------------------------------------------------- stages

    def ref(self, node: str) -> str:
        """How a recipe names a node's artifact: its stage name, or the path of the --from artifact."""
        return self.base_ref if node == "base" else node

    def build(self, stage: RecipeStage, estimate: float, must_succeed: bool = False) -> Path | None:
        """Build (or, on resume, reuse) one stage; a candidate's failure is recorded, not raised."""
        if stage.name in self.inputs:
            return self.inputs[stage.name]
        out, record = self.stages_dir / stage.name, {"kind": stage.kind, "input": stage.input}
        if is_artifact(out) and self.resume:
            record = {**self.state["nodes"].get(stage.name, record), "status": "reused"}
        else:
            console.print(f"[bold]{stage.name}[/bold]: {stage.kind} of {stage.input or 'the pretrained model'} "
                          f"(about {duration(estimate)})", soft_wrap=True)
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
        """Accuracy points ``path`` loses against the baseline on the selection slice; its node records the
        difference with its paired bootstrap 95% interval (``selection_delta``, from both models' rows)."""
        accuracy, node = self.selection_accuracy(name, path), self.state["nodes"][name]
        node["selection_delta"] = accuracy_delta({"correct": node["selection_correct"]}, {"correct": self.base_correct})
        return 100 * (self.base_accuracy - accuracy)

    def loss(self, name: str, drop: float) -> str:
        """'loses 2.10 [0.9, 3.3] points on the selection slice': the loss with its 95% interval."""
        return f"loses {self.loss_points(name, drop)} points on the selection slice"

    def loss_points(self, name: str, drop: float) -> str:
        delta = self.state["nodes"][name].get("selection_delta")
        return f"{drop:.2f}" + (f" [{-delta['high'] + 0.0:.1f}, {-delta['low'] + 0.0:.1f}]" if delta else "")

    def selection_accuracy(self, name: str, path: Path, reuse: bool = True) -> float:
        """Accuracy on the selection slice and which of its rows the model gets right (for paired intervals),
        recorded in the node's state. A node reused on resume keeps what it recorded (with ``reuse``); a node
        recorded without its rows (by an older bertc) or built anew is evaluated."""
        node = self.state["nodes"].setdefault(name, {})
        correct = node.get("selection_correct")
        if not (reuse and isinstance(correct, str) and len(correct) == self.plan.selection_rows
                and "selection_accuracy" in node):
            report = evaluate(path, self.plan.selection, columns=self.plan.columns, split="validation",
                              max_samples=self.plan.selection_rows, device=self.config.target, per_row=True)
            node.update(selection_accuracy=report["accuracy"], selection_correct=report["correct"])
        return node["selection_accuracy"]

    def baseline_stage(self) -> None:
        """Fine-tune (or take the --from artifact): the model every candidate starts from and is compared with."""
        config = self.config
        if config.start_from and not is_artifact(config.start_from):  # a transformers classifier: imported first
            self.base_ref = "import"
            self.baseline = self.build(RecipeStage(name="import", kind="import", config=ImportConfig(config.max_length),
                                                   input=config.start_from), 0.0, must_succeed=True)
        elif config.start_from:
            self.baseline = Path(config.start_from).absolute()
            self.base_ref = str(self.baseline)
        else:
            self.base_ref = "finetune"
            self.baseline = self.build(finetune_stage(config, self.plan),
                                       self.costs.finetune(config.finetune_rows_seen(self.plan.train_rows), 1.0),
                                       must_succeed=True)
        self.inputs["base"] = self.baseline
        name = self.base_ref if self.base_ref in ("finetune", "import") else "from"
        # --from names an artifact outside the run, which may have changed since an interrupted run: evaluated again
        self.base_accuracy = self.selection_accuracy(name, self.baseline, reuse=name != "from")
        self.base_correct = self.state["nodes"][name]["selection_correct"]
        self.state["nodes"][name]["path"] = str(self.baseline)

    def save(self) -> None:
        """The state and the recipe of what was built so far, after every step (an interrupted run has both)."""
        self.state["elapsed_seconds"] = round(time.monotonic() - self.started, 1)
        save_state(self.out, self.state)
        if self.base_ref:
            recipe = Recipe(stages=self.done, baseline=self.base_ref, candidates=[p.name for _, p in self.finals],
                            select=self.select, bench=self.bench_config, target=self.config.target, notes=self.notes)
            write_recipe(recipe, self.out / RECIPE_FILE, header=[
                "Written by `bertc optimize`: the stages it ran, in order. Re-run with "
                "`bertc run recipe.toml --out DIR`."])

    # -------------------------------------------------------------------------------------- the search

    def search(self) -> None:
        probe, config = self.probe, self.config
        self.state["candidates"] = records = []
        ordered = order_candidates(self.candidates, probe.shape, probe.seq_len, config.target)
        console.print("plan (fastest expected first; estimates from the measured "
                      f"{probe.train_rate:.0f} training samples/s): " + ", ".join(
                          f"{c.name} ~{self.searcher.expected(c):.1f}x, {duration(self.estimate(c))}" for c in ordered),
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

    def build_candidate(self, candidate: Candidate, record: dict) -> None:
        """The candidate's compression chain, then its deployables in every runtime measured."""
        if not self.build_chain(candidate, record):
            return
        drops = [self.build_onnx(candidate, record), *self.build_openvino(candidate, record)]
        built = [drop for drop in drops if drop is not None]
        self.searcher.record_final(candidate, min(built) if built else None)

    def build_chain(self, candidate: Candidate, record: dict) -> bool:
        """The PyTorch nodes of the candidate; False when one failed or missed the budget (the chain stops)."""
        budget = self.config.max_accuracy_drop
        parent = "base"
        for i, node in enumerate(candidate.chain()):
            stage = compression_stage(self.config, self.plan, node, candidate.steps[i], self.ref(parent))
            path = self.build(stage, self.estimate_node(candidate, i))
            if path is None:
                record.update(status="failed", reason=self.state["nodes"][node]["reason"])
                return False
            drop = self.drop(node, path)
            if not self.searcher.record_node(node, candidate.steps[:i + 1], drop, self.loss_points(node, drop)):
                record.update(status="over budget", reason=f"{node} {self.loss(node, drop)} (budget {budget:g}); "
                                                           "its chain stops there")
                return False
            parent = node
        return True

    def build_onnx(self, candidate: Candidate, record: dict) -> float | None:
        """The ONNX Runtime deployable (recorded in the candidate's record); its selection drop, None if it failed."""
        budget = self.config.max_accuracy_drop
        export, _ = deploy_stages(self.config, self.plan, candidate, self.ref(candidate.node))
        relative = self.relative(candidate)
        path = self.build(export, self.costs.export(relative))
        if path is None:
            record.update(status="failed", reason=self.state["nodes"][export.name]["reason"])
            return None
        drop = self.drop(export.name, path)
        # An uncompressed model (the standard recipe) stays plain (no layers kept in float), so the comparison with
        # it is fair; every other quantization gets the budget left, and keeps its most sensitive layers in float
        # to meet it.
        plain = not candidate.compressed
        _, quantize = deploy_stages(self.config, self.plan, candidate, self.ref(candidate.node),
                                    remaining_points=None if plain else budget - drop)
        if quantize is not None and (plain or drop <= budget + 1e-9):
            path = self.build(quantize, self.costs.quantize(relative, static=candidate.precision == "int8-static"))
            if path is None:
                record.update(status="over budget", reason=self.state["nodes"][quantize.name]["reason"])
                return None
            drop = self.drop(quantize.name, path)
        within = drop <= budget + 1e-9
        record.update(status="built" if within else "over budget", selection_drop_points=round(drop, 3),
                      artifact=str(path))
        self.finals.append((candidate, path))  # benched either way: the report shows what the budget ruled out
        if not within:
            record["reason"] = f"{self.loss(path.name, drop)} (budget {budget:g})"
        return drop

    def build_openvino(self, candidate: Candidate, record: dict) -> list[float]:
        """The OpenVINO deployables (recorded under the record's ``openvino``); the selection drop of each built.
        The int8 model gets the budget its fp32 IR leaves, as in ONNX Runtime (the standard recipe: plain)."""
        if not self.runtimes.openvino:
            return []
        budget, plain, relative = self.config.max_accuracy_drop, not candidate.compressed, self.relative(candidate)
        parent, bf16 = self.ref(candidate.node), self.runtimes.bf16
        record["openvino"] = entries = []
        fp32 = openvino_stages(self.config, self.plan, candidate, parent, bf16=bf16)[0]
        path = self.build(fp32, self.costs.export(relative))
        fp32_drop = None if path is None else self.drop(fp32.name, path)
        stages = openvino_stages(self.config, self.plan, candidate, parent, bf16=bf16,
                                 remaining_points=None if plain or fp32_drop is None else budget - fp32_drop)
        if candidate.precision == "fp32" or path is None:
            self.record_deployable(candidate, fp32, path, fp32_drop, entries)
        drops = [fp32_drop] if candidate.precision == "fp32" and fp32_drop is not None else []
        for stage in stages[1:]:
            if stage.kind == "quantize" and (fp32_drop is None or not (plain or fp32_drop <= budget + 1e-9)):
                why = "its fp32 IR failed" if fp32_drop is None else f"its fp32 IR already loses {fp32_drop:.2f} points"
                entries.append({"name": stage.name, "status": "skipped", "reason": why})
                continue
            path = self.build(stage, self.stage_estimate(stage, relative))
            drop = None if path is None else self.drop(stage.name, path)
            self.record_deployable(candidate, stage, path, drop, entries)
            drops += [] if drop is None else [drop]
        return drops

    def record_deployable(self, candidate: Candidate, stage: RecipeStage, path: Path | None, drop: float | None,
                          entries: list) -> None:
        """One OpenVINO deployable in the candidate's record; a built one is benched (within the budget or not)."""
        budget = self.config.max_accuracy_drop
        if path is None or drop is None:
            reason = self.state["nodes"][stage.name]["reason"]
            entries.append({"name": stage.name, "status": "failed", "reason": reason})
            return
        entry = {"name": stage.name, "status": "built", "selection_drop_points": round(drop, 3), "artifact": str(path)}
        if drop > budget + 1e-9:
            entry.update(status="over budget", reason=f"{self.loss(stage.name, drop)} (budget {budget:g})")
        entries.append(entry)
        self.finals.append((candidate, path))

    def relative(self, candidate: Candidate) -> float:
        return relative_cost(self.probe.shape, candidate.steps, self.probe.seq_len)

    def estimate_node(self, candidate: Candidate, index: int) -> float:
        setting, shape, seq = self.config.setting, self.probe.shape, self.probe.seq_len
        parent = relative_cost(shape, candidate.steps[:index], seq)
        child = relative_cost(shape, candidate.steps[:index + 1], seq)
        if candidate.steps[index].kind == "layers":
            return self.costs.distill(distilled_rows(self.config, self.plan), child, parent)
        return self.costs.prune(setting("importance_samples"), min(self.plan.train_rows, setting("recover_samples")),
                                parent, child)

    def estimate(self, candidate: Candidate) -> float:
        """Seconds still needed to build ``candidate`` (stages already built cost nothing)."""
        seconds = sum(self.estimate_node(candidate, i) for i, node in enumerate(candidate.chain())
                      if node not in self.inputs)
        relative = self.relative(candidate)
        if f"{candidate.node}-onnx" not in self.inputs:
            seconds += self.costs.export(relative)
        if candidate.precision != "fp32" and candidate.name not in self.inputs:
            seconds += self.costs.quantize(relative, static=candidate.precision == "int8-static")
        return seconds + sum(self.stage_estimate(stage, relative) for stage in self.openvino_plan(candidate)
                             if stage.name not in self.inputs)

    def openvino_plan(self, candidate: Candidate) -> list[RecipeStage]:
        """The OpenVINO stages the candidate will build (none without OpenVINO)."""
        if not self.runtimes.openvino:
            return []
        return openvino_stages(self.config, self.plan, candidate, self.ref(candidate.node), bf16=self.runtimes.bf16)

    def stage_estimate(self, stage: RecipeStage, relative: float) -> float:
        """An OpenVINO stage: an export, or NNCF's calibrated quantization (costed as static int8)."""
        return self.costs.quantize(relative, static=True) if stage.kind == "quantize" else self.costs.export(relative)

    def deployable_count(self, candidate: Candidate) -> int:
        """How many variants the candidate adds to the final bench: ONNX Runtime's and OpenVINO's."""
        plan = self.openvino_plan(candidate)  # the fp32 IR first: the int8 model's parent unless fp32 is deployed
        return 1 + len(plan) - (1 if plan and candidate.precision != "fp32" else 0)

    def finish_estimate(self, candidates: list[Candidate]) -> float:
        speed = PRECISION_SPEEDUP[self.config.target]
        variants = [1.0] + [self.relative(c) / speed[c.precision] for c in candidates]
        serve = self.config.serve_batch
        calls = (self.config.setting("bench_runs") + 10) * (1 + serve if serve > 1 else 1)  # rows timed at 1 and N
        return self.costs.finish(variants, calls, self.plan.test_rows)

    def time_reason(self, candidate: Candidate) -> str | None:
        budget = self.config.setting("time_budget")
        if budget is None:
            return None
        wrap_up = self.finish_estimate([c for c, _ in self.finals] + [candidate] * self.deployable_count(candidate))
        return time_reason(self.estimate(candidate), wrap_up, budget - (time.monotonic() - self.started))

    # -------------------------------------------------------------------------------------- the end

    def finish(self) -> dict:
        self.save()
        summary = finish_run(self.out, self.baseline, [path for _, path in self.finals], self.select,
                             self.bench_config, self.config.target, searched=self.state.get("candidates", []),
                             notes=[*self.runtimes.notes, *filter(None, [self.plan.unlike_test])])
        summary["seconds"] = round(time.monotonic() - self.started, 1)
        mark_finished(self.state, summary)
        self.state["result"].update(shipped=shipped_line(summary), resolution=summary["resolution"])
        self.save()
        return summary
