"""Write GLUE SST-2 from the Hub as local TSV files in the layout of ../shared/data/sst2 (needs a network).

train.tsv: the first 60,614 rows of GLUE's train split; validation.tsv: its last 6,735 rows (held out for model
selection); test.tsv: GLUE's validation split (the "SST-2 dev accuracy" papers report). Usage:

    python scripts/fetch_sst2.py runs/data/sst2
"""

import csv
import sys
from pathlib import Path

HELD_OUT = 6735


def write(rows, path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        writer.writerow(["sentence", "label"])
        for row in rows:
            writer.writerow([" ".join(row["sentence"].split()), row["label"]])


def main(out: str) -> None:
    import datasets
    from huggingface_hub.utils import logging as hub_logging

    datasets.logging.set_verbosity_error()  # the one-line error below says what went wrong, not each retry
    hub_logging.set_verbosity_error()
    try:
        glue = datasets.load_dataset("glue", "sst2")
    except (ConnectionError, OSError) as err:  # offline, or the Hub is unreachable
        print(f"fetch_sst2: could not download GLUE SST-2 from the Hub ({str(err).splitlines()[0]}); put the SST-2 "
              "TSVs (train.tsv, validation.tsv, test.tsv) in ../shared/data/sst2, or run with a network",
              file=sys.stderr)
        sys.exit(2)
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    train = list(glue["train"])
    write(train[:-HELD_OUT], directory / "train.tsv")
    write(train[-HELD_OUT:], directory / "validation.tsv")
    write(list(glue["validation"]), directory / "test.tsv")
    print(f"wrote {directory}/train.tsv, validation.tsv, test.tsv")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/data/sst2")
