"""`python -m scripts.fuzz [--scale N] [--examples M]`: the hostile-input tests, longer and
random.

`make test` runs the property tests derandomized and schemathesis at a modest budget, so CI
is deterministic. This runs the same tests with random seeds, N times the examples, and
schemathesis with every phase (examples, coverage, fuzzing, stateful) at M examples per
operation, printing the seeds so a failure can be replayed.
"""

import argparse
import os
import random
import subprocess
import sys

TESTS = [
    "tests/ingest/test_properties.py",
    "tests/ingest/test_hostile.py",
    "tests/reads/test_extremes.py",
    "tests/reads/test_aggregates.py",
    "tests/test_openapi.py",
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.fuzz", description=__doc__)
    parser.add_argument("--scale", type=int, default=20, help="times the examples of make test")
    parser.add_argument("--examples", type=int, default=200, help="schemathesis, per operation")
    parser.add_argument("--seed", type=int, default=random.randrange(2**32))
    args = parser.parse_args()
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": "random",
        "HYPOTHESIS_SCALE": str(args.scale),
        "SCHEMATHESIS_MAX_EXAMPLES": str(args.examples),
        "SCHEMATHESIS_PHASES": "examples,coverage,fuzzing,stateful",
        "SCHEMATHESIS_SEED": str(args.seed),
        "SCHEMATHESIS_TIMEOUT_S": "3600",
    }
    print(f"fuzz: hypothesis x{args.scale}, schemathesis seed {args.seed}", file=sys.stderr)
    command = [sys.executable, "-m", "pytest", "-q", f"--hypothesis-seed={args.seed}", *TESTS]
    wrapped = [sys.executable, "-m", "scripts.services", "exec", "--", *command]
    raise SystemExit(subprocess.call(wrapped, env=env))


if __name__ == "__main__":
    main()
