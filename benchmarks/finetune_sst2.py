"""Fine-tuning quality and speed on real SST-2 with the embedded MiniLM-L6.

1. Accuracy: `bertc finetune` (default options, 1 epoch) on the first 4,000 rows of train.tsv for several seeds,
   and on 16,000 rows; accuracy on test.tsv (the GLUE dev set). Nothing is selected on test.tsv: one epoch with
   one evaluation at its end, so the reported model is simply the final one.
2. Throughput: bertc's training loop against a plain PyTorch loop (AdamW, linear warmup schedule, dynamic
   padding) on the same model, data and batch size, measured interleaved (plain, bertc, plain, bertc, ...).

    python benchmarks/finetune_sst2.py                # full run (about 20 minutes on 2 cores)
    python benchmarks/finetune_sst2.py --quick        # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bertc.data.config import DataConfig  # noqa: E402
from bertc.data.load import read_dataset  # noqa: E402
from bertc.environment import environment  # noqa: E402
from bertc.finetune.config import FinetuneConfig  # noqa: E402
from bertc.finetune.finetune import finetune  # noqa: E402
from bertc.modeling import load_pretrained_classifier  # noqa: E402
from bertc.training.config import TrainConfig  # noqa: E402

SST2 = REPO.parent / "shared" / "data" / "sst2"


def accuracy_runs(sizes: list[int], seeds: list[int], work: Path, keep: Path | None) -> list[dict]:
    runs = []
    for size in sizes:
        for seed in seeds if size == sizes[0] else seeds[:1]:
            out = work / f"minilm-{size}-seed{seed}"
            config = FinetuneConfig(
                data=DataConfig(train=str(SST2 / "train.tsv"), eval=str(SST2 / "test.tsv"), max_train_samples=size),
                train=TrainConfig(epochs=1, seed=seed, device="cpu"))
            started = time.perf_counter()
            finetune(None, config, out)
            wall = time.perf_counter() - started
            manifest = json.loads((out / "bertc.json").read_text())
            training = manifest["metrics"]["training"]
            runs.append({"train_samples": size, "seed": seed, "test_accuracy": manifest["metrics"]["eval"]["accuracy"],
                         "train_seconds": training["runtime_seconds"], "wall_seconds": wall,
                         "train_samples_per_second": training["train_samples_per_second"], "artifact": str(out)})
            print(json.dumps(runs[-1]), flush=True)
            if keep is not None and size == max(sizes) and not keep.exists():
                out.rename(keep)
                runs[-1]["artifact"] = str(keep)
    return runs


def plain_loop_speed(texts, labels, steps: int, batch_size: int) -> float:
    """Samples/s of a minimal PyTorch training loop: the baseline bertc must not be slower than."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(0)
    model, tokenizer = load_pretrained_classifier(None, ["0", "1"])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-5, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0)).tolist()
    started = time.perf_counter()
    for step in range(steps):
        index = order[step * batch_size:(step + 1) * batch_size]
        batch = tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=128,
                          return_tensors="pt")
        loss = model(**batch, labels=torch.tensor([labels[i] for i in index])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return steps * batch_size / (time.perf_counter() - started)


def bertc_speed(steps: int, batch_size: int, work: Path, group_by_length: bool, round_: int) -> float:
    out = work / f"speed-{round_}-{group_by_length}"
    config = FinetuneConfig(
        data=DataConfig(train=str(SST2 / "train.tsv"), eval=str(SST2 / "test.tsv"),
                        max_train_samples=steps * batch_size, max_eval_samples=32),
        train=TrainConfig(max_steps=steps, batch_size=batch_size, device="cpu", group_by_length=group_by_length,
                          save_steps=10**6))
    finetune(None, config, out)
    return json.loads((out / "bertc.json").read_text())["metrics"]["training"]["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--part", choices=["all", "accuracy", "speed"], default="all")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--sizes", default="4000,16000")
    parser.add_argument("--speed-steps", type=int, default=40)
    parser.add_argument("--speed-rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="move the largest fine-tuned model here (for later benchmarks)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "finetune_sst2.json")
    args = parser.parse_args()
    if not (SST2 / "train.tsv").is_file():
        sys.exit(f"skipped: SST-2 not found at {SST2}")
    sizes = [64, 128] if args.quick else [int(s) for s in args.sizes.split(",")]
    seeds = [1] if args.quick else [int(s) for s in args.seeds.split(",")]
    steps = 3 if args.quick else args.speed_steps
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory(dir=REPO.parent) as tmp:
        work = Path(tmp)
        runs = accuracy_runs(sizes, seeds, work, args.keep) if args.part != "speed" else []
        train = read_dataset(SST2 / "train.tsv")
        speed = {"plain_loop": [], "bertc_random_batches": [], "bertc_length_grouped": []}
        for round_ in range(args.speed_rounds if args.part != "accuracy" else 0):
            speed["plain_loop"].append(plain_loop_speed(train.texts, train.labels, steps, 32))
            speed["bertc_random_batches"].append(bertc_speed(steps, 32, work, False, round_))
            speed["bertc_length_grouped"].append(bertc_speed(steps, 32, work, True, round_))
            print(json.dumps({k: v[-1] for k, v in speed.items()}), flush=True)
    summary = {}
    for size in sizes if runs else []:
        accs = [r["test_accuracy"] for r in runs if r["train_samples"] == size]
        summary[f"{size}_mean_test_accuracy"] = statistics.mean(accs)
        summary[f"{size}_seeds"] = len(accs)
    medians = {k: statistics.median(v) for k, v in speed.items() if v}
    if medians:
        summary["speed_median_samples_per_second"] = medians
        summary["bertc_vs_plain_loop"] = medians["bertc_random_batches"] / medians["plain_loop"]
        summary["bertc_grouped_vs_plain_loop"] = medians["bertc_length_grouped"] / medians["plain_loop"]
    result = {"benchmark": "finetune_sst2", "runs": runs, "speed": speed, "summary": summary,
              "environment": environment(), "command": " ".join(sys.argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if runs:
        print("\nsize   seeds  mean test accuracy")
        for size in sizes:
            print(f"{size:<6} {summary[f'{size}_seeds']:<6} {100 * summary[f'{size}_mean_test_accuracy']:.2f}%")
    if medians:
        print("\ntraining throughput (median samples/s, batch 32, side by side):")
        for name, value in medians.items():
            print(f"  {name:<22} {value:6.1f}")
        print(f"  bertc / plain loop: {summary['bertc_vs_plain_loop']:.2f}x (random batches), "
              f"{summary['bertc_grouped_vs_plain_loop']:.2f}x (length-grouped, --group-by-length)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
