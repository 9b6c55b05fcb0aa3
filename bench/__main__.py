"""`python -m bench [NAME…]`: run benchmarks, then regenerate docs/BENCHMARKS.md from the JSON."""

import argparse
import importlib
import sys
import time

from bench.common import BENCHMARKS, load
from bench.render import render

# Run only when named: bench/chaos takes about 40 minutes (its results still render).
LONG = ["chaos"]


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (all by default) and rewrite docs/BENCHMARKS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {BENCHMARKS + LONG}")
    parser.add_argument("--render-only", action="store_true", help="only rebuild the doc")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BENCHMARKS + LONG)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS + LONG}")
    if not args.render_only:
        for name in args.names or BENCHMARKS:
            print(f"== bench/{name} (load average {load()})", flush=True)
            started = time.monotonic()
            importlib.import_module(f"bench.{name}").main([])
            print(f"== bench/{name} took {time.monotonic() - started:.0f} s", flush=True)
    path = render()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
