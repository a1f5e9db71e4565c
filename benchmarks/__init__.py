"""ollm's benchmarks, each measured against a baseline in the same run.

Run from the repository root: ``python -m benchmarks.serving`` (continuous batching against
llama-cpp-python) and ``python -m benchmarks.prefix`` (prefix cache and KV snapshots).
Shared parts: :mod:`~benchmarks.workload` (the requests), :mod:`~benchmarks.loadgen` (the
load generator), :mod:`~benchmarks.servers` (processes under test, machine load),
:mod:`~benchmarks.stats` and :mod:`~benchmarks.report` (numbers and the printed table).
"""
