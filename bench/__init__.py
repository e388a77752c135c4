"""Benchmarks of the whole stack (issue #7): card-in-field time against the link model's physical bound, host
throughput against a bare endpoint, and the terminal's footprint. Run from the repository root:

    ./scripts/bench            # or: .venv/bin/python -m bench [--quick] [--repeat N]

Every figure is printed beside a reference measured or computed in the same run (a physical bound, a bare
endpoint, a bare interpreter), and each target is judged on that ratio, so a busy machine shifts both sides.
Nothing here is installed; the test suite only runs it at tiny counts (tests/bench) and never asserts times.
"""
