"""The urbandata benchmark suite: ``python -m bench [--quick] [--rows N] [--repeat K] [--output BENCHMARKS.md]``.

Every figure is measured in the same run as the peer it is compared with, and
reported as a ratio: the machine is shared and noisy, so absolute numbers
mean little on their own (BENCHMARKS.md says so next to each table).
"""
