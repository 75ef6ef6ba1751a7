"""Every command × every class of bad input: exit code 2, one line on stderr, nothing changed, nothing left behind.

The table has 262 rows in 128 cells: the 12 commands (finetune, import, prune, distill, export, quantize, evaluate,
predict, bench, report, optimize, run) × the 11 classes of bad input (missing, unreadable, empty, corrupted, wrong
columns, non-finite numbers, out-of-range options, unknown choices, unwritable output, existing output,
incompatible artifacts), less the four cells that cannot apply (report and import have no columns and no
choices). Each row runs in-process on
tiny fixtures gathered in one directory (whose name has spaces), and checks that the command fails before any
training, with one line naming the problem, and that every file in that directory is byte-identical afterwards and
nothing new appeared there (staging and work directories, temporary files: ``tempfile`` is pointed into it). As root
no permission bit stops a read or a write, so "unreadable" and "unwritable" deny the path by patching ``open``,
``os.open``, ``os.mkdir`` and ``os.replace`` (``tests.bad_input_world``, which also builds the fixture directory).

A few real subprocess runs at the end check the exit codes and the traceback path itself.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertc.cli import app
from tests.bad_input_world import build_world, deny, remove_new, snapshot

F = "finetune --model {W}/model --train {W}/data --out {W}/out --max-steps 1 --device cpu --max-length 16"
P = "prune {W}/pt --out {W}/out --heads 2 --importance magnitude"
D = "distill --teacher {W}/pt --out {W}/out --student-layers 1 --max-steps 1 --max-length 16"
E = "export {W}/pt --out {W}/out --verify-samples 8"
Q = "quantize {W}/onnx --out {W}/out --eval-samples 8"
V = "evaluate {W}/pt --data {W}/data"
R = "predict {W}/pt"
B = "bench {W}/pt --data {W}/data --out {W}/b.json --batch-sizes 1 --runs 2 --warmup 1 --rounds 1 --no-memory"
T = "report {W}/results.json --out {W}/rep"
OPT = "optimize --train {W}/data --from {W}/pt --out {W}/out --preset quick"
U = "run {W}/recipe.toml --out {W}/out"
NO_READ = "data/train.tsv"  # what the data rows deny reading (a directory of splits reads its train file)
EVAL = "data/test.tsv"  # the file evaluate, predict and export are pointed at when reading it is denied

# command, class, arguments ({W}: the fixture directory; {W}/ro is made unwritable), the path made unreadable,
# a pattern the one line must match.
ROWS = [
    ("finetune", "missing", F + " --train {W}/missing.tsv", None, "does not exist"),
    ("finetune", "missing", F + " --model {W}/no-model", None, "does not exist"),
    ("finetune", "unreadable", F, NO_READ, "Permission denied"),
    ("finetune", "empty", F + " --train {W}/empty.tsv", None, "could not read"),
    ("finetune", "empty", F + " --train {W}/header.tsv", None, "no usable rows"),
    ("finetune", "corrupted", F + " --train {W}/garbage.tsv", None, "could not read"),
    ("finetune", "corrupted", F + " --train {W}/ragged.tsv", None, "could not read"),
    ("finetune", "corrupted", F + " --model {W}/trunc-model", None, "damaged"),
    ("finetune", "columns", F + " --text-column body", None, "column 'body' not found"),
    ("finetune", "columns", F + " --label-column gold", None, "column 'gold' not found"),
    ("finetune", "nonfinite", F + " --lr nan", None, "--lr must be a finite number"),
    ("finetune", "nonfinite", F + " --warmup inf", None, "--warmup must be a finite number"),
    ("finetune", "nonfinite", F + " --train {W}/nan.tsv --eval {W}/data/validation.tsv", None, "no usable rows"),
    ("finetune", "range", F + " --max-steps 0", None, "--max-steps must be at least 1"),
    ("finetune", "range", F + " --batch-size 0", None, "--batch-size must be positive"),
    ("finetune", "range", F + " --max-length 100000", None, "--max-length"),
    ("finetune", "range", F + " --search lr=2e-4:2e-5", None, "--search lr=2e-4:2e-5: the range is empty"),
    ("finetune", "range", F + " --search lr=2e-5:2e-4 --trials 0", None, "--trials must be at least 1"),
    ("finetune", "choice", F + " --optimizer lion", None, "--optimizer 'lion'"),
    ("finetune", "choice", F + " --schedule foo", None, "--schedule 'foo'"),
    ("finetune", "choice", F + " --device tpu", None, "--device 'tpu'"),
    ("finetune", "choice", F + " --search dropout=0.1:0.3", None, "unknown parameter 'dropout'"),
    ("finetune", "unwritable", F + " --out {W}/afile/out", None, "which is a file"),
    ("finetune", "unwritable", F + " --out {W}/ro/out", None, "cannot write"),
    ("finetune", "existing", F + " --out {W}/existing", None, "already exists"),
    ("finetune", "incompatible", F + " --model {W}/onnx", None, "not a PyTorch one"),
    ("finetune", "incompatible", F + " --model {W}/pt --train {W}/otherlabels.tsv", None, "trained on labels"),
    ("prune", "missing", "prune {W}/missing --out {W}/out --heads 2", None, "does not exist"),
    ("prune", "missing", P + " --data {W}/missing.tsv --importance gradient", None, "does not exist"),
    ("prune", "unreadable", P, "pt/bertc.json", "Permission denied"),
    ("prune", "unreadable", P + " --data {W}/data --importance gradient", NO_READ, "Permission denied"),
    ("prune", "empty", "prune {W}/emptydir --out {W}/out --heads 2", None, "not a bertc artifact"),
    ("prune", "empty", P + " --data {W}/empty.tsv --importance gradient", None, "could not read"),
    ("prune", "empty", "prune {W}/pt --out {W}/out --vocab {W}/header.tsv", None, "has no texts"),
    ("prune", "empty", "prune {W}/pt --out {W}/out --vocab {W}/empty.tsv", None, "has no texts"),
    ("prune", "corrupted", "prune {W}/garbage-art --out {W}/out --heads 2", None, "not valid JSON"),
    ("prune", "corrupted", "prune {W}/trunc-st --out {W}/out --heads 2", None, "damaged"),
    ("prune", "columns", P + " --data {W}/data --text-column body --importance gradient", None, "'body' not found"),
    ("prune", "nonfinite", P + " --ffn nan", None, "--ffn must be a finite number"),
    ("prune", "nonfinite", P + " --recover-steps 1 --lr nan", None, "--lr must be a finite number"),
    ("prune", "range", P + " --heads 100", None, "more than the model's 4 heads"),
    ("prune", "range", "prune {W}/pt --out {W}/out --heads-per-layer 4,4,4", None, "but the model has 2 layers"),
    ("prune", "range", "prune {W}/pt --out {W}/out --heads -1:9", None, "keeps 9 heads in layer 1, which has 4"),
    ("prune", "range", "prune {W}/pt --out {W}/out --heads-per-layer 4,-1", None, "has a negative size"),
    ("prune", "range", "prune {W}/pt --out {W}/out --hidden 12", None, "not a multiple of the head size"),
    ("prune", "range", "prune {W}/pt --out {W}/out --ffn 2.0", None, "--ffn must be a fraction"),
    ("prune", "choice", P + " --importance foo", None, "--importance 'foo'"),
    ("prune", "choice", "prune {W}/pt --out {W}/out --layers 1 --layer-strategy foo", None, "--layer-strategy"),
    ("prune", "unwritable", P + " --out {W}/afile/out", None, "which is a file"),
    ("prune", "unwritable", P + " --out {W}/ro/out", None, "cannot write"),
    ("prune", "existing", P + " --out {W}/existing", None, "already exists"),
    ("prune", "existing", P + " --out {W}/pt --overwrite", None, "is an input of this stage"),
    ("prune", "incompatible", "prune {W}/onnx --out {W}/out --heads 2", None, "not a PyTorch one"),
    ("prune", "incompatible", P + " --data {W}/otherlabels.tsv --importance gradient", None, "does not know"),
    ("distill", "missing", D.replace("{W}/pt", "{W}/missing"), None, "does not exist"),
    ("distill", "missing", D + " --train {W}/missing.tsv", None, "does not exist"),
    ("distill", "unreadable", D, "pt/bertc.json", "Permission denied"),
    ("distill", "unreadable", D + " --train {W}/data", NO_READ, "Permission denied"),
    ("distill", "empty", D.replace("{W}/pt", "{W}/emptydir"), None, "not a bertc artifact"),
    ("distill", "empty", D + " --train {W}/header.tsv", None, "no usable rows"),
    ("distill", "empty", D + " --unlabeled {W}/empty.tsv", None, "has no texts"),
    ("distill", "range", D + " --augment-copies -1", None, "--augment-copies must be >= 0"),
    ("distill", "corrupted", D.replace("{W}/pt", "{W}/garbage-art"), None, "not valid JSON"),
    ("distill", "corrupted", D.replace("{W}/pt", "{W}/trunc-st"), None, "damaged"),
    ("distill", "corrupted", D + " --train {W}/garbage.tsv", None, "could not read"),
    ("distill", "columns", D + " --train {W}/data --label-column gold", None, "column 'gold' not found"),
    ("distill", "nonfinite", D + " --temperature nan", None, "--temperature must be a finite number"),
    ("distill", "nonfinite", D + " --lr inf", None, "--lr must be a finite number"),
    ("distill", "range", D.replace("--student-layers 1", "--student-layers 5"), None, "more than the teacher's"),
    ("distill", "range", D + " --batch-size 0", None, "--batch-size must be positive"),
    ("distill", "choice", D + " --optimizer lion", None, "--optimizer 'lion'"),
    ("distill", "choice", D + " --precision fp8", None, "--precision 'fp8'"),
    ("distill", "unwritable", D + " --out {W}/afile/out", None, "which is a file"),
    ("distill", "unwritable", D + " --out {W}/ro/out", None, "cannot write"),
    ("distill", "existing", D + " --out {W}/existing", None, "already exists"),
    ("distill", "incompatible", D.replace("{W}/pt", "{W}/onnx"), None, "not a PyTorch one"),
    ("distill", "incompatible", D + " --train {W}/otherlabels.tsv", None, "does not know"),
    ("distill", "incompatible", D.replace("--student-layers 1", "--student {W}/pt-other"), None,
     "the teacher predicts labels"),
    ("export", "missing", "export {W}/missing --out {W}/out", None, "not a bertc artifact"),
    ("export", "missing", E + " --data {W}/missing.tsv", None, "does not exist"),
    ("export", "unreadable", E, "pt/bertc.json", "Permission denied"),
    ("export", "unreadable", E + " --data {W}/" + EVAL, EVAL, "Permission denied"),
    ("export", "empty", "export {W}/emptydir --out {W}/out", None, "not a bertc artifact"),
    ("export", "empty", E + " --data {W}/empty.tsv", None, "could not read"),
    ("export", "corrupted", "export {W}/garbage-art --out {W}/out", None, "not valid JSON"),
    ("export", "corrupted", "export {W}/trunc-st --out {W}/out --verify-samples 8", None, "damaged"),
    ("export", "corrupted", E + " --data {W}/ragged.tsv", None, "could not read"),
    ("export", "columns", E + " --data {W}/wrongcols.tsv", None, "column 'sentence' not found"),
    ("export", "nonfinite", E + " --atol nan", None, "--atol must be a finite number"),
    ("export", "nonfinite", E + " --min-agreement inf", None, "--min-agreement"),
    ("export", "range", E + " --opset 3", None, "--opset 3"),
    ("export", "range", E + " --verify-samples 0", None, "--verify-samples"),
    ("export", "choice", E + " --optimize foo", None, "--optimize 'foo'"),
    ("export", "choice", E + " --device tpu", None, "--device 'tpu'"),
    ("export", "unwritable", E + " --out {W}/afile/out", None, "which is a file"),
    ("export", "unwritable", E + " --out {W}/ro/out", None, "cannot write"),
    ("export", "existing", E + " --out {W}/existing", None, "already exists"),
    ("export", "incompatible", "export {W}/onnx --out {W}/out", None, "onnx model"),
    ("export", "incompatible", E + " --data {W}/otherlabels.tsv", None, "does not know"),
    ("quantize", "missing", "quantize {W}/missing --out {W}/out", None, "does not exist"),
    ("quantize", "missing", Q + " --eval {W}/missing.tsv", None, "does not exist"),
    ("quantize", "unreadable", Q, "onnx/bertc.json", "Permission denied"),
    ("quantize", "unreadable", Q + " --eval {W}/" + EVAL, EVAL, "Permission denied"),
    ("quantize", "empty", "quantize {W}/emptydir --out {W}/out", None, "not a bertc artifact"),
    ("quantize", "empty", Q.replace("{W}/onnx", "{W}/empty-onnx"), None, "damaged"),
    ("quantize", "empty", Q + " --eval {W}/empty.tsv", None, "could not read"),
    ("quantize", "corrupted", "quantize {W}/garbage-art --out {W}/out", None, "not valid JSON"),
    ("quantize", "corrupted", Q.replace("{W}/onnx", "{W}/trunc-onnx"), None, "damaged"),
    ("quantize", "corrupted", Q + " --eval {W}/garbage.tsv", None, "could not read"),
    ("quantize", "columns", Q + " --eval {W}/wrongcols.tsv", None, "column 'sentence' not found"),
    ("quantize", "nonfinite", Q + " --max-accuracy-drop nan", None, "must be a finite number"),
    ("quantize", "nonfinite", Q + " --method static --percentile inf", None, "--percentile"),
    ("quantize", "range", Q + " --max-float-layers -1", None, "--max-float-layers must be at least 1"),
    ("quantize", "range", Q + " --eval-samples 0", None, "--eval-samples"),
    ("quantize", "choice", Q + " --method foo", None, "--method 'foo'"),
    ("quantize", "choice", Q + " --method static --calibration foo", None, "--calibration 'foo'"),
    ("quantize", "unwritable", Q + " --out {W}/afile/out", None, "which is a file"),
    ("quantize", "unwritable", Q + " --out {W}/ro/out", None, "cannot write"),
    ("quantize", "existing", Q + " --out {W}/existing", None, "already exists"),
    ("quantize", "incompatible", Q + " --method torch-dynamic", None, "quantizes a PyTorch artifact"),
    ("quantize", "incompatible", Q + " --eval {W}/otherlabels.tsv", None, "does not know"),
    ("evaluate", "missing", "evaluate {W}/missing --data {W}/data", None, "does not exist"),
    ("evaluate", "missing", V + "/missing.tsv", None, "does not exist"),
    ("evaluate", "missing", "evaluate {W}/pt", None, "Missing option '--data'"),
    ("evaluate", "unreadable", V, "pt/bertc.json", "Permission denied"),
    ("evaluate", "unreadable", V, EVAL, "Permission denied"),
    ("evaluate", "empty", "evaluate {W}/emptydir --data {W}/data", None, "not a bertc artifact"),
    ("evaluate", "empty", V + "/../empty.tsv", None, "could not read"),
    ("evaluate", "empty", V + "/../header.tsv", None, "no usable rows"),
    ("evaluate", "corrupted", "evaluate {W}/garbage-art --data {W}/data", None, "not valid JSON"),
    ("evaluate", "corrupted", "evaluate {W}/trunc-onnx --data {W}/data", None, "could not load|damaged"),
    ("evaluate", "corrupted", "evaluate {W}/trunc-st --data {W}/data", None, "damaged"),
    ("evaluate", "corrupted", V + "/../garbage.tsv", None, "could not read"),
    ("evaluate", "columns", V + "/../wrongcols.tsv", None, "column 'sentence' not found"),
    ("evaluate", "columns", V + " --label-column gold", None, "column 'gold' not found"),
    ("evaluate", "nonfinite", V + "/../nan.tsv", None, "no usable rows"),
    ("evaluate", "nonfinite", V + " --max-samples nan", None, "--max-samples"),
    ("evaluate", "range", V + " --batch-size 0", None, "--batch-size must be a whole number of at least 1"),
    ("evaluate", "range", V + " --max-samples 0", None, "--max-samples must be a whole number of at least 1"),
    ("evaluate", "choice", V + " --split foo", None, "--split 'foo'"),
    ("evaluate", "choice", V + " --device tpu", None, "--device 'tpu'"),
    ("evaluate", "unwritable", V + " --json {W}/afile/r.json", None, "which is a file"),
    ("evaluate", "unwritable", V + " --json {W}/ro/r.json", None, "cannot write"),
    ("evaluate", "existing", V + " --json {W}/existing", None, "is a directory"),
    ("evaluate", "incompatible", V + "/../otherlabels.tsv", None, "does not know"),
    ("predict", "missing", "predict {W}/missing hello", None, "does not exist"),
    ("predict", "missing", R + " --data {W}/missing.tsv", None, "does not exist"),
    ("predict", "unreadable", R + " hello", "pt/bertc.json", "Permission denied"),
    ("predict", "unreadable", R + " --data {W}/" + EVAL, EVAL, "Permission denied"),
    ("predict", "empty", R, None, "no texts to predict"),
    ("predict", "empty", R + " --data {W}/empty.tsv", None, "could not read"),
    ("predict", "empty", R + " --data {W}/header.tsv", None, "no texts to predict"),
    ("predict", "corrupted", "predict {W}/garbage-art hello", None, "not valid JSON"),
    ("predict", "corrupted", "predict {W}/trunc-onnx hello", None, "could not load|damaged"),
    ("predict", "corrupted", "predict {W}/trunc-st hello", None, "damaged"),
    ("predict", "corrupted", R + " --data {W}/garbage.tsv", None, "could not read"),
    ("predict", "columns", R + " --data {W}/wrongcols.tsv", None, "could not find a text column"),
    ("predict", "columns", R + " --data {W}/data --text-pair-column nope", None, "column 'nope' not found"),
    ("predict", "nonfinite", R + " hello --batch-size nan", None, "--batch-size"),
    ("predict", "range", R + " hello --batch-size 0", None, "--batch-size must be a whole number of at least 1"),
    ("predict", "range", R + " hello --batch-size -3", None, "--batch-size must be a whole number of at least 1"),
    ("predict", "choice", R + " hello --device tpu", None, "--device 'tpu'"),
    ("predict", "unwritable", R + " hello --json {W}/afile/p.json", None, "which is a file"),
    ("predict", "unwritable", R + " hello --json {W}/ro/p.json", None, "cannot write"),
    ("predict", "existing", R + " hello --json {W}/existing", None, "is a directory"),
    ("predict", "incompatible", R + " one two --pair x", None, "2 texts but 1 second texts"),
    ("predict", "incompatible", R + " hello --data {W}/data", None, "not both"),
    ("bench", "missing", B.replace("{W}/pt", "{W}/missing"), None, "does not exist"),
    ("bench", "missing", B.replace("{W}/data", "{W}/missing.tsv"), None, "does not exist"),
    ("bench", "unreadable", B, "pt/bertc.json", "Permission denied"),
    ("bench", "unreadable", B, EVAL, "Permission denied"),
    ("bench", "empty", B.replace("{W}/pt", "{W}/emptydir"), None, "not a bertc artifact"),
    ("bench", "empty", B.replace("{W}/data", "{W}/empty.tsv"), None, "could not read"),
    ("bench", "corrupted", B.replace("{W}/pt", "{W}/garbage-art"), None, "not valid JSON"),
    ("bench", "corrupted", B.replace("{W}/pt", "{W}/trunc-onnx"), None, "could not load|damaged"),
    ("bench", "corrupted", B.replace("{W}/pt", "{W}/trunc-st"), None, "damaged"),
    ("bench", "columns", B.replace("{W}/data", "{W}/wrongcols.tsv"), None, "column 'sentence' not found"),
    ("bench", "nonfinite", B + " --duration nan", None, "--duration must be a finite number"),
    ("bench", "range", B.replace("--runs 2", "--runs 0"), None, "--runs must be at least 1"),
    ("bench", "range", B + " --threads 0", None, "--threads must be at least 1"),
    ("bench", "choice", B + " --device tpu", None, "--device 'tpu'"),
    ("bench", "choice", B + " --split foo", None, "--split 'foo'"),
    ("bench", "unwritable", B.replace("{W}/b.json", "{W}/afile/b.json"), None, "which is a file"),
    ("bench", "unwritable", B.replace("{W}/b.json", "{W}/ro/b.json"), None, "cannot write"),
    ("bench", "existing", B.replace("{W}/b.json", "{W}/results.json"), None, "already exists"),
    ("bench", "existing", B.replace("{W}/b.json", "{W}/existing"), None, "is a directory"),
    ("bench", "incompatible", B.replace("{W}/data", "{W}/otherlabels.tsv"), None, "does not know"),
    ("bench", "incompatible", B.replace("{W}/pt", "{W}/pt {W}/pt-other"), None, "predicts labels"),
    ("report", "missing", "report {W}/missing.json --out {W}/rep", None, "does not exist"),
    ("report", "unreadable", T, "results.json", "Permission denied"),
    ("report", "empty", "report {W}/empty.json --out {W}/rep", None, "not valid JSON"),
    ("report", "empty", "report {W}/emptyobj.json --out {W}/rep", None, "not a bertc bench results"),
    ("report", "corrupted", "report {W}/trunc.json --out {W}/rep", None, "not valid JSON"),
    ("report", "corrupted", "report {W}/no-variants.json --out {W}/rep", None, "variants"),
    ("report", "nonfinite", T + " --max-accuracy-drop nan", None, "--max-accuracy-drop must be a finite number"),
    ("report", "range", T + " --max-accuracy-drop -1", None, "--max-accuracy-drop must be at least 0"),
    ("report", "unwritable", T.replace("{W}/rep", "{W}/afile/rep"), None, "which is a file"),
    ("report", "unwritable", T.replace("{W}/rep", "{W}/ro/rep"), None, "cannot write"),
    ("report", "existing", T.replace("{W}/rep", "{W}/existing"), None, "already exists"),
    ("report", "incompatible", "report {W}/pt/bertc.json --out {W}/rep", None, "not a bertc bench results"),
    ("optimize", "missing", OPT.replace("{W}/data", "{W}/missing.tsv"), None, "is not a data file"),
    ("optimize", "missing", OPT.replace("{W}/pt", "{W}/missing"), None, "does not exist"),
    ("optimize", "unreadable", OPT, NO_READ, "Permission denied"),
    ("optimize", "unreadable", OPT, "pt/bertc.json", "Permission denied"),
    ("optimize", "empty", OPT.replace("{W}/data", "{W}/empty.tsv --eval {W}/data/validation.tsv"), None,
     "could not read"),
    ("optimize", "empty", OPT.replace("{W}/pt", "{W}/emptydir"), None, "not a bertc artifact"),
    ("optimize", "corrupted", OPT.replace("{W}/data", "{W}/garbage.tsv --eval {W}/data/validation.tsv"), None,
     "could not read"),
    ("optimize", "corrupted", OPT.replace("{W}/pt", "{W}/garbage-art"), None, "not valid JSON"),
    ("optimize", "corrupted", OPT.replace("{W}/pt", "{W}/trunc-st"), None, "damaged"),
    ("optimize", "columns", OPT + " --text-column body", None, "column 'body' not found"),
    ("optimize", "nonfinite", OPT + " --max-accuracy-drop nan", None, "--max-accuracy-drop must be a finite"),
    ("optimize", "nonfinite", OPT + " --lr inf", None, "--lr must be a finite number"),
    ("optimize", "range", OPT + " --selection-samples 0", None, "--selection-samples must be"),
    ("optimize", "range", OPT + " --max-accuracy-drop -1", None, "--max-accuracy-drop must be at least 0"),
    ("optimize", "range", OPT + " --serve-batch 0", None, "--serve-batch must be a whole number of at least 1"),
    ("optimize", "choice", OPT.replace("quick", "huge"), None, "--preset 'huge'"),
    ("optimize", "choice", OPT + " --target tpu", None, "--target 'tpu'"),
    ("optimize", "choice", OPT + " --candidates ,,", None, "has an empty entry"),
    ("optimize", "choice", OPT + " --candidates layers1:int4", None, "precision 'int4'"),
    ("optimize", "unwritable", OPT.replace("{W}/out", "{W}/afile/out"), None, "which is a file"),
    ("optimize", "unwritable", OPT.replace("{W}/out", "{W}/ro/out"), None, "cannot write"),
    ("optimize", "existing", OPT.replace("{W}/out", "{W}/existing"), None, "already exists"),
    ("optimize", "incompatible", OPT.replace("{W}/pt", "{W}/onnx"), None, "not a PyTorch one"),
    ("optimize", "incompatible", OPT.replace("{W}/data", "{W}/otherlabels.tsv --eval {W}/otherlabels.tsv"), None,
     "predicts labels"),
    ("run", "missing", "run {W}/missing.toml --out {W}/out", None, "does not exist"),
    ("run", "missing", "run {W}/missing-baseline.toml --out {W}/out", None, "does not exist"),
    ("run", "missing", "run {W}/missing-data.toml --out {W}/out", None, "does not exist"),
    ("run", "unreadable", U, "recipe.toml", "Permission denied"),
    ("run", "empty", "run {W}/empty.toml --out {W}/out", None, "not a bertc recipe"),
    ("run", "corrupted", "run {W}/truncated.toml --out {W}/out", None, "not valid TOML"),
    ("run", "corrupted", "run {W}/garbage.toml --out {W}/out", None, "not valid TOML"),
    ("run", "columns", "run {W}/wrongcols.toml --out {W}/out", None, "column 'sentence' not found"),
    ("run", "columns", "run {W}/finetune-wrongcols.toml --out {W}/out", None, "could not find a text column"),
    ("run", "nonfinite", "run {W}/nan.toml --out {W}/out", None, "--lr must be a finite number"),
    ("run", "nonfinite", "run {W}/inf-drop.toml --out {W}/out", None, "--max-accuracy-drop must be a finite"),
    ("run", "range", "run {W}/opset.toml --out {W}/out", None, "--opset 3"),
    ("run", "range", "run {W}/drop.toml --out {W}/out", None, "--max-accuracy-drop must be at least 0"),
    ("run", "choice", "run {W}/lion.toml --out {W}/out", None, "--optimizer 'lion'"),
    ("run", "choice", "run {W}/schedule.toml --out {W}/out", None, "--schedule 'foo'"),
    ("run", "choice", "run {W}/sixteen.toml --out {W}/out", None, "--batch-size must be a whole number"),
    ("run", "choice", "run {W}/kind.toml --out {W}/out", None, "kind 'frobnicate'"),
    ("run", "unwritable", U.replace("{W}/out", "{W}/afile/out"), None, "which is a file"),
    ("run", "unwritable", U.replace("{W}/out", "{W}/ro/out"), None, "cannot write"),
    ("run", "existing", U.replace("{W}/out", "{W}/existing"), None, "already exists"),
    ("run", "incompatible", "run {W}/onnx-input.toml --out {W}/out", None, "needs a PyTorch artifact"),
    ("run", "incompatible", "run {W}/otherlabels.toml --out {W}/out", None, "does not know"),
    # a transformers model bertc cannot take: every stage that reads a PyTorch artifact refuses it the same way
    ("prune", "incompatible", "prune {W}/model --out {W}/out --heads 2", None, "has no classification head"),
    ("distill", "incompatible", D.replace("{W}/pt", "{W}/model"), None, "has no classification head"),
    ("export", "incompatible", "export {W}/model --out {W}/out", None, "has no classification head"),
    ("optimize", "incompatible", OPT.replace("{W}/pt", "{W}/model"), None, "has no classification head"),
    ("import", "missing", "import {W}/missing --out {W}/out", None, "does not exist"),
    ("import", "unreadable", "import {W}/model --out {W}/out", "model/config.json", "Permission denied"),
    ("import", "empty", "import {W}/emptydir --out {W}/out", None, "not a bertc artifact or a transformers"),
    ("import", "corrupted", "import {W}/trunc-model --out {W}/out", None, "damaged"),
    ("import", "nonfinite", "import {W}/model --out {W}/out --max-length nan", None, "--max-length must be a whole"),
    ("import", "range", "import {W}/model --out {W}/out --max-length 0", None, "--max-length must be at least 1"),
    ("import", "unwritable", "import {W}/model --out {W}/afile/out", None, "which is a file"),
    ("import", "unwritable", "import {W}/model --out {W}/ro/out", None, "cannot write"),
    ("import", "existing", "import {W}/model --out {W}/existing", None, "already exists"),
    ("import", "existing", "import {W}/model --out {W}/model --overwrite", None, "is an input of this stage"),
    ("import", "incompatible", "import {W}/model --out {W}/out", None, "has no classification head"),
    ("import", "incompatible", "import {W}/pt --out {W}/out", None, "already a bertc artifact"),
]
def row_id(row) -> str:
    same = [r for r in ROWS[:ROWS.index(row) + 1] if r[:2] == row[:2]]
    return f"{row[0]}-{row[1]}-{len(same)}"


PARAMS = [pytest.param(row, id=row_id(row)) for row in ROWS]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert_dir, tiny_artifact) -> Path:
    """Every input the rows use, in one directory whose name has spaces."""
    return build_world(tmp_path_factory.mktemp("bad-input") / "a world with spaces", tiny_bert_dir, tiny_artifact)


@pytest.mark.parametrize("row", PARAMS)
def test_bad_input_is_one_line_and_changes_nothing(world, row, monkeypatch):
    _, _, template, unreadable, pattern = row
    args = [token.format(W=world) for token in shlex.split(template)]
    before = snapshot(world)
    monkeypatch.setattr(tempfile, "tempdir", str(world / "tmp"))  # temporary files land where they are seen
    if unreadable:
        deny(monkeypatch, world / unreadable, write=False)
    if "{W}/ro/" in template:
        deny(monkeypatch, world / "ro", write=True)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        monkeypatch.undo()
    after = snapshot(world)
    remove_new(world, before)
    lines = result.stderr.splitlines()
    assert result.exit_code == 2, (result.output, repr(result.exception))
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("bertc: error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert after == before, {k: after.get(k) for k in set(after) ^ set(before) | {
        k for k in before if after.get(k) != before[k]}}


def test_the_table_covers_every_command_and_class():
    commands = {row[0] for row in ROWS}
    classes = {row[1] for row in ROWS}
    assert len(commands) == 12 and len(classes) == 11
    assert len({(row[0], row[1]) for row in ROWS}) >= 110
    assert f"{len(ROWS)} rows in {len({(row[0], row[1]) for row in ROWS})} cells" in __doc__
    assert len({row_id(row) for row in ROWS}) == len(ROWS)


def bertc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "bertc.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    missing = bertc("evaluate", str(tmp_path / "no artifact"), "--data", str(tmp_path / "x.tsv"), cwd=tmp_path)
    usage = bertc("predict", "--batch-size", "many", cwd=tmp_path)
    for result in (missing, usage):
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("bertc: error: ")
        assert "Traceback" not in result.stderr + result.stdout
    assert "does not exist" in missing.stderr and "see `bertc predict --help`" in usage.stderr
    assert list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback_and_exits_1(tmp_path):
    result = bertc("--debug", "evaluate", str(tmp_path / "none"), "--data", str(tmp_path / "x.tsv"), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "BertcError" in result.stderr and "does not exist" in result.stderr
