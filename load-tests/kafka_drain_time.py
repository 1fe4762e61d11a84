#!/usr/bin/env python3
"""Times how long `vigil serve` takes to consume and commit a topic filled beforehand.

usage: kafka_drain_time.py PORT EVENTS [DEADLINE_SECONDS]

Polls /metrics every 20 ms on one keep-alive connection (a curl process per poll took a tenth
of this 2-core machine from the vigil being measured). Prints the seconds from the first record
read to the commit of the last of EVENTS records, and the alerts written by then; exits 1 if
that has not happened within the deadline (default 600 s).
"""
import http.client
import sys
import time


def metrics(port):
    # A new connection per attempt after a failure: the server may be busy for seconds (a
    # commit before a checkpoint) and then answer again.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:
        try:
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
        except (OSError, http.client.HTTPException):
            conn.close()
            time.sleep(0.1)
            continue
        values = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = value
        yield values


def main():
    port, events = int(sys.argv[1]), int(sys.argv[2])
    deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 600)
    first = None
    for m in metrics(port):
        records = int(m.get("vigil_kafka_records_in_total", "0"))
        if first is None and records > 0:
            first = time.monotonic()
        # Everything read, matched, and its output and offsets committed.
        if records >= events and int(m["vigil_kafka_committed_input_position"]) >= int(m["vigil_input_position"]):
            break
        if time.monotonic() > deadline:
            sys.exit(f"kafka_drain_time: {records} of {events} records read before the deadline")
        time.sleep(0.02)
    alerts = m.get('vigil_kafka_records_out_total{topic="alerts"}', "0")
    print(f"{time.monotonic() - first:.2f} {alerts}")


if __name__ == "__main__":
    main()
