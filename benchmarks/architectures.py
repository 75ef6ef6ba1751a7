"""Encoder families side by side: PyTorch eager, ONNX Runtime fp32 and ONNX Runtime dynamic int8 at batch 1.

For each family bertc supports this builds a random-weight classifier of the family's base size (the speed of a
model does not depend on its weights) with the embedded MiniLM tokenizer (vocabulary 30522):

    bert        BERT-base: 12 layers x 768, 12 heads, FFN 3072
    distilbert  DistilBERT-base: 6 layers x 768, 12 heads, FFN 3072
    deberta-v3  DeBERTa-v3-base: 12 layers x 768, 12 heads, FFN 3072, relative attention (256 buckets)
    modernbert  ModernBERT-base: 22 layers x 768, 12 heads, GeGLU FFN 1152, rotary, global attention every 3rd
                layer and local (128) in between

and, with bertc's library calls (the code behind `bertc export`, `bertc quantize` and `bertc bench`):

    pytorch   the PyTorch artifact (eager attention)
    ort-fp32  the verified ONNX export (--optimize all: fused Attention where ONNX Runtime can fuse the family)
    ort-int8  ONNX Runtime dynamic int8 of ort-fp32

The three variants of a family are timed in one `bertc bench` call at batch 1 and a fixed length of 32 tokens
(every token real), interleaved round by round; speedups are over PyTorch eager, the median of per-round
ratios with their range. The JSON records each graph's fused operators (which attention fused), the export's
verification, the CPU model and its int8 flags, and the package versions.

    python benchmarks/architectures.py                                  # base sizes (minutes per family)
    python benchmarks/architectures.py --quick --out /tmp/arch.json     # smoke test: tiny models, few runs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bertc.artifact import read_manifest  # noqa: E402
from bertc.bench.bench import bench  # noqa: E402
from bertc.bench.config import BenchConfig  # noqa: E402
from bertc.environment import environment  # noqa: E402
from bertc.export import graph  # noqa: E402
from bertc.export.config import ExportConfig, QuantizeConfig  # noqa: E402
from bertc.export.onnx import export, labels_task  # noqa: E402
from bertc.export.quantize import quantize  # noqa: E402
from bertc.families import align_tokenizer_  # noqa: E402
from bertc.modeling import embedded_model_path  # noqa: E402
from bertc.torch_artifact import save_artifact  # noqa: E402

FAMILIES = ("bert", "distilbert", "deberta-v3", "modernbert")
VARIANTS = {"pytorch": "PyTorch eager", "ort-fp32": "ORT fp32", "ort-int8": "ORT int8 dynamic"}
LABELS = ("0", "1")
WORDS = ("the film was a quiet and moving portrait of a family that never quite finds the words it needs yet the "
         "acting is superb and the story stays with you long after the credits roll on a cold night").split()


def family_config(name: str, quick: bool, tokenizer):
    """The family's base-size config (``quick``: 2 layers of 64, 4 heads)."""
    from transformers import BertConfig, DebertaV2Config, DistilBertConfig, ModernBertConfig

    hidden, layers, heads, ffn = (64, 2, 4, 128) if quick else (768, 12, 12, 3072)
    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                  id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)})
    if name == "bert":
        return BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=ffn, max_position_embeddings=512, **common)
    if name == "distilbert":
        return DistilBertConfig(dim=hidden, n_layers=layers if quick else 6, n_heads=heads, hidden_dim=ffn,
                                max_position_embeddings=512, **common)
    if name == "deberta-v3":
        return DebertaV2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=ffn, max_position_embeddings=512, relative_attention=True,
                               position_buckets=256, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                               share_att_key=True, position_biased_input=False, type_vocab_size=0,
                               norm_rel_ebd="layer_norm", **common)
    if name == "modernbert":
        return ModernBertConfig(hidden_size=hidden, num_hidden_layers=layers if quick else 22,
                                num_attention_heads=heads, intermediate_size=96 if quick else 1152,
                                global_attn_every_n_layers=3, local_attention=128, max_position_embeddings=8192,
                                cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                                bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, **common)
    raise ValueError(name)


def write_data(path: Path, rows: int) -> Path:
    """Sentences of 30-40 words (at least 32 tokens) with arbitrary labels: what is timed is their first 32 tokens."""
    rng = random.Random(0)
    lines = ["sentence\tlabel"]
    for _ in range(rows):
        lines.append(f"{' '.join(rng.choices(WORDS, k=rng.randint(30, 40)))}\t{rng.choice(LABELS)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def build(name: str, work: Path, data: Path, args) -> dict[str, Path]:
    """The PyTorch artifact of a random-weight classifier, its verified ONNX export and the export's int8."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_path()))
    config = family_config(name, args.quick, tokenizer)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager").eval()
    align_tokenizer_(tokenizer, model)
    task = {**labels_task(config.id2label), "text_column": "sentence", "label_column": "label",
            "eval_data": str(data)}
    pytorch = save_artifact(work / "pytorch", model, tokenizer, stage="finetune", task=task,
                            config={"benchmark": "architectures", "weights": "random", "family": name},
                            overwrite=True)
    onnx = export(pytorch, ExportConfig(data=str(data), verify_samples=args.samples), work / "ort-fp32",
                  overwrite=True)
    int8 = quantize(onnx, QuantizeConfig(eval_data=str(data), eval_samples=args.samples), work / "ort-int8",
                    overwrite=True)
    return {"pytorch": pytorch, "ort-fp32": onnx, "ort-int8": int8}


def describe(models: dict[str, Path]) -> dict:
    """Shape of the model, and per graph its fused operators and quantized ones."""
    onnx = read_manifest(models["ort-fp32"])
    model = onnx["model"]
    graphs = {}
    for key in ("ort-fp32", "ort-int8"):
        proto = graph.load_graph(models[key] / "model.onnx")
        ops = {op: n for op, n in graph.op_counts(proto).items() if n}
        for op in ("MatMulInteger", "DynamicQuantizeLinear", "QAttention"):
            count = sum(node.op_type == op for node in proto.graph.node)
            if count:
                ops[op] = count
        graphs[key] = ops
    return {"model_type": model["model_type"], "num_layers": model["num_layers"], "hidden_size": model["hidden_size"],
            "heads_per_layer": model["heads_per_layer"][0], "ffn": model["ffn_per_layer"][0],
            "num_parameters": model["num_parameters"], "fusion_check": model["fusion_check"], "ops": graphs,
            "export_verification": {k: onnx["metrics"]["verification"][k] for k in ("samples", "max_abs_logit_diff")},
            "int8_vs_fp32": {k: read_manifest(models["ort-int8"])["metrics"]["verification"][k]
                             for k in ("label_agreement", "max_abs_logit_diff")}}


def timing(models: dict[str, Path], data: Path, out: Path, args) -> dict:
    """Batch 1, 32 tokens: the family's three variants interleaved in one `bertc bench` call."""
    config = BenchConfig(data=str(data), batch_sizes=(1,), seq_lens=(32,), runs=args.runs, rounds=args.rounds,
                         warmup=args.warmup, threads=args.threads, accuracy=False, memory=False,
                         baseline=str(models["pytorch"]))
    results = bench(list(models.values()), config, out, overwrite=True)
    by_path = {Path(v["path"]).resolve(): v for v in results["variants"]}
    keep = ("p50_ms", "p90_ms", "speedup", "speedup_min", "speedup_max", "round_p50_ms")
    rows = {key: {k: by_path[Path(path).resolve()]["latency"][0].get(k) for k in keep}
            for key, path in models.items()}
    env = results["environment"]
    return {"rows": rows, "threads": env.get("threads"), "other_load": env.get("other_load")}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--work", type=Path, help="artifacts go here (default ../runs/architectures; --quick: a "
                                                  "temp dir)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "architectures.json")
    parser.add_argument("--samples", type=int, default=64, help="rows the export and int8 are verified on")
    parser.add_argument("--runs", type=int, default=300, help="timed calls per variant")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds the calls are split into")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, help="threads for every variant (default: all usable cores)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny models (2 layers of 64), few runs")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.runs, args.rounds, args.warmup = 16, 12, 3, 2
        if args.out == parser.get_default("out"):
            args.out = Path(tempfile.gettempdir()) / "architectures_quick.json"
    return args


def times(row: dict, baseline: bool) -> str:
    if baseline or row.get("speedup") is None:
        return f"{row['p50_ms']:.2f} ms"
    return f"{row['p50_ms']:.2f} ms ({row['speedup']:.2f}x [{row['speedup_min']:.2f}, {row['speedup_max']:.2f}])"


def print_report(result: dict) -> None:
    env = result["environment"]
    print(f"\n{env['cpu']}; flags {' '.join(env['cpu_flags']) or 'none'}; batch 1, 32 tokens; speedups over "
          "PyTorch eager (median of per-round ratios [range])")
    header = ["family", "shape", *VARIANTS.values(), "fused in ORT fp32"]
    rows = []
    for name, family in result["families"].items():
        shape = (f"{family['num_layers']}x{family['hidden_size']}, {family['heads_per_layer']} heads, "
                 f"FFN {family['ffn']}")
        fused = ", ".join(f"{op} {n}" for op, n in family["ops"]["ort-fp32"].items()) or "-"
        latency = [times(family["latency"]["rows"][key], key == "pytorch") for key in VARIANTS]
        rows.append([name, shape, *latency, fused])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    print(f"\nwrote {result['out']}")


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    families = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or (Path(scratch) if args.quick else REPO.parent / "runs" / "architectures")
        work.mkdir(parents=True, exist_ok=True)
        data = write_data(work / "sentences.tsv", max(args.samples, 64))
        for name in args.families:
            print(f"{name}: building and verifying", flush=True)
            models = build(name, work / name, data, args)
            families[name] = {**describe(models), "artifacts": {k: str(p) for k, p in models.items()},
                              "latency": timing(models, data, work / name / "bench.json", args)}
    result = {"benchmark": "architectures", "quick": args.quick, "command": " ".join(sys.argv),
              "setting": {"batch_size": 1, "seq_len": 32, "runs": args.runs, "rounds": args.rounds,
                          "warmup": args.warmup, "baseline": "pytorch"},
              "families": families, "seconds": round(time.perf_counter() - started),
              "environment": environment(args.threads), "out": str(args.out)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result)


if __name__ == "__main__":
    main()
