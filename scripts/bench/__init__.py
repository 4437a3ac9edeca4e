"""Benchmarks on the sandbox (issue #8): how fast does `slots` restore service, and what does it
cost next to the plain-kubectl way of doing the same thing?

    .venv/bin/python scripts/bench               # 10 runs per figure, writes docs/benchmarks.md
    .venv/bin/python scripts/bench --quick       # 2 runs per figure, writes nothing unless --out
    python3 scripts/bench                        # from a fresh clone: sets up .venv first

Every command is measured as a separate process, as an operator runs it (`.venv/bin/slots ...`
with KUBECONFIG and SLOTS_CONFIG pointing at a fresh sandbox), each figure next to its baseline
measured in the same run and interleaved with it, so that load from other work on the machine
hits both alike. Medians with the interquartile range and min-max; peak RSS from ``wait4`` of
each child.

The parts: ``common`` (constants, targets, statistics), ``spawn`` (the commands as processes),
``cluster`` (the measuring side's reads and watches, through the product's own Kubernetes
adapter), ``runs`` (the figures), ``probes`` (their helper scripts and probe requests),
``machine`` and ``report`` (docs/benchmarks.md), ``main`` (the command line).
"""
