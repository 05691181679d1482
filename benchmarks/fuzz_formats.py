#!/usr/bin/env python
"""Fuzz every format reader far beyond the test suite: 20,000 mutated files per reader by default.

The targets, seeds and mutations are those of ``tests/formats/fuzz_targets.py`` (truncations, bit flips, byte
overwrites, inserted garbage and tokens, deletions, empty files); the cases come from a seeded numpy generator, so a
run is reproducible. The rule is the test suite's: success with data that passes the target's check, or a
FormatError naming the file. Anything else is a failure and is listed (exception type, message, the case's seed
and mutations) in the record.

Figures: per reader the mean milliseconds per mutated case, against the baseline of reading the valid seed
(ratio = seed read / mutated case: error paths cost about as much as a clean read, nothing degenerates).
Checks: no failures per reader, and no case slower than 2 CPU seconds.

Usage: ``python benchmarks/fuzz_formats.py [--quick] [--cases N] [--only NAME ...] [--seed S]``. Prints one JSON
line (the record format of benchmarks/run_all.py) and writes benchmarks/results/fuzz_formats.json and .png; exits 1
when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.formats.fuzz_targets import apply_ops, random_ops, run_case, targets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MAX_CASE_CPU_S = 2.0


def _seed_read_ms(target, seeds, path: Path, repeats: int = 20) -> float:
    start = time.perf_counter()
    for i in range(repeats):
        run_case(target, seeds[i % len(seeds)], path)
    return (time.perf_counter() - start) / repeats * 1e3


def fuzz_target(target, cases: int, seed: int, workdir: Path) -> dict:
    seeds = target.seeds()
    path = workdir / target.name / target.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if target.setup is not None:
        target.setup(path.parent)
    baseline_ms = _seed_read_ms(target, seeds, path)
    rng = np.random.default_rng(seed)
    outcomes = {"ok": 0, "format_error": 0, "failure": 0}
    failures = []
    slowest_cpu_s = 0.0
    start = time.perf_counter()
    for i in range(cases):
        seed_index = i % len(seeds)
        ops = random_ops(rng)
        data = apply_ops(seeds[seed_index], ops)
        cpu = time.process_time()
        try:
            outcomes[run_case(target, data, path)] += 1
        except Exception as exc:  # noqa: BLE001 - every other exception is what this script counts
            outcomes["failure"] += 1
            if len(failures) < 20:
                failures.append({"case": i, "seed_index": seed_index, "ops": [(k, p, a, g.hex()) for k, p, a, g in ops],
                                 "error": f"{type(exc).__name__}: {exc}"[:300],
                                 "where": traceback.format_exc(limit=-2).splitlines()[-3:]})
        slowest_cpu_s = max(slowest_cpu_s, time.process_time() - cpu)
    elapsed = time.perf_counter() - start
    return {"cases": cases, "outcomes": outcomes, "failures": failures, "ms_per_case": elapsed / cases * 1e3,
            "seed_read_ms": baseline_ms, "slowest_case_cpu_s": slowest_cpu_s, "elapsed_s": elapsed}


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = np.arange(len(names))
    ok = [results[n]["outcomes"]["ok"] for n in names]
    err = [results[n]["outcomes"]["format_error"] for n in names]
    bad = [results[n]["outcomes"]["failure"] for n in names]
    ax.bar(x, ok, label="read, data checked")
    ax.bar(x, err, bottom=ok, label="FormatError naming the file")
    ax.bar(x, bad, bottom=np.add(ok, err), label="other exception (bug)", color="red")
    ax.set_xticks(x, names, rotation=40, ha="right")
    ax.set_ylabel("mutated files")
    ax.set_title("Fuzzing the format readers: outcome of every case")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 cases per reader")
    parser.add_argument("--cases", type=int, default=None, help="cases per reader (default 20,000)")
    parser.add_argument("--only", nargs="*", default=None, help="reader names to fuzz")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cases = args.cases or (2_000 if args.quick else 20_000)
    chosen = [t for t in targets() if not args.only or t.name in args.only]
    results = {}
    with tempfile.TemporaryDirectory(prefix="fuzz-formats-") as tmp:
        for k, target in enumerate(chosen):
            results[target.name] = fuzz_target(target, cases, args.seed + k, Path(tmp))
            print(f"{target.name}: {results[target.name]['outcomes']} "
                  f"({results[target.name]['elapsed_s']:.1f} s)", file=sys.stderr)
    figures = [{
        "name": f"{name}_ms_per_mutated_case", "value": round(r["ms_per_case"], 4), "unit": "ms",
        "baseline_name": f"{name}: read of the valid seed file", "baseline_value": round(r["seed_read_ms"], 4),
        "ratio": round(r["seed_read_ms"] / r["ms_per_case"], 3), "target": None,
    } for name, r in results.items()]
    checks = {f"{name}_no_failures": r["outcomes"]["failure"] == 0 for name, r in results.items()}
    checks.update({f"{name}_no_case_over_{MAX_CASE_CPU_S:g}_cpu_s": r["slowest_case_cpu_s"] < MAX_CASE_CPU_S
                   for name, r in results.items()})
    record = {
        "benchmark": "fuzz_formats",
        "figures": figures,
        "checks": checks,
        "details": {
            "cases_per_reader": {name: r["cases"] for name, r in results.items()},
            "failures": {name: r["outcomes"]["failure"] for name, r in results.items()},
            "total_cases": sum(r["cases"] for r in results.values()),
            "total_failures": sum(r["outcomes"]["failure"] for r in results.values()),
            "outcomes": {name: r["outcomes"] for name, r in results.items()},
            "slowest_case_cpu_s": {name: round(r["slowest_case_cpu_s"], 4) for name, r in results.items()},
            "failure_examples": {name: r["failures"] for name, r in results.items() if r["failures"]},
            "seed": args.seed,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz_formats.json").write_text(json.dumps(record, indent=1))
    _plot(results, RESULTS / "fuzz_formats.png")
    print(json.dumps(record))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
