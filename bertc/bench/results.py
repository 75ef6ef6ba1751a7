"""The results file of `bertc bench` (format ``bertc-bench-results``): where it may go and how it is read back."""

from __future__ import annotations

import json
from pathlib import Path

from bertc.errors import BertcError

RESULTS_FORMAT = "bertc-bench-results"
RESULTS_VERSION = 1


def check_results_output(out: Path | str, overwrite: bool) -> Path:
    out = Path(out)
    if out.is_dir():
        raise BertcError(f"--out {out} is a directory; pass a file name such as results.json")
    if out.exists() and not overwrite:
        raise BertcError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    return out


def read_results(path: Path | str) -> dict:
    """A results file written by `bertc bench`; fails on anything else or on another format version."""
    path = Path(path)
    if not path.is_file():
        raise BertcError(f"results file {path} does not exist; pass a JSON file written by `bertc bench`")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BertcError(f"{path} is not valid JSON ({err}); pass a file written by `bertc bench`") from err
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise BertcError(f"{path} is not a bertc bench results file; pass a JSON file written by `bertc bench`")
    if results.get("format_version") != RESULTS_VERSION:
        raise BertcError(f"{path} has results format version {results.get('format_version')!r}; this bertc reads "
                         f"version {RESULTS_VERSION}. Re-run `bertc bench` with this bertc version")
    return results
