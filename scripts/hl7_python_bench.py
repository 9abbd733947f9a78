#!/usr/bin/env python3
"""Times the PyPI `hl7` package (python-hl7) on the corpus of adapters/hl7/benches/parse.rs.

Same messages (every ADT message of the shared samples, segments joined with CR), same
work: parse, then read MSH-9.1/9.2, MSH-10, every PID-3 repetition's components 1, 4, 5,
PID-5.1/5.2, PID-7, PID-8, PID-11.1/11.3/11.5 and PID-29, unescaped. Prints messages/s
(best of several rounds) and the checksum (sum of value lengths) to compare with the
Rust bench's.

    python3 -m venv /tmp/hl7venv && /tmp/hl7venv/bin/pip install hl7
    /tmp/hl7venv/bin/python scripts/hl7_python_bench.py [path/to/shared/data/hl7v2]
"""

import glob
import os
import re
import sys
import time

import hl7

BOUNDARIES = ("MSH", "FHS", "BHS", "BTS", "FTS")


def corpus(root):
    files = sorted(
        glob.glob(os.path.join(root, "microsoft-fhir-converter", "ADT*"))
        + glob.glob(os.path.join(root, "uk-nhs", "*"))
        + [os.path.join(root, "python-hl7", "sample_file1_FHS_BHS_batch.hl7")]
    )
    messages = []
    for path in files:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
        current = None
        for line in re.split(r"\r|\n", text):
            if not line.strip(" \t"):
                continue
            boundary = line[:3] in BOUNDARIES and not (len(line) > 3 and line[3].isalnum())
            if boundary:
                if current:
                    messages.append(current)
                current = [line] if line.startswith("MSH") else None
            elif current is not None:
                current.append(line)
        if current:
            messages.append(current)
    return [
        "\r".join(m)
        for m in messages
        if m[0].split(m[0][3])[8].split(m[0][4])[0] == "ADT"
    ]


def get(msg, segment, field, rep=1, comp=1):
    try:
        return msg.extract_field(segment, 1, field, rep, comp, 1)
    except (IndexError, KeyError):
        return ""


def read(text):
    msg = hl7.parse(text)
    n = len(get(msg, "MSH", 9, 1, 1)) + len(get(msg, "MSH", 9, 1, 2))
    n += len(get(msg, "MSH", 10))
    try:
        pid = msg.segment("PID")
    except KeyError:
        return n
    ids = pid[3] if len(pid) > 3 else ""
    for r in range(1, (len(ids) if ids else 0) + 1):
        n += len(get(msg, "PID", 3, r, 1)) + len(get(msg, "PID", 3, r, 4)) + len(get(msg, "PID", 3, r, 5))
    n += len(get(msg, "PID", 5, 1, 1)) + len(get(msg, "PID", 5, 1, 2))
    n += len(get(msg, "PID", 7)) + len(get(msg, "PID", 8))
    n += len(get(msg, "PID", 11, 1, 1)) + len(get(msg, "PID", 11, 1, 3)) + len(get(msg, "PID", 11, 1, 5))
    n += len(get(msg, "PID", 29))
    return n


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data", "hl7v2")
    messages = corpus(root)
    size = sum(len(m.encode("utf-8")) for m in messages)
    checksum = sum(read(m) for m in messages)
    print(
        f"corpus: {len(messages)} ADT messages, {size} bytes (mean {size // len(messages)} bytes); "
        f"checksum python-hl7 {checksum}"
    )
    best = 0.0
    for _ in range(5):
        count = 0
        start = time.perf_counter()
        while time.perf_counter() - start < 2.0:
            for m in messages:
                read(m)
            count += len(messages)
        rate = count / (time.perf_counter() - start)
        best = max(best, rate)
    print(f"python-hl7 {hl7.__version__}: {best:,.0f} messages/s ({best * size / len(messages) / 1e6:.2f} MB/s), best of 5 rounds of 2 s")


if __name__ == "__main__":
    main()
