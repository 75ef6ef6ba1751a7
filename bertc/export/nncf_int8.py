"""NNCF post-training int8 of OpenVINO models (`bertc quantize --method nncf-int8`): NNCF's two entry points and
the items it reads, and reading and writing the IR it quantizes.

NNCF is used as it is: ``nncf.quantize`` with ``ModelType.TRANSFORMER`` (its patterns keep the ops transformers
need in float, and SmoothQuant evens out activation outliers), and with an accuracy budget
``nncf.quantize_with_accuracy_control``, which reverts the quantizers that hurt accuracy most until the drop
on the validation data fits. Calibration and validation items are batch-1 dicts of int64 arrays keyed by the
model's input names, each only as long as its own tokens. Compiling and running the models is
``bertc.inference.openvino``'s. openvino and nncf are imported where they are used: they are an optional extra.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bertc.errors import BertcError
from bertc.inference.openvino import EXTRA, MODEL_FILE, WEIGHTS_FILE, first_line, import_openvino, read_ir

METHOD = "--method nncf-int8"
NNCF_LOGGER = "nncf"
PROGRESS_MESSAGES = ("Elapsed Time",)  # NNCF logs one per validation pass; they say nothing worth keeping


def import_nncf():
    """The nncf module; a one-line error naming the extra when it (or openvino) is not installed."""
    import_openvino(METHOD)
    try:
        import nncf
    except ImportError as err:
        raise BertcError(f"{METHOD} needs NNCF: {EXTRA}") from err
    return nncf


def versions() -> dict[str, str]:
    return {"nncf_version": import_nncf().__version__, "openvino_version": import_openvino(METHOD).__version__}


def is_openvino_model(model) -> bool:
    return isinstance(model, import_openvino(METHOD).Model)


def read_artifact_ir(directory: Path, description: dict):
    """The ``openvino.Model`` of an OpenVINO artifact (``description`` is its manifest["model"])."""
    files = ir_files(directory, description)
    for file in files:
        if not file.is_file():
            raise BertcError(f"{file} is missing; the artifact is damaged, re-create it with "
                             "`bertc export --openvino`")
    return read_ir(files[0].read_bytes(), files[1].read_bytes())


def ir_files(directory: Path, description: dict) -> list[Path]:
    """model.xml and model.bin, or the files ``description`` (a manifest["model"]) names."""
    return [Path(directory) / description.get("file", MODEL_FILE),
            Path(directory) / description.get("weights_file", WEIGHTS_FILE)]


def save_ir(model, directory: Path) -> int:
    """Write ``model`` as model.xml + model.bin in ``directory``, return their size in bytes. Float weights are
    not compressed to fp16 (``save_model``'s default), so what is written is exactly what was measured."""
    import_openvino(METHOD).save_model(model, str(Path(directory) / MODEL_FILE), compress_to_fp16=False)
    return sum(file.stat().st_size for file in ir_files(directory, {}))


def input_names(model) -> list[str]:
    return [port.get_any_name() for port in model.inputs]


def op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in model.get_ops():
        counts[op.get_type_name()] = counts.get(op.get_type_name(), 0) + 1
    return dict(sorted(counts.items()))


def item_feeds(tokenizer, texts: list[str], pairs: list[str] | None, names: list[str],
               max_length: int) -> list[dict[str, np.ndarray]]:
    """One input dict per example (batch 1, unpadded), in the model's input names."""
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    missing = [name for name in names if name not in encoded]
    if missing:
        raise BertcError(f"the model reads {', '.join(missing)}, which its tokenizer does not produce; re-create "
                         "the artifact with `bertc export --openvino`")
    return [{name: np.asarray([encoded[name][i]], dtype=np.int64) for name in names} for i in range(len(texts))]


def accuracy(compiled, items) -> tuple[float, list[float]]:
    """NNCF's validation function: accuracy of a compiled model on ``(feeds, label index)`` items, and whether
    each item was right (per-item values let NNCF rank quantizers by what they cost)."""
    logits = compiled.output(0)
    correct = [float(int(np.argmax(compiled(feeds)[logits])) == label) for feeds, label in items]
    return (float(np.mean(correct)) if correct else 0.0), correct


def quantize_ov(model, calibration: list[dict], subset_size: int, *, validation: list[tuple[dict, int]] | None = None,
                max_drop_points: float | None = None) -> tuple[object, list[str]]:
    """``model`` quantized to int8 by NNCF (a new model; ``model`` is left as it was) and NNCF's log messages.

    With ``max_drop_points`` the quantization is accuracy-controlled on ``validation`` (absolute drop)."""
    nncf = import_nncf()
    calibration_dataset = nncf.Dataset(calibration)
    with nncf_messages() as messages:
        try:
            if max_drop_points is None:
                quantized = nncf.quantize(model, calibration_dataset, model_type=nncf.ModelType.TRANSFORMER,
                                          subset_size=subset_size)
            else:
                quantized = nncf.quantize_with_accuracy_control(
                    model, calibration_dataset, nncf.Dataset(validation, lambda item: item[0]), accuracy,
                    max_drop=max_drop_points / 100, drop_type=nncf.DropType.ABSOLUTE,
                    model_type=nncf.ModelType.TRANSFORMER, subset_size=subset_size)
        except BertcError:
            raise
        except Exception as err:  # NNCF raises its own and OpenVINO's assorted types
            raise BertcError(f"NNCF could not quantize the model ({type(err).__name__}: {first_line(err)}); "
                             "report the model to bertc, or use another --method") from err
    return quantized, [m for m in messages if not m.startswith(PROGRESS_MESSAGES)]


@contextlib.contextmanager
def nncf_messages() -> Iterator[list[str]]:
    """Collect NNCF's log messages instead of printing them (and its progress bars, which go to stdout)."""
    logger = logging.getLogger(NNCF_LOGGER)
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handlers, level = logger.handlers, logger.level
    logger.handlers = [Collect(logging.INFO)]
    logger.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield messages
    finally:
        logger.handlers = handlers
        logger.setLevel(level)
