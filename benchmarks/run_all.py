#!/usr/bin/env python
"""Run every benchmarks/bench_*.py, collect their figures into benchmarks/results/summary.json, print one table.

Each benchmark script is run as a subprocess (``python bench_x.py [--quick]``) with a time limit, from the
repository root. It must print, as the last line on stdout that parses as JSON, one record of this form::

    {
      "benchmark": "geometry",                        # str, the topic (also the results file stem)
      "figures": [                                    # one entry per figure, at least one
        {
          "name": "points_in_boxes_50x120k",          # str, what was measured (unique within the benchmark)
          "value": 2.1,                               # float, our measurement
          "unit": "ms",                               # str, unit of value and baseline_value ("ms", "s", "MiB", "")
          "baseline_name": "open3d OBB loop",         # str | null, what we compare against, run in the same process
          "baseline_value": 15.3,                     # float | null, the baseline's measurement, same unit
          "ratio": 7.3,                               # float | null, improvement factor, > 1 is better for us:
                                                      #   baseline/value for costs (time, memory), value/baseline
                                                      #   for scores (accuracy, IoU)
          "target": 5.0                               # float | null, the ratio the issue asks for (ratio >= target)
        }
      ],
      "checks": {"identical_indices": true},          # optional: named correctness checks of the run, bool each
      "details": {...}                                # optional: anything else worth keeping (sizes, raw times)
    }

Scripts also write ``benchmarks/results/<benchmark>.json`` (the same record) and ``<benchmark>.png``; they exit
non-zero when the run itself is wrong (a failed check), not when a target is missed.

``summary.md`` holds the machine and the table in Markdown, for the README. ``summary.json`` holds the machine description (CPU model, cores, RAM, Python, numpy, OS), the time of the run,
and per script: its status (``ok``, ``failed``, ``timeout``, ``no-json``, ``bad-record`` when a figure lacks one of the
keys above), wall time, the record, and the tail of its
stderr when it did not succeed.

Usage: ``python benchmarks/run_all.py [--quick] [--timeout S] [--only SUBSTRING] [--strict]``. The exit code is 1
when a script fails, times out, prints no record or fails a check (and, with ``--strict``, when a figure misses its
target); else 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
FIGURE_KEYS = ("name", "value", "unit", "baseline_name", "baseline_value", "ratio", "target")


def machine_description() -> dict:
    """CPU model, logical cores, RAM, Python, numpy and OS of this machine."""
    import numpy

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram_gib = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": None if ram_gib is None else round(ram_gib, 1),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "os": platform.platform(),
    }


def parse_record(stdout: str) -> dict | None:
    """The last stdout line that is a JSON object with "benchmark" and "figures", or None."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "benchmark" in record and isinstance(record.get("figures"), list):
            return record
    return None


def run_script(script: Path, quick: bool, timeout_s: float) -> dict:
    """Run one benchmark script; returns its summary entry."""
    cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
    env = dict(os.environ, MPLBACKEND="Agg")
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return {"script": script.name, "status": "timeout", "wall_s": round(time.perf_counter() - start, 2),
                "record": None, "stderr_tail": stderr[-2000:]}
    wall_s = round(time.perf_counter() - start, 2)
    record = parse_record(proc.stdout)
    missing = [] if record is None else [
        f"figures[{i}] lacks {key!r}" for i, fig in enumerate(record["figures"]) for key in FIGURE_KEYS
        if not isinstance(fig, dict) or key not in fig
    ]
    if proc.returncode != 0:
        status = "failed"
    elif record is None:
        status = "no-json"
    elif missing or not record["figures"]:
        status = "bad-record"
    else:
        status = "ok"
    entry = {"script": script.name, "status": status, "returncode": proc.returncode, "wall_s": wall_s,
             "record": record}
    if status != "ok":
        entry["stderr_tail"] = ("; ".join(missing) + "\n" if missing else "") + proc.stderr[-2000:]
    return entry


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return f"{text} {unit}".strip()
    return str(value)


def table(entries: list[dict]) -> tuple[str, list[str]]:
    """The text table of all figures, and the list of missed targets / failed checks."""
    header = ("benchmark", "figure", "value", "baseline", "ratio", "target")
    rows, problems = [], []
    for entry in entries:
        record = entry["record"]
        if record is None:
            rows.append((entry["script"], f"<{entry['status']}>", "-", "-", "-", "-"))
            continue
        for figure in record["figures"]:
            if not isinstance(figure, dict):
                continue
            unit = figure.get("unit", "")
            baseline = figure.get("baseline_value")
            baseline_text = "-" if baseline is None else f"{_fmt(baseline, unit)} ({figure.get('baseline_name')})"
            ratio, target = figure.get("ratio"), figure.get("target")
            mark = ""
            if target is not None:
                met = ratio is not None and ratio >= target
                mark = " ok" if met else " MISSED"
                if not met:
                    problems.append(f"{record['benchmark']}/{figure.get('name')}: ratio {_fmt(ratio)} < {target}")
            rows.append((record["benchmark"], str(figure.get("name")), _fmt(figure.get("value"), unit),
                         baseline_text, "-" if ratio is None else f"{ratio:.2f}x",
                         ("-" if target is None else f">= {target:g}x") + mark))
        for name, passed in (record.get("checks") or {}).items():
            rows.append((record["benchmark"], f"check {name}", str(bool(passed)), "-", "-", "must be True"))
            if not passed:
                problems.append(f"{record['benchmark']}: check {name} failed")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[3] = min(widths[3], 60)
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
    for row in rows:
        lines.append(" | ".join(cell[:w].ljust(w) for cell, w in zip(row, widths)))
    return "\n".join(lines), problems


def summary_markdown(summary: dict, text: str) -> str:
    """``summary.md``: the machine, the time of the run and the table, ready to paste into the README."""
    m = summary["machine"]
    return (f"Benchmarks of {summary['created_utc']}{' (--quick)' if summary['quick'] else ''} on {m['cpu_model']}, "
            f"{m['logical_cores']} logical cores ({m['usable_cores']} usable), {m['ram_gib']} GiB RAM, "
            f"Python {m['python']}, numpy {m['numpy']}, {m['os']} (`make bench`; ratio > 1 is better for us):\n\n"
            f"```\n{text}\n```\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run all benchmarks/bench_*.py and summarise their figures.")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script (smaller, faster runs)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="time limit per script in seconds")
    parser.add_argument("--only", default="", help="run only scripts whose file name contains this")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    args = parser.parse_args(argv)

    scripts = sorted(p for p in HERE.glob("bench_*.py") if args.only in p.name)
    if not scripts:
        print(f"no benchmarks/bench_*.py matching {args.only!r}", file=sys.stderr)
        return 1
    machine = machine_description()
    print(f"machine: {machine['cpu_model']}, {machine['logical_cores']} cores, {machine['ram_gib']} GiB, "
          f"Python {machine['python']}, numpy {machine['numpy']}", flush=True)
    entries = []
    for script in scripts:
        print(f"running {script.name}{' --quick' if args.quick else ''} ...", flush=True)
        entry = run_script(script, args.quick, args.timeout)
        print(f"  {entry['status']} in {entry['wall_s']} s", flush=True)
        if entry["status"] != "ok" and entry.get("stderr_tail"):
            print("  " + entry["stderr_tail"].strip().replace("\n", "\n  ")[-1500:], flush=True)
        entries.append(entry)

    text, problems = table(entries)
    summary = {
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine,
        "results": entries,
        "problems": problems,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "summary.md").write_text(summary_markdown(summary, text))
    print()
    print(text)
    for problem in problems:
        print(f"! {problem}")
    print(f"\nwrote {RESULTS / 'summary.json'} and {RESULTS / 'summary.md'}")
    crashed = [e for e in entries if e["status"] != "ok"]
    failed_checks = [p for p in problems if ": check " in p]
    missed = [p for p in problems if ": check " not in p]
    return 1 if crashed or failed_checks or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
