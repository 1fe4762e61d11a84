#!/usr/bin/env python3
"""Times how long `vigil serve` takes to consume and commit a topic filled beforehand.

usage: kafka_drain_time.py PORT EVENTS

Polls /metrics every 20 ms on one keep-alive connection (a curl process per poll took a tenth
of this 2-core machine from the vigil being measured). Prints the seconds from the first record
read to the commit of the last of EVENTS records, and the alerts written by then.
"""
import http.client
import sys
import time


def metrics(conn):
    conn.request("GET", "/metrics")
    values = {}
    for line in conn.getresponse().read().decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = value
    return values


def main():
    port, events = int(sys.argv[1]), int(sys.argv[2])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    first = None
    while True:
        m = metrics(conn)
        records = int(m.get("vigil_kafka_records_in_total", "0"))
        if first is None and records > 0:
            first = time.monotonic()
        # Everything read, matched, and its output and offsets committed.
        if records >= events and int(m["vigil_kafka_committed_input_position"]) >= int(m["vigil_input_position"]):
            break
        time.sleep(0.02)
    alerts = m.get('vigil_kafka_records_out_total{topic="alerts"}', "0")
    print(f"{time.monotonic() - first:.2f} {alerts}")


if __name__ == "__main__":
    main()
