#!/usr/bin/env python3
"""Soak test of `vigil serve`: a steady event rate for a long time, with rule hot reloads.

    load-tests/soak.py [--build DIR] [--duration 30m] [--rate 2000] [--reload-every 5]
                       [--sample-every 10] [--out DIR] [--check]

Starts `vigil serve` with every sample rule in patterns/, posts a generated stream at a
fixed rate with vigil-http-load, replaces one of the rules (round robin, a new version each
time) every few seconds, and samples the server every interval: resident memory, open file
descriptors, partial matches held (from /metrics), alerts and their ingest-to-alert latency
(p50, p99) over the interval. Writes OUT/soak.csv and, when gnuplot is installed, the plot
OUT/soak.png.

With --check (the CI setting) it exits 1 unless the server stayed up, answered every post
with 202 and every reload with 200, and its open files stayed flat (within 8 of the first
sample after warm-up).
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = ["card-testing", "impossible-travel", "account-takeover", "velocity", "brute-force"]


def duration_seconds(text):
    match = re.fullmatch(r"(\d+)(s|m|h)?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text}")
    return int(match.group(1)) * {None: 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def find(build, name):
    for candidate in (f"{build}/{name}", f"{build}/src/app/{name}", f"{build}/load-tests/{name}"):
        if os.access(candidate, os.X_OK):
            return candidate
    sys.exit(f"soak: no {name} under {build} (build vigil first, or pass --build)")


def request(port, method, path, body=None, content_type=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def process_sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def partial_matches(port):
    status, text = request(port, "GET", "/metrics")
    if status != 200:
        return -1
    return sum(int(float(line.rsplit(" ", 1)[1]))
               for line in text.splitlines() if line.startswith("vigil_nfa_partial_matches{"))


class AlertReader:
    """Latency of the alerts appended since the last call (the alerts file is rotated by
    size, so rotated files are followed by inode)."""

    def __init__(self, path):
        self.path = path
        self.offsets = {}  # inode -> bytes read

    def new_latencies(self):
        latencies = []
        names = [self.path] + glob.glob(glob.escape(self.path) + ".*")
        for name in names:
            try:
                inode = os.stat(name).st_ino
                with open(name, "rb") as f:
                    f.seek(self.offsets.get(inode, 0))
                    data = f.read()
            except FileNotFoundError:
                continue
            complete = data[:data.rfind(b"\n") + 1]
            self.offsets[inode] = self.offsets.get(inode, 0) + len(complete)
            for line in complete.splitlines():
                alert = json.loads(line)
                stages = [events for events in alert["match"].values() if events]
                last = stages[-1][-1] if stages else {}
                if "sent_at" in last and not alert.get("timeout"):
                    latencies.append(alert["detected_at"] - last["sent_at"])
        return sorted(latencies)


def rank(values, p):
    return values[max(0, math.ceil(p * len(values)) - 1)] if values else ""


def plot(csv_path, png_path, title):
    if not shutil.which("gnuplot"):
        print("soak: gnuplot not installed (Debian: gnuplot-nox); no plot", file=sys.stderr)
        return
    script = f"""
set terminal pngcairo size 1200,900 font ",10"
set output "{png_path}"
set datafile separator ","
set key autotitle columnhead
set multiplot layout 4,1 title "{title}"
set xlabel "minutes"
set yrange [0:*]
set ylabel "MB"
plot "{csv_path}" using ($1/60):2 with lines lw 2 title "resident memory"
set ylabel "files"
plot "{csv_path}" using ($1/60):3 with lines lw 2 title "open file descriptors"
set ylabel "partial matches"
plot "{csv_path}" using ($1/60):4 with lines lw 2 title "partial matches held"
set ylabel "ms"
plot "{csv_path}" using ($1/60):6 with lines lw 2 title "alert latency p50", \\
     "{csv_path}" using ($1/60):7 with lines lw 2 title "alert latency p99"
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build/release"))
    parser.add_argument("--duration", type=duration_seconds, default="30m")
    parser.add_argument("--rate", type=int, default=2000, help="events per second")
    parser.add_argument("--reload-every", type=float, default=5, help="seconds between rule reloads")
    parser.add_argument("--sample-every", type=float, default=10, help="seconds between samples")
    parser.add_argument("--keys", type=int, default=50000)
    parser.add_argument("--out", default=None, help="directory for soak.csv and soak.png")
    parser.add_argument("--check", action="store_true", help="fail unless the run stayed healthy")
    args = parser.parse_args()

    vigil = find(args.build, "vigil")
    generator = find(args.build, "vigil-generate")
    http_load = find(args.build, "vigil-http-load")
    out = args.out or tempfile.mkdtemp(prefix="vigil-soak-")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="vigil-soak-data-")
    events = os.path.join(work, "events.ndjson")
    # 50 ms of event time per event on average: at 2000 events/s, an hour of event time
    # passes in 36 s, so every rule's windows open and close many times over.
    with open(events, "w") as f:
        subprocess.run([generator, "--events", str(args.rate * (args.duration + 30)), "--keys",
                        str(args.keys), "--seed", "7", "--fraud-rate", "0.002", "--max-step-ms", "100"],
                       stdout=f, check=True)

    processes = []
    try:
        return run(args, vigil, http_load, events, work, out, processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


def run(args, vigil, http_load, events, work, out, processes):
    """The run itself; every process it starts goes into `processes`, for main to stop."""
    server = subprocess.Popen([vigil, "serve", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "data"),
                               "--patterns-dir", os.path.join(ROOT, "patterns")],
                              stdout=subprocess.PIPE, text=True)
    processes.append(server)
    port = int(server.stdout.readline().rsplit(":", 1)[1])
    load = subprocess.Popen([http_load, "--port", str(port), "--events", events, "--rate", str(args.rate),
                             "--batch", "200", "--connections", "2", "--duration", str(args.duration)],
                            stdout=subprocess.PIPE, text=True)
    processes.append(load)
    sources = {rule: open(os.path.join(ROOT, "patterns", rule + ".yaml"), "rb").read() for rule in RULES}
    alerts = AlertReader(os.path.join(work, "data", "alerts.ndjson"))
    csv_path = os.path.join(out, "soak.csv")
    failures = []
    reloads = 0
    samples = []
    start = time.monotonic()
    next_reload = start + args.reload_every
    next_sample = start + args.sample_every
    with open(csv_path, "w") as csv:
        print("seconds,rss_mb,open_files,partial_matches,alerts,latency_p50_ms,latency_p99_ms,reloads", file=csv)
        while load.poll() is None:
            now = time.monotonic()
            if server.poll() is not None:
                failures.append(f"the server exited with status {server.returncode}")
                break
            if now >= next_reload:
                rule = RULES[reloads % len(RULES)]
                body = sources[rule] + f"\n# reload {reloads}\n".encode()
                status, text = request(port, "PUT", f"/patterns/{rule}", body, "application/yaml")
                if status != 200:
                    failures.append(f"reload {reloads} of {rule}: {status} {text[:200]}")
                reloads += 1
                next_reload += args.reload_every
            if now >= next_sample:
                rss_mb, files = process_sample(server.pid)
                latencies = alerts.new_latencies()
                row = (round(now - start), round(rss_mb, 1), files, partial_matches(port), len(latencies),
                       rank(latencies, 0.5), rank(latencies, 0.99), reloads)
                samples.append(row)
                print(",".join(map(str, row)), file=csv, flush=True)
                next_sample += args.sample_every
            time.sleep(0.05)
    if load.poll() is None:  # the server fell over first
        load.kill()
    summary = load.stdout.read()
    load.wait()
    if load.returncode != 0 and not failures:
        failures.append(f"vigil-http-load exited with {load.returncode}: {summary.strip()}")
    server.terminate()
    server.wait()
    plot(csv_path, os.path.join(out, "soak.png"),
         f"vigil serve soak: {args.rate} events/s, all sample rules, a rule replaced every {args.reload_every:g} s")

    print(f"soak: {len(samples)} samples, {reloads} reloads; {csv_path}")
    if samples:
        warm = samples[len(samples) // 3:] or samples
        print(f"soak: resident memory {min(r[1] for r in warm)}-{max(r[1] for r in warm)} MB, "
              f"open files {min(r[2] for r in warm)}-{max(r[2] for r in warm)} after the first third")
        if args.check and max(r[2] for r in warm) > warm[0][2] + 8:
            failures.append("open files grew: " + ", ".join(str(r[2]) for r in warm))
    for failure in failures:
        print("soak: FAILED: " + failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
