"""`python -m bench`: run the benchmark at BENCH_SCALE (tiny, small, full) and write bench/results/."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.run import SECTIONS, run_bench
from bench.scales import SCALES, scale_from_env

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the bench."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", choices=sorted(SCALES), help="overrides BENCH_SCALE (default small)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json, latest.md and plots go")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    parser.add_argument("--logs", type=Path, help="keep every child process's log in this directory")
    parser.add_argument("--render", action="store_true",
                        help="only redraw latest.md and the plots from the latest.json already in --out")
    args = parser.parse_args(argv)
    if args.render:
        from bench.report import write_all
        from bench.run import load

        write_all(load(args.out / "latest.json"), args.out)
        return
    scale = SCALES[args.scale] if args.scale else scale_from_env()
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    run_bench(scale, args.out, only=only, profile=not args.no_profile, log_dir=args.logs)


if __name__ == "__main__":
    main()
