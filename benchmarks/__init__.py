"""Speed and memory benchmarks; run each from the repository root as
``.venv/bin/python -m benchmarks.bench_NAME`` (see README)."""
