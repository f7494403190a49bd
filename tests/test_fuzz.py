"""A short run of the fuzzer (make fuzz runs it longer): 30 s of atheris on the HTTP layer,
from the tests' cases; an input that breaks an invariant fails this test and is saved in
tests/fuzz_regressions/."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = int(os.environ.get("FUZZ_TEST_SECONDS", "30"))


def test_fuzz_for_a_while():
    before = set(os.listdir(os.path.join(ROOT, "tests", "fuzz_regressions")))
    run = subprocess.run([sys.executable, "-m", "fuzz.run", "--seconds", str(SECONDS)],
                         cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 90)
    found = set(os.listdir(os.path.join(ROOT, "tests", "fuzz_regressions"))) - before
    assert run.returncode == 0 and not found, (
        f"the fuzzer found {sorted(found)} (exit {run.returncode}):\n{run.stderr[-3000:]}")
    assert "Done" in run.stderr, run.stderr[-2000:]
