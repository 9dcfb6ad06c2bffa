"""Summarise py-spy collapsed-stack files (`py-spy record -f raw`): top frames by inclusive and self share.

    .venv/bin/python bench/collapse_top.py FILE [FILE...] [--top 40] [--match substring]
"""
from __future__ import annotations

import argparse
import collections
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("files", nargs="+")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--match", default="", help="only count stacks containing this substring")
    args = p.parse_args(argv)
    incl: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for path in args.files:
        for line in open(path, encoding="utf-8", errors="replace"):
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or (args.match and args.match not in stack):
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            for f in set(frames):
                incl[f] += n
            own[frames[-1]] += n
    print(f"{total} samples")
    print("inclusive:")
    for f, n in incl.most_common(args.top):
        print(f"  {100.0 * n / total:5.1f}%  {f}")
    print("self:")
    for f, n in own.most_common(args.top):
        print(f"  {100.0 * n / total:5.1f}%  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
