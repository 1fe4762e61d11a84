#!/usr/bin/env python3
"""Compares two match files (NDJSON in vigil's match shape) as multisets.

    same_matches.py EXPECTED ACTUAL [--keys FILE]

A match is the same in both when it has the same pattern, key and, for every stage, the
same events in the same order; line order and field order do not matter. Exits 0 when the
multisets are equal, 1 when they differ (printing a summary and a few examples), and with
--keys writes the keys of every differing match, one JSON value per line.
"""
import collections
import json
import sys


def canonical(line):
    match = json.loads(line)
    stages = tuple(sorted(
        (stage, tuple(json.dumps(event, sort_keys=True) for event in events))
        for stage, events in match["match"].items()))
    return (match["pattern"], json.dumps(match["key"]), stages)


def read(path):
    with open(path, encoding="utf-8") as f:
        return collections.Counter(canonical(line) for line in f if line.strip())


def describe(match):
    pattern, key, stages = match
    parts = [f"{stage}: " + ",".join(str(json.loads(e).get("ts")) for e in events)
             for stage, events in stages]
    return f"{pattern} key {key} ({'; '.join(parts)})"


def main(argv):
    if len(argv) not in (3, 5) or (len(argv) == 5 and argv[3] != "--keys"):
        print(__doc__, file=sys.stderr)
        return 2
    expected, actual = read(argv[1]), read(argv[2])
    missing, extra = expected - actual, actual - expected
    if len(argv) == 5:
        with open(argv[4], "w", encoding="utf-8") as f:
            for key in sorted({m[1] for m in missing} | {m[1] for m in extra}):
                print(key, file=f)
    if not missing and not extra:
        print(f"same: {sum(expected.values())} matches")
        return 0
    print(f"differ: {sum(missing.values())} only in {argv[1]}, {sum(extra.values())} only in {argv[2]}")
    for label, group in (("only in expected", missing), ("only in actual", extra)):
        for match in list(group)[:3]:
            print(f"  {label}: {describe(match)}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
