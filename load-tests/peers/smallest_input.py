#!/usr/bin/env python3
"""Shrinks an input on which two engines disagree to a smallest one that still shows it.

    smallest_input.py --events FILE --key KEY --work DIR --vigil CMD --peer CMD

CMD is a shell command with {events} and {out} in it: it runs one engine on the events file
and writes its matches to the out file. The search starts from the events of one key (a
rule's matches depend only on its key's events) and removes chunks of events, then single
events, while the two engines still disagree (the ddmin algorithm of Zeller and
Hildebrandt), within a budget of engine runs. It writes DIR/smallest.ndjson, the two
engines' matches on it beside it, and prints its path.
"""
import argparse
import collections
import json
import os
import shlex
import subprocess
import sys

from same_matches import canonical


def matches(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return collections.Counter(canonical(line) for line in f if line.strip())


class Search:
    def __init__(self, args):
        self.args = args
        self.runs = 0

    def run(self, name, lines):
        events = os.path.join(self.args.work, "candidate.ndjson")
        out = os.path.join(self.args.work, f"{name}.ndjson")
        with open(events, "w", encoding="utf-8") as f:
            f.writelines(lines)
        if os.path.exists(out):
            os.remove(out)
        command = getattr(self.args, name).format(events=shlex.quote(events), out=shlex.quote(out))
        subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return matches(out)

    def differ(self, lines):
        self.runs += 1
        return self.run("vigil", lines) != self.run("peer", lines)


def ddmin(search, lines, budget):
    chunks = 2
    while len(lines) >= 2 and search.runs < budget:
        size = -(-len(lines) // chunks)
        for start in range(0, len(lines), size):
            rest = lines[:start] + lines[start + size:]
            if rest and search.differ(rest):
                lines = rest
                chunks = max(chunks - 1, 2)
                break
            if search.runs >= budget:
                break
        else:
            if chunks >= len(lines):
                break
            chunks = min(len(lines), chunks * 2)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", required=True)
    parser.add_argument("--key", required=True, help="JSON value of the key")
    parser.add_argument("--key-field", default="card_id")
    parser.add_argument("--work", required=True)
    parser.add_argument("--vigil", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--budget", type=int, default=60, help="most engine-pair runs")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    key = json.loads(args.key)
    with open(args.events, encoding="utf-8") as f:
        lines = [line for line in f if line.strip() and json.loads(line).get(args.key_field) == key]
    search = Search(args)
    if not search.differ(lines):
        print(f"the engines agree on key {args.key} alone: the difference needs other keys' events;"
              f" the whole input {args.events} shows it")
        return 0
    lines = ddmin(search, lines, args.budget)
    # One more run leaves the smallest input and both engines' matches on it in the work
    # directory.
    search.differ(lines)
    smallest = os.path.join(args.work, "smallest.ndjson")
    os.replace(os.path.join(args.work, "candidate.ndjson"), smallest)
    print(f"{smallest} ({len(lines)} events, {search.runs} runs; matches in "
          f"{args.work}/vigil.ndjson and {args.work}/peer.ndjson)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
