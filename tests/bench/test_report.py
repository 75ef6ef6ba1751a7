from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertc.bench.figures import pareto_front
from bertc.bench.report import console_tables, ratio_text, recommend, report, speed_verdict
from bertc.cli import app
from bertc.errors import BertcError
from tests.bench.synthetic import MISLEADING_ROUNDS, measured_results, synthetic_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


RANGE_WORDS = r"(?: faster)? \((?:median of the per-round ratios, range )?"
SPEEDUP_WITH_RANGE = re.compile(r"(\d+\.\d+)x" + RANGE_WORDS + r"(\d+\.\d+)-(\d+\.\d+)x?\)")

FIGURE_WITH_RANGE = re.compile(r"(\d[\d,.]*)x?" + RANGE_WORDS + r"(\d[\d,.]*)-(\d[\d,.]*)x?\)")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def printed_tables(results: dict) -> str:
    from rich.console import Console

    terminal = Console(record=True, width=400, file=io.StringIO())
    for table in console_tables(results):
        terminal.print(table)
    return terminal.export_text()


def test_every_printed_speedup_lies_inside_its_printed_range(tmp_path):
    """Rounds where the ratio of overall medians (3.60x) falls outside the per-round ratios (4.00-6.67x)."""
    results = measured_results(MISLEADING_ROUNDS)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = report([path], tmp_path / "report")
    printed = {"terminal": printed_tables(results), "recommendation": recommend(results, 1.0)["text"],
               "report.md": (out / "report.md").read_text(), "report.html": (out / "report.html").read_text()}
    for where, text in printed.items():
        found = SPEEDUP_WITH_RANGE.findall(text)
        assert found, where
        for figure, low, high in found:
            assert float(low) <= float(figure) <= float(high), f"{where}: {figure}x ({low}-{high})"
        assert "5.33x" in text and "4.00-6.67" in text and "3.60x" not in text, where
        for figure, low, high in FIGURE_WITH_RANGE.findall(text):  # latencies and throughputs too
            assert number(low) <= number(figure) <= number(high), f"{where}: {figure} ({low}-{high})"
    assert "median of the per-round ratios" in printed["report.md"]


def test_pareto_front_keeps_only_undominated_points():
    points = [(10.0, 90.0), (5.0, 89.0), (6.0, 88.0), (2.0, 80.0), (12.0, 90.0)]
    assert pareto_front(points) == [3, 1, 0]


def test_recommends_the_fastest_variant_within_the_budget():
    results = synthetic_results([("base", 10.0, 0.90), ("pruned", 4.0, 0.895), ("int8", 2.0, 0.87)])
    advice = recommend(results, max_accuracy_drop=1.0)
    assert advice["choice"] == "pruned"
    assert advice["text"].startswith("Ship pruned: at batch 1, real lengths, it takes 4 ms")
    assert "2.50x faster" in advice["text"] and "-0.50 points" in advice["text"]
    assert "over the budget: int8 (2 ms, -3.00 points)" in advice["text"]
    assert recommend(results, max_accuracy_drop=5.0)["choice"] == "int8"


def test_says_so_when_no_variant_beats_the_baseline():
    results = synthetic_results([("base", 3.0, 0.90), ("slower", 4.0, 0.91), ("lossy", 1.0, 0.80)])
    advice = recommend(results, max_accuracy_drop=1.0)
    assert advice["choice"] is None
    assert advice["text"].startswith("No variant beats the baseline base")
    assert "lossy" in advice["text"]


def test_a_gain_inside_the_noise_is_flagged():
    results = synthetic_results([("base", 10.0, 0.90), ("same", 9.8, 0.90)])
    assert "within this run's noise" in recommend(results, 1.0)["text"]


def test_report_html_embeds_the_plots_and_the_table(tmp_path, tiny_results, tiny_artifact, tiny_onnx):
    out = report([tiny_results], tmp_path / "report")
    html = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 2
    for image in images:
        data = base64.b64decode(image)
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert "<table>" in html and f"<td>{tiny_onnx.name}</td>" in html
    advice = recommend(json.loads(tiny_results.read_text()), max_accuracy_drop=1.0)["text"]
    assert "<h3>Recommendation</h3>" in html and f"<p class='recommendation'>{escape(advice)}</p>" in html
    assert "finetune: " in html and "export: " in html  # lineage
    assert "src='figures/" not in html and "http" not in html.split("<body>")[1]  # self-contained
    markdown = (out / "report.md").read_text()
    assert f"| {tiny_artifact.name} (baseline) |" in markdown
    for name in re.findall(r"\]\((figures/[^)]+)\)", markdown):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)


SHIP_FAST = ("Ship fast: at batch 1, real lengths, it takes 2 ms (p50) against 10 ms for the baseline base, 5.00x "
             "faster (median of the per-round ratios, range 4.52-5.53x). Its accuracy is 89.50% (-0.50 points "
             "against the baseline, within the 1 point accuracy budget). Its size on disk is about the baseline's "
             "(1.0 MB).")
NOTHING_BEATS_BASE = ("No variant beats the baseline base (2 ms p50 at batch 1, real lengths) within the 1 point "
                      "accuracy budget. Faster but over the budget: lossy (1 ms, -10.00 points).")


@pytest.mark.parametrize(("variants", "advice", "other"), [
    ([("base", 10.0, 0.90), ("fast", 2.0, 0.895)], SHIP_FAST, "No variant beats"),
    ([("base", 2.0, 0.90), ("slower", 10.0, 0.90), ("lossy", 1.0, 0.80)], NOTHING_BEATS_BASE, "Ship "),
], ids=["a-variant-wins", "the-baseline-stays"])
def test_report_states_the_one_right_recommendation(tmp_path, variants, advice, other):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(synthetic_results(variants)))
    out = report([results], tmp_path / "report", max_accuracy_drop=1.0)
    html = (out / "report.html").read_text()
    assert "<h3>Recommendation</h3>" in html and f"<p class='recommendation'>{escape(advice)}</p>" in html
    assert other not in html
    markdown = (out / "report.md").read_text()
    assert f"### Recommendation\n\n{advice}\n" in markdown and other not in markdown


def test_report_handles_several_results_files_and_no_accuracy(tmp_path):
    first = tmp_path / "cpu.json"
    first.write_text(json.dumps(synthetic_results([("base", 10.0, 0.9), ("fast", 2.0, 0.9)])))
    second = tmp_path / "noacc.json"
    second.write_text(json.dumps(synthetic_results([("base", 10.0, None), ("fast", 2.0, None)])))
    out = report([first, second], tmp_path / "report")
    html = (out / "report.html").read_text()
    assert html.count("<h2>") == 2
    assert html.count("data:image/png;base64,") == 3  # no accuracy: no scatter for the second file
    assert "Accuracy was not measured" in html


def test_incompatible_results_fail_and_write_nothing(tmp_path, tiny_results):
    results = json.loads(tiny_results.read_text())
    results["format_version"] = 0
    old = tmp_path / "old.json"
    old.write_text(json.dumps(results))
    with pytest.raises(BertcError, match="format version 0"):
        report([old], tmp_path / "report")
    assert not (tmp_path / "report").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep").write_text("x")
    with pytest.raises(BertcError, match="already exists"):
        report([tiny_results], existing)
    assert [p.name for p in existing.iterdir()] == ["keep"]


def test_cli_report(tmp_path, tiny_results):
    result = CliRunner().invoke(app, ["report", str(tiny_results), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").is_file()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "s")])
    assert bad.exit_code == 2 and "does not exist" in bad.output
    bad = CliRunner().invoke(app, ["report", str(tiny_results), "--out", str(tmp_path / "s"),
                                   "--max-accuracy-drop", "-1"])
    assert bad.exit_code == 2 and "--max-accuracy-drop" in bad.output


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.mark.slow
def test_report_renders_in_headless_chromium_with_its_plots(tmp_path):
    """Chromium draws broken images as small icons; matplotlib's blue (#1f77b4) only appears if the plots load."""
    import numpy as np
    from matplotlib.image import imread

    browser = chromium()
    if browser is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium)")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(synthetic_results([("base", 10.0, 0.9), ("fast", 2.0, 0.895)])))
    out = report([results], tmp_path / "report")
    shot = tmp_path / "shot.png"
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1280,4000", f"--screenshot={shot}", (out / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), done.stderr[-2000:]
    pixels = (imread(str(shot))[..., :3] * 255).round().astype(int)
    blue = np.all(np.abs(pixels - np.array([31, 119, 180])) <= 12, axis=-1)
    assert blue.sum() > 500, "the embedded plots did not render"
    broken = report([results], tmp_path / "broken")
    html = (broken / "report.html").read_text()
    (broken / "report.html").write_text(re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,AAAA", html))
    shot_broken = tmp_path / "broken.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,4000", f"--screenshot={shot_broken}", (broken / "report.html").as_uri()],
                   capture_output=True, text=True, timeout=120)
    broken_pixels = (imread(str(shot_broken))[..., :3] * 255).round().astype(int)
    assert np.all(np.abs(broken_pixels - np.array([31, 119, 180])) <= 12, axis=-1).sum() < 50  # the check can fail


def test_a_busy_machine_is_called_out_next_to_the_recommendation():
    from bertc.bench.report import notes

    results = synthetic_results([("base", 10.0, 0.9), ("fast", 2.0, 0.9)])
    results["environment"].update(cores=2, load_average={"start": 0.3, "end": 0.4})
    assert notes(results) == []
    results["environment"]["load_average"]["end"] = 4.8
    assert "busy while measuring (1-minute load average up to 4.8 on 2 cores)" in notes(results)[0]


def test_busy_means_other_processes_not_the_bench_itself():
    from bertc.bench.machine import cores_used_by_others, cpu_counters
    from bertc.bench.report import notes

    results = synthetic_results([("base", 10.0, 0.9), ("fast", 2.0, 0.9)])
    results["environment"].update(cores=2, load_average={"start": 2.0, "end": 2.0},  # the bench's own load
                                  other_load={"before": 0.1, "during": 0.2})
    assert notes(results) == []
    results["environment"]["other_load"]["during"] = 1.5
    assert "other processes used up to 1.5 of 2 cores" in notes(results)[0]
    # (wall s, machine busy CPU s, this process's CPU s): 3 busy seconds in 2, 2 of them ours -> 0.5 cores
    assert cores_used_by_others((0.0, 10.0, 5.0), (2.0, 13.0, 7.0)) == 0.5
    assert cores_used_by_others((0.0, 10.0, 5.0), (1.0, 10.5, 6.0)) == 0.0  # tick rounding never goes negative
    assert cores_used_by_others(None, (1.0, 1.0, 1.0)) is None
    counters = cpu_counters()
    assert counters is None or (len(counters) == 3 and counters[1] >= counters[2] >= 0)


@pytest.mark.parametrize("low, high, verdict", [(1.02, 1.3, "faster"), (0.91, 1.16, "not measurably faster"),
                                                (0.8, 0.97, "slower"), (1.0, 1.2, "not measurably faster")])
def test_speedup_is_called_faster_only_when_every_round_says_so(low, high, verdict):
    row = {"speedup": (low + high) / 2, "speedup_min": low, "speedup_max": high}
    assert speed_verdict(row) == verdict
    assert ratio_text(row).endswith(verdict)
    assert ratio_text(row, baseline=True) == "baseline"
