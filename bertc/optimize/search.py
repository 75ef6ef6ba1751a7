"""The candidate space of `bertc optimize` and the rules that walk it: order, early stopping, time budget (the
winner among what was built: :mod:`bertc.optimize.winner`).

A candidate is a chain of compression steps applied to the fine-tuned model, then a deployable precision (fused
ONNX in fp32, int8 dynamic/static for CPU, fp16 for CUDA), written ``STEP+STEP:PRECISION``. The steps, applied
in this order whatever order they are given in (each but ``layersK`` pruned with distillation from its parent):

- ``layersK``: keep K encoder layers, distilled from the parent;
- ``hiddenN``: keep N hidden (embedding and residual) channels across the whole model, a multiple of the head size;
- ``headsN``: keep the N most important attention heads in every layer;
- ``headsNlastK``: keep N heads in each of the last K layers, the others unchanged (upper layers are the most
  redundant after fine-tuning);
- ``ffnP``: keep P percent of every feed-forward block.

Each step has one spelling, so a chain's name is canonical and a plain directory name (``DIR/stages/<name>``).
Candidates that share a prefix share its artifacts: ``layers3`` is built once for ``layers3:int8-dynamic`` and
``layers3+ffn50:int8-dynamic``.

The search is plain logic over estimates, so it is tested without training anything:

- order: by expected speedup over the fine-tuned model in PyTorch eager (analytic FLOPs of the pruned shape,
  a per-layer overhead, and a prior factor per precision), fastest first, students under half the layers last;
- early stopping: a compression step whose selection accuracy already misses the budget ends its chain, and
  candidates at least as compressed in every dimension are skipped too;
- speed pruning: once a candidate meets the budget, those expected clearly slower are skipped (unless exhaustive);
- time budget: a candidate starts only if its estimated remaining cost, plus finishing the run, fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from bertc.compress.flops import layer_flops
from bertc.errors import BertcError

STEP_ORDER = ("layers", "hidden", "heads", "headslast", "ffn")
CPU_PRECISIONS = ("fp32", "int8-dynamic", "int8-static")
CUDA_PRECISIONS = ("fp32", "fp16")
# The precision a target quantizes to by default; the fine-tuned model at it is the standard recipe.
DEFAULT_PRECISION = {"cpu": "int8-dynamic", "cuda": "fp16"}
# Priors for the speedup of each deployable over PyTorch fp32 eager, before anything is measured (facts measured
# on MiniLM-L6, batch 1, 2 CPU cores: fused fp32 ONNX about 2x, fused + dynamic int8 4.4x).
PRECISION_SPEEDUP = {"cpu": {"fp32": 2.0, "int8-dynamic": 4.4, "int8-static": 4.0},
                     "cuda": {"fp32": 1.5, "fp16": 3.0}}
LAYER_OVERHEAD = 0.15  # per-layer cost that does not shrink with pruning (kernel launches, LayerNorm...)
EMBEDDING_COST = 0.2  # embeddings, pooler and classifier, as a share of one full layer (scales with the width)
SPEED_MARGIN = 0.15  # skip a candidate expected to be more than this much slower than one that met the budget
_TOKEN = re.compile(r"^(layers|hidden|heads|ffn)(\d+)$")
_LAST_HEADS_TOKEN = re.compile(r"^heads(\d+)last(\d+)$")
STEP_HELP = ("use layersK, hiddenN, headsN, headsNlastK (N heads in the last K layers) or ffnP (percent), joined "
             "with +, e.g. layers3+ffn50:int8-dynamic, hidden256+heads6last3:int8-dynamic, or base:int8-dynamic")


@dataclass(frozen=True)
class Shape:
    """The fine-tuned model's shape the candidate space is built from."""

    layers: int
    heads: int  # attention heads per layer
    ffn: int  # intermediate size per layer
    hidden: int
    head_dim: int
    width_surgery: bool = True  # the family's hidden width can be pruned (bertc.families.Family.width_surgery)
    family: str = "bert"


@dataclass(frozen=True)
class Step:
    kind: str  # one of STEP_ORDER: layers, hidden, heads, headslast (N heads in the last K layers) or ffn (percent)
    value: int
    last: int = 0  # headslast only: how many of the last layers keep ``value`` heads

    @property
    def name(self) -> str:
        return f"heads{self.value}last{self.last}" if self.kind == "headslast" else f"{self.kind}{self.value}"

    def prune_options(self) -> dict:
        """The `bertc prune` options (PruneConfig fields) of a pruning step; a layers step is distilled instead."""
        if self.kind == "headslast":
            return {"heads_per_layer": ",".join(f"{-i}:{self.value}" for i in range(self.last, 0, -1))}
        if self.kind == "ffn":
            return {"ffn": self.value / 100}
        if self.kind in ("hidden", "heads"):
            return {self.kind: self.value}
        raise ValueError(f"{self.name} is not a pruning step")


def parse_step(token: str, spec: str) -> Step:
    """One compression step of ``spec``: ``layers3``, ``hidden256``, ``heads8``, ``heads6last3`` or ``ffn50``."""
    last, plain = _LAST_HEADS_TOKEN.match(token), _TOKEN.match(token)
    step = Step("headslast", int(last[1]), int(last[2])) if last else Step(plain[1], int(plain[2])) if plain else None
    if step is None or step.value < 1 or (step.kind == "headslast" and step.last < 1) or \
            (step.kind == "ffn" and step.value > 100):
        raise BertcError(f"candidate {spec!r}: {token!r} is not a compression step; {STEP_HELP}")
    return step


@dataclass(frozen=True)
class Candidate:
    steps: tuple[Step, ...]  # compression applied to the fine-tuned model, in STEP_ORDER
    precision: str  # fp32, int8-dynamic, int8-static or fp16

    @property
    def node(self) -> str:
        """Name of the PyTorch model the candidate deploys: 'base' (the fine-tuned model) or e.g. layers3+ffn50."""
        return "+".join(step.name for step in self.steps) or "base"

    @property
    def name(self) -> str:
        return f"{self.node}-{self.precision}"

    @property
    def spec(self) -> str:
        return f"{self.node}:{self.precision}"

    @property
    def compressed(self) -> bool:
        """Whether the candidate prunes or distils at all. An uncompressed one (the standard recipe among them) is
        quantized plainly: per-tensor int8, no layer kept in float, so comparisons with it are fair."""
        return bool(self.steps)

    def is_standard(self, target: str) -> bool:
        """The standard recipe: the fine-tuned model at the target's default precision, which every report
        compares with."""
        return not self.compressed and self.precision == DEFAULT_PRECISION[target]

    def chain(self) -> list[str]:
        """The PyTorch nodes to build, in order: layers3, layers3+ffn50."""
        return ["+".join(step.name for step in self.steps[:i + 1]) for i in range(len(self.steps))]

    def final_nodes(self) -> list[str]:
        """The ONNX nodes: the fp32 export and, unless fp32 is the precision, the quantized model."""
        export = f"{self.node}-onnx"
        return [export] if self.precision == "fp32" else [export, self.name]


def parse_candidate(spec: str, target: str) -> Candidate:
    """``layers3+ffn50:int8-dynamic``, ``heads8`` (default precision of the target) or ``base:fp16``."""
    text = spec.strip()
    chain, _, precision = text.partition(":")
    precisions = CPU_PRECISIONS if target == "cpu" else CUDA_PRECISIONS
    precision = precision.strip() or DEFAULT_PRECISION[target]
    if precision not in precisions:
        raise BertcError(f"candidate {spec!r}: precision {precision!r} is not one of {', '.join(precisions)} for "
                         f"--target {target}")
    steps: dict[str, Step] = {}
    for token in (t.strip() for t in chain.split("+")):
        if token in ("", "base") and chain.strip() in ("", "base"):
            continue
        step = parse_step(token, spec)
        if step.kind in steps:
            raise BertcError(f"candidate {spec!r} names two steps of one kind, {steps[step.kind].name} and "
                             f"{step.name}; give each kind once")
        steps[step.kind] = step
    return Candidate(tuple(steps[kind] for kind in STEP_ORDER if kind in steps), precision)


def step_problem(step: Step, before: PrunedShape, shape: Shape) -> str | None:
    """Why the model, shaped ``before`` by the steps ahead of ``step``, cannot take it (None: it can)."""
    if step.kind == "layers" and step.value >= shape.layers:
        return f"{step.name} keeps all or more than the model's {shape.layers} layers"
    if step.kind == "hidden" and not shape.width_surgery:
        return (f"{step.name}: hidden-width pruning works on BERT-layout models, not this {shape.family} one; use "
                "layers, heads and ffn steps")
    if step.kind == "hidden" and step.value >= shape.hidden:
        return f"{step.name} keeps all or more than the model's {shape.hidden} hidden channels"
    if step.kind == "hidden" and step.value % shape.head_dim:
        lower = max(shape.head_dim, step.value // shape.head_dim * shape.head_dim)
        return (f"{step.name} is not a multiple of the model's head size {shape.head_dim} (every head keeps its "
                f"width); use e.g. hidden{lower}")
    if step.kind == "heads" and step.value >= shape.heads:
        return f"{step.name} keeps all or more than the model's {shape.heads} heads"
    if step.kind == "headslast" and step.last >= before.layers:
        return (f"{step.name} names the last {step.last} of the {before.layers} layers it is given; use "
                f"heads{step.value} for every layer, or fewer last layers")
    if step.kind == "headslast" and step.value >= max(before.heads[-step.last:]):
        return f"{step.name} keeps all or more than the {max(before.heads[-step.last:])} heads of those layers"
    if step.kind == "ffn" and step.value >= 100:
        return f"{step.name} keeps the whole FFN"
    return None


def check_candidates(candidates: list[Candidate], shape: Shape) -> None:
    """Steps the model cannot take (more layers or heads than it has, a width that splits a head): one error
    listing all of them, each with its candidate."""
    problems = []
    for c in candidates:
        for i, step in enumerate(c.steps):
            if problem := step_problem(step, shape_after(shape, c.steps[:i]), shape):
                problems.append(f"{c.spec}: {problem}")
    if problems:
        raise BertcError("; ".join(problems) + "; pick smaller steps with --candidates")


def preset_candidates(preset: str, shape: Shape, target: str) -> list[Candidate]:
    """The candidate space of a preset for a model of ``shape``: MiniLM-L6 (6 layers, 12 heads, 384 wide) gets
    layers 4/3 and heads 8/6; the full preset also layers 2 (which its stronger teacher and augmented transfer set
    may keep within budget), hidden 256 and heads4last3 (heads8's cut, from the upper half of the layers only: the
    most redundant after fine-tuning); other models the same fractions. ``quick`` (about 15 minutes on 2 CPU
    cores) adds none: each is one more stage, and a narrower model is the riskiest for accuracy."""
    def keep(total: int, share: float, step: int = 1) -> int | None:
        value = max(1, round(total * share / step)) * step
        return value if value < total else None

    deep, shallow, thin = (keep(shape.layers, share) for share in (2 / 3, 1 / 2, 1 / 3))
    many, few = keep(shape.heads, 2 / 3), keep(shape.heads, 1 / 2)
    narrow, top = keep(shape.hidden, 2 / 3, shape.head_dim), shape.layers // 2
    upper = shape.heads - round(shape.layers * (shape.heads - many) / top) if many and top else 0
    layers = {name: f"layers{n}" if n else None for name, n in (("deep", deep), ("shallow", shallow), ("thin", thin))}
    heads = {"many": f"heads{many}" if many else None, "few": f"heads{few}" if few else None,
             "upper": f"heads{upper}last{top}" if 0 < upper < shape.heads and top < shape.layers else None}
    hidden = f"hidden{narrow}" if narrow and shape.width_surgery else None
    if preset == "quick":
        chains = [["base"], [layers["shallow"]], [heads["many"]], ["ffn50"]]
    else:
        chains = [["base"], [layers["shallow"]], [layers["deep"]], [layers["shallow"], "ffn50"],
                  [layers["deep"], "ffn50"], [layers["deep"], heads["many"]], [heads["many"]], [heads["few"]],
                  ["ffn50"], [heads["many"], "ffn50"], [hidden], [layers["shallow"], hidden], [heads["upper"]],
                  [layers["thin"]], [layers["thin"], "ffn50"]]
    quantized = DEFAULT_PRECISION[target]
    specs = [f"{'+'.join(chain)}:{quantized}" for chain in chains if all(chain)]
    if preset == "full" and target == "cpu":
        specs += ["base:int8-static"] + ([f"{layers['shallow']}:int8-static"] if layers["shallow"] else [])
    return list(dict.fromkeys(parse_candidate(spec, target) for spec in specs))


def candidates_for(given: list[Candidate], preset: str, shape: Shape, target: str) -> list[Candidate]:
    """The candidates given (else the preset's), with the standard recipe (the unpruned model quantized: every
    report compares with it) added; checked against the model's shape."""
    candidates = list(given) or preset_candidates(preset, shape, target)
    standard = Candidate((), DEFAULT_PRECISION[target])
    if standard not in candidates:
        candidates.insert(0, standard)
    check_candidates(candidates, shape)
    return candidates


# ---------------------------------------------------------------------------------------------- expectations

class PrunedShape(NamedTuple):
    """A model's shape after compression steps: what the cost estimate and the early-stop rule compare."""

    layers: int
    hidden: int
    heads: tuple[int, ...]  # per layer, first to last
    ffn: int


def shape_after(shape: Shape, steps: tuple[Step, ...]) -> PrunedShape:
    """(layers, hidden width, heads of each layer, FFN size) after the steps (in STEP_ORDER)."""
    layers, hidden, heads, ffn = shape.layers, shape.hidden, (shape.heads,) * shape.layers, shape.ffn
    for step in steps:
        if step.kind == "layers":
            layers = min(layers, step.value)
            heads = heads[:layers]
        elif step.kind == "hidden":
            hidden = min(hidden, step.value)
        elif step.kind == "heads":
            heads = tuple(min(h, step.value) for h in heads)
        elif step.kind == "headslast":
            kept = max(0, layers - step.last)
            heads = heads[:kept] + tuple(min(h, step.value) for h in heads[kept:])
        else:
            ffn = max(1, round(shape.ffn * step.value / 100))
    return PrunedShape(layers, hidden, heads, ffn)


def relative_cost(shape: Shape, steps: tuple[Step, ...], seq_len: int) -> float:
    """Expected forward cost after the steps over the fine-tuned model's (1.0 = no change): every layer's FLOPs,
    a per-layer overhead pruning does not shrink, and embeddings, pooler and classifier (shrinking with width)."""
    full = layer_flops(shape.hidden, shape.heads, shape.head_dim, shape.ffn, seq_len)
    after = shape_after(shape, steps)
    encoder = sum(layer_flops(after.hidden, heads, shape.head_dim, after.ffn, seq_len) for heads in after.heads)
    base = shape.layers * full * (1 + LAYER_OVERHEAD) + EMBEDDING_COST * full
    return (encoder + after.layers * LAYER_OVERHEAD * full + EMBEDDING_COST * full * after.hidden / shape.hidden) / base


def expected_speedup(candidate: Candidate, shape: Shape, seq_len: int, target: str) -> float:
    """Expected speedup over the fine-tuned model in PyTorch eager (a prior used only to order the search)."""
    return PRECISION_SPEEDUP[target][candidate.precision] / relative_cost(shape, candidate.steps, seq_len)


def at_least_as_compressed(a: PrunedShape, b: PrunedShape) -> bool:
    """Whether ``a`` is no larger than ``b`` in every dimension: layers, width, FFN, and heads, its layers matched
    with as many of b's (the most heads with the most heads)."""
    if a.layers > b.layers or a.hidden > b.hidden or a.ffn > b.ffn:
        return False
    return all(x <= y for x, y in zip(sorted(a.heads, reverse=True), sorted(b.heads, reverse=True)))


def order_candidates(candidates: list[Candidate], shape: Shape, seq_len: int, target: str) -> list[Candidate]:
    """The standard recipe first (cheap; every report compares with it), then fastest expected first, ties to the
    shorter chain; students keeping under half the layers last: likeliest to miss the budget, they must not spend
    the time a safer cut needs, and are built after one meets it (if expected faster) while time is left."""
    def key(c: Candidate):
        deep_cut = 2 * shape_after(shape, c.steps).layers < shape.layers
        return (not c.is_standard(target), deep_cut, -round(expected_speedup(c, shape, seq_len, target), 6),
                len(c.steps), c.name)

    return sorted(candidates, key=key)


# ---------------------------------------------------------------------------------------------- the search state

@dataclass
class Search:
    """Which candidates to build, given what was measured so far; optimize drives it and builds the artifacts."""

    shape: Shape
    seq_len: int
    target: str
    max_accuracy_drop: float  # points on the selection slice, against the fine-tuned model
    exhaustive: bool = False
    misses: dict[str, str] = field(default_factory=dict)  # PyTorch node -> its drop that missed the budget (text)
    missed_shapes: dict[str, PrunedShape] = field(default_factory=dict)  # node -> its shape
    met: dict[str, float] = field(default_factory=dict)  # candidate name -> its expected speedup, within budget

    def expected(self, candidate: Candidate) -> float:
        return expected_speedup(candidate, self.shape, self.seq_len, self.target)

    def within_budget(self, drop_points: float) -> bool:
        return drop_points <= self.max_accuracy_drop + 1e-9

    def record_node(self, node: str, steps: tuple[Step, ...], drop_points: float, shown: str | None = None) -> bool:
        """Record a built PyTorch node's drop (``shown``: as reasons state it); False when it misses the budget."""
        if self.within_budget(drop_points):
            return True
        self.misses[node] = shown or f"{drop_points:.2f}"
        self.missed_shapes[node] = shape_after(self.shape, steps)
        return False

    def record_final(self, candidate: Candidate, drop_points: float | None) -> None:
        """Record a built deployable; None or over budget counts as not met."""
        if drop_points is not None and self.within_budget(drop_points):
            self.met[candidate.name] = self.expected(candidate)

    def skip_reason(self, candidate: Candidate) -> str | None:
        """Why ``candidate`` is not worth building any more (None: build it)."""
        for node in candidate.chain():
            if node in self.misses:
                return f"early stop: step {node} already loses {self.misses[node]} points on the selection slice"
        mine = shape_after(self.shape, candidate.steps)
        for node, theirs in self.missed_shapes.items():
            if candidate.steps and at_least_as_compressed(mine, theirs):
                return (f"early stop: at least as compressed as {node}, which already loses "
                        f"{self.misses[node]} points on the selection slice")
        if self.met and not self.exhaustive:
            best_name = max(self.met, key=self.met.get)
            best = self.met[best_name]
            if self.expected(candidate) < best * (1 - SPEED_MARGIN):
                return (f"not needed: expected {self.expected(candidate):.1f}x, well below the {best:.1f}x expected "
                        f"of {best_name}, which already meets the budget (--exhaustive builds it anyway)")
        return None


# ---------------------------------------------------------------------------------------------- time estimates

@dataclass
class CostModel:
    """Seconds each stage is expected to take, from measured throughput of the fine-tuned model's shape.

    ``train_rate`` (training samples/s, forward + backward) and ``infer_rate`` (inference samples/s in PyTorch)
    are measured on the machine before the run; each finished stage then corrects the estimates of its group
    (training, conversion, measurement) by the ratio of its real to its estimated time."""

    train_rate: float
    infer_rate: float
    selection_samples: int
    corrections: dict[str, float] = field(default_factory=dict)

    GROUPS = {"finetune": "train", "distill": "train", "prune": "train", "export": "convert", "quantize": "convert",
              "finish": "measure"}
    EXPORT_FIXED, QUANTIZE_FIXED, FINISH_FIXED = 8.0, 4.0, 10.0

    def correct(self, kind: str, estimated: float, actual: float) -> None:
        if estimated > 0 and actual > 0:
            self.corrections[self.GROUPS[kind]] = min(4.0, max(0.25, actual / estimated))

    def _scaled(self, kind: str, seconds: float) -> float:
        return seconds * self.corrections.get(self.GROUPS[kind], 1.0)

    def evaluation(self, relative: float, samples: int | None = None) -> float:
        return (samples if samples is not None else self.selection_samples) * relative / self.infer_rate

    def finetune(self, samples: int, epochs: float) -> float:
        return self._scaled("finetune", samples * epochs / self.train_rate + 2 * self.evaluation(1.0))

    def distill(self, samples: int, student: float, teacher: float) -> float:
        """Student forward + backward, teacher forward (about a third of a training step)."""
        return self._scaled("distill", samples * (student + teacher / 3) / self.train_rate
                            + 2 * self.evaluation(student))

    def prune(self, importance_samples: int, recover_samples: int, parent: float, child: float) -> float:
        seconds = importance_samples * parent / self.train_rate
        seconds += recover_samples * (child + parent / 3) / self.train_rate
        return self._scaled("prune", seconds + 3 * self.evaluation(parent))

    def export(self, relative: float) -> float:
        return self._scaled("export", self.EXPORT_FIXED * max(relative, 0.1) + 1.5 * self.evaluation(relative))

    def quantize(self, relative: float, static: bool = False) -> float:
        seconds = self.QUANTIZE_FIXED * max(relative, 0.1) + self.evaluation(relative)
        if static:
            seconds += self.evaluation(relative, 200)
        return self._scaled("quantize", seconds)

    def finish(self, variants: list[float], calls: int, test_samples: int) -> float:
        """Bench (accuracy on the slice and ``calls`` timed batch-1 calls per variant), test accuracy, report.
        ``variants``: relative cost of each variant (model cost over precision speedup)."""
        seconds = self.FINISH_FIXED
        for relative in variants:
            seconds += 2 * self.evaluation(relative) + calls * 2.5 * relative / self.infer_rate
            seconds += self.evaluation(relative, test_samples)
        return self._scaled("finish", seconds)


def time_reason(need: float, wrap_up: float, left: float) -> str | None:
    """Why a candidate does not fit the time left (None: it fits): its own stages plus finishing the run."""
    if need + wrap_up <= left:
        return None
    return (f"time budget: needs about {need / 60:.1f} min plus {wrap_up / 60:.1f} min to bench and report, "
            f"{max(0.0, left) / 60:.1f} min left")
