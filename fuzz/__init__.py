"""The fuzzer of the HTTP layer (make fuzz): the invariants in target.py, the runner in run.py."""
