#!/usr/bin/env python3
"""Breaks an AOF dump (from `DURABLE_AOF_DUMP=<dir> cargo bench -p benches --bench
durable`) down by command and key kind: bytes each costs in the AOF, per transfer.

usage: aof_breakdown.py <file.aof> <transfers>
"""
import re
import sys
from collections import defaultdict


def commands(data):
    i, n = 0, len(data)
    while i < n:
        if data[i:i + 1] == b'#':  # annotations (timestamps)
            i = data.index(b'\r\n', i) + 2
            continue
        if data[i:i + 1] != b'*':
            raise ValueError(f"unexpected byte at {i}: {data[i:i+20]!r}")
        start = i
        j = data.index(b'\r\n', i)
        count = int(data[i + 1:j])
        i = j + 2
        args = []
        for _ in range(count):
            j = data.index(b'\r\n', i)
            length = int(data[i + 1:j])
            i = j + 2
            args.append(data[i:i + length])
            i += length + 2
        yield args, i - start


def kind(key):
    m = re.match(rb'okpay:\{[^}]*\}:?(.*)', key)
    if m:
        return m.group(1).decode(errors='replace') or '(tag)'
    return key[:24].decode(errors='replace')


def main():
    path, transfers = sys.argv[1], int(sys.argv[2])
    data = open(path, 'rb').read()
    total = defaultdict(lambda: [0, 0])  # (cmd, kind) -> [count, bytes]
    detail = defaultdict(lambda: [0, 0])
    sizes = defaultdict(list)
    for args, size in commands(data):
        cmd = args[0].upper().decode()
        k = kind(args[1]) if len(args) > 1 else ''
        t = total[(cmd, k)]
        t[0] += 1
        t[1] += size
        if cmd == 'ZADD':
            members = args[2:]
            for s in range(0, len(members), 2):
                m = members[s + 1]
                detail[('zadd member', k)][0] += 1
                detail[('zadd member', k)][1] += len(m)
                sizes['zadd member ' + k].append(len(m))
        elif cmd == 'HSET':
            for s in range(2, len(args), 2):
                v = args[s + 1]
                detail[('hset value', k)][0] += 1
                detail[('hset value', k)][1] += len(v)
                sizes['hset value ' + k].append(len(v))
        elif cmd == 'XADD':
            detail[('xadd value', k)][0] += 1
            detail[('xadd value', k)][1] += len(args[-1])
    print(f"{path}: {len(data)} bytes, {len(data)/transfers:.1f} per transfer ({transfers} transfers)")
    print(f"{'command':<20}{'key':<12}{'count':>10}{'per tr.':>10}{'bytes':>14}{'B/transfer':>12}{'B/cmd':>9}")
    for (cmd, k), (c, b) in sorted(total.items(), key=lambda kv: -kv[1][1]):
        print(f"{cmd:<20}{k:<12}{c:>10}{c/transfers:>10.3f}{b:>14}{b/transfers:>12.1f}{b/c:>9.1f}")
    print("payloads:")
    for (what, k), (c, b) in sorted(detail.items(), key=lambda kv: -kv[1][1]):
        print(f"  {what:<18}{k:<12}{c:>10}{c/transfers:>10.3f}{b:>14}{b/transfers:>12.1f}{b/c:>9.1f}")
    for name, v in sizes.items():
        v.sort()
        print(f"  sizes {name}: min {v[0]} p50 {v[len(v)//2]} p90 {v[len(v)*9//10]} max {v[-1]}")


main()
