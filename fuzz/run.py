"""``make fuzz``: atheris (coverage-guided, libFuzzer) on the HTTP layer in-process, seeded from
the tests' cases, for FUZZ_SECONDS (``--seconds``). Each input goes through fuzz/target.py's
invariants; one that breaks them is saved in tests/fuzz_regressions/ (a crash-... file, which
tests/unit/test_fuzz_regressions.py then replays) and ends the run with a non-zero status.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from typing import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGRESSIONS = os.path.join(ROOT, "tests", "fuzz_regressions")
CORPUS = os.path.join(ROOT, ".fuzz-corpus")
MAX_LEN = 4096


def seeds() -> Iterator[bytes]:
    """Every request of the tests' tables (the parser's, the functional suite's malformed
    requests, the replayed probe's) and the regressions kept."""
    sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "unit"), ROOT]
    import test_http_probe
    import test_http_protocol
    import test_http_strict
    import test_parser_table

    for data, _ in list(test_parser_table.CASES.values()) + list(
            test_parser_table.SMALL_CASES.values()):
        yield data
    for data, _ in test_http_strict.BAD_REQUESTS.values():
        yield data
    yield test_http_protocol.PIPELINED
    for case in test_http_probe.CASES:
        yield b"".join(case.steps)
    for name in sorted(os.listdir(REGRESSIONS)):
        if not name.startswith("."):
            with open(os.path.join(REGRESSIONS, name), "rb") as fh:
                yield fh.read()


def write_corpus() -> int:
    """A fresh corpus directory holding the seeds (cut to MAX_LEN): how many."""
    shutil.rmtree(CORPUS, ignore_errors=True)
    os.makedirs(CORPUS)
    count = 0
    for data in seeds():
        data = data[:MAX_LEN]
        with open(os.path.join(CORPUS, hashlib.sha1(data).hexdigest()), "wb") as fh:
            fh.write(data)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int,
                        default=int(os.environ.get("FUZZ_SECONDS", "300")))
    args, extra = parser.parse_known_args()
    import atheris

    with atheris.instrument_imports(include=["geventserve", "fuzz"]):
        from fuzz import target
    count = write_corpus()
    print(f"fuzz: {count} seeds, {args.seconds} s, crashes into {REGRESSIONS}/", flush=True)

    def one_input(data: bytes) -> None:
        target.check(data)

    atheris.Setup([sys.argv[0], CORPUS, f"-max_total_time={args.seconds}",
                   f"-max_len={MAX_LEN}", f"-artifact_prefix={REGRESSIONS}/", "-timeout=20",
                   "-rss_limit_mb=4096", "-print_final_stats=1", *extra], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
