"""Inputs the fuzzer found to break an invariant (tests/fuzz_regressions/), replayed through the
same checks (fuzz/target.py) once fixed; and the checks themselves, on the tests' own cases."""

import os

import pytest

from fuzz import target

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "fuzz_regressions")
FOUND = sorted(name for name in os.listdir(FOLDER) if not name.startswith("."))


# The limits the first finds were made with (they were larger then), and the defaults'.
OTHER_LIMITS = [(512, 16, 256), (8190, 100, 8190)]


@pytest.mark.parametrize("name", FOUND)
def test_found_by_the_fuzzer(name):
    with open(os.path.join(FOLDER, name), "rb") as fh:
        data = fh.read()
    target.check(data)
    for limits in OTHER_LIMITS:
        target.check_parser(data, limits)


def test_the_checks_catch_a_split_dependent_parser(monkeypatch):
    """The invariants are not vacuous: a parser whose answer depends on the reads is caught."""
    real = target.parse

    def split_dependent(reads, limits=target.LIMITS):
        outcome, method = real(reads, limits)
        if len(reads) > 1:
            return (outcome[0], 999), method
        return outcome, method

    monkeypatch.setattr(target, "parse", split_dependent)
    with pytest.raises(AssertionError, match="depends on the reads"):
        target.check(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def test_the_checks_catch_an_unframed_response():
    with pytest.raises(AssertionError):
        target.check_responses(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi", ["GET"])
