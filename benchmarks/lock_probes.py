"""False refusals of a run's lock while other processes probe it (``RunStore.is_locked``).

Not a speed benchmark: the figure of benchmarks/README.md, *Lock probes*.  One process takes and releases
a run's lock without a pause while ``--probers`` forked processes probe it; nobody else takes the lock, so
every refusal is false (a Recorder open or a sweep's run refused as "being trained by another process"
though only a probe touched it).  The harness is the tests' (``tests/lock_contention.py``).

``.venv/bin/python benchmarks/lock_probes.py --seconds 2 --repeats 3``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lock_contention import lock_contention  # noqa: E402  (the tests' harness)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    parser.add_argument("--probers", type=int, default=2, help="processes probing the lock")
    parser.add_argument("--repeats", type=int, default=3, help="measurements, each in a new store")
    args = parser.parse_args()
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as root:
            c = lock_contention(Path(root), args.seconds, args.probers)
        print(
            f"{c.takes} takes, {c.refused} refused ({c.refusal_rate:.2%}) against {c.probes} probes "
            f"by {c.probers} processes in {args.seconds:g} s"
        )


if __name__ == "__main__":
    main()
