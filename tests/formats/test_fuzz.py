"""Bad input: every reader meets 1,000 truncated, mutated, garbage-filled or empty files (issue 3).

The only allowed outcomes are a success whose data passes the target's check, or a FormatError naming the file.
Seeds are tiny valid files (:mod:`tests.formats.fuzz_targets`); ``derandomize=True`` makes every run the same.
``benchmarks/fuzz_formats.py`` runs many more cases.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.formats.fuzz_targets import KINDS, TOKENS, apply_ops, run_case, targets

CASES_PER_READER = 1000
#: CPU seconds of one case: far more is a hang in the making (the seeds are a few hundred bytes); CPU time, not wall
#: time, so a busy machine does not fail the test. A real hang is ended by the timeout mark.
MAX_CASE_CPU_S = 2.0

_TARGETS = {t.name: t for t in targets()}

_op = st.tuples(
    st.sampled_from(KINDS),
    st.integers(min_value=0, max_value=1 << 20),
    st.integers(min_value=0, max_value=max(255, len(TOKENS))),
    st.binary(min_size=1, max_size=16),
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(_TARGETS))
def test_reader_survives_mutated_files(name, workdir):
    target = _TARGETS[name]
    seeds = target.seeds()
    path = workdir / name / target.filename
    path.parent.mkdir(exist_ok=True)
    if target.setup is not None:
        target.setup(path.parent)
    for seed in seeds:  # the seeds themselves must read
        assert run_case(target, seed, path) == "ok"
    outcomes = {"ok": 0, "format_error": 0}
    slowest = [0.0]

    @settings(max_examples=CASES_PER_READER, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(seed_index=st.integers(min_value=0, max_value=len(seeds) - 1), ops=st.lists(_op, min_size=1, max_size=4))
    def case(seed_index, ops):
        data = apply_ops(seeds[seed_index], ops)
        start = time.process_time()
        outcomes[run_case(target, data, path)] += 1
        slowest[0] = max(slowest[0], time.process_time() - start)

    case()
    assert sum(outcomes.values()) >= CASES_PER_READER
    assert outcomes["format_error"] > CASES_PER_READER // 2  # the mutations do break the files
    assert slowest[0] < MAX_CASE_CPU_S, f"slowest case took {slowest[0]:.2f} CPU s"
