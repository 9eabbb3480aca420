#!/usr/bin/env python3
"""What one history row costs Redis, by layout: a measurement behind the README's
"Where the time goes" (rows are most of Redis's CPU per transfer in the load test).

Starts its own `redis-server` (loopback, a free port, `appendonly yes`,
`appendfsync always`, in a temporary directory), writes the same rows three
ways in transactions of 200 `ZADD`s (as the engine's rows writes do on one
node), and prints one line:

    rows_cost: shard_us=… account_us=… account_hot_us=… list_hot_us=… shard_mib=… account_mib=… list_hot_mib=…

- `shard`: one score-0 sorted set per shard (64), members
  `<account 8 B><key 20 B><body 20 B>` — the engine's layouts 4 and 5 (layout
  5 is one such set per shard and week);
- `account`: one sorted set per account (40,000 accounts, ~10 rows each, so each
  set stays a listpack), members `<key><body>`;
- `account_hot`: the same with 2,000 accounts (~200 rows each: skip lists, as
  in a 15 s load test where every account sends and receives hundreds);
- `list_hot`: those 2,000 accounts' rows `RPUSH`ed to one list each, in write
  order (no ordering work for Redis; a reader would sort and dedupe).

`*_us` is Redis's own CPU (user + system, from `INFO cpu`) per row, fsyncs
included; `*_mib` is `used_memory` after the rows. Bounded: 400,000 rows a
layout. usage: rows_cost.py [rows]
"""
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def resp(*args):
    out = [b'*%d\r\n' % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b'$%d\r\n%s\r\n' % (len(a), a))
    return b''.join(out)


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port))
        self.file = self.sock.makefile('rb')

    def read(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b'+', b':'):
            return rest
        if kind == b'-':
            raise RuntimeError(rest.decode())
        if kind == b'$':
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if kind == b'*':
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError(f'unexpected reply {line!r}')

    def pipe(self, cmds):
        self.sock.sendall(b''.join(resp(*c) for c in cmds))
        return [self.read() for _ in cmds]

    def cpu_s(self):
        info = self.pipe([('INFO', 'cpu')])[0].decode()
        return sum(float(re.search(f'used_cpu_{k}:([0-9.]+)', info).group(1))
                   for k in ('user', 'sys'))

    def used_mib(self):
        info = self.pipe([('INFO', 'memory')])[0].decode()
        return int(re.search(r'used_memory:(\d+)', info).group(1)) / 2**20


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(r, layout, accounts, rows):
    r.pipe([('FLUSHALL',)])
    rng = random.Random(7)
    start, per_tx = r.cpu_s(), 200
    for t in range(rows // per_tx):
        cmds = [('MULTI',)]
        for i in range(per_tx):
            account = rng.randrange(accounts)
            tag = b'okpay:{s%03d}' % (account % 64)
            key = (1_764_404_000_000 + 3 * (t * per_tx + i)).to_bytes(8, 'big') + rng.randbytes(12)
            body = rng.randbytes(20)
            mine = tag + b':h:' + account.to_bytes(8, 'big')
            if layout == 'shard':
                cmds.append(('ZADD', tag + b':hist', 0, account.to_bytes(8, 'big') + key + body))
            elif layout == 'account':
                cmds.append(('ZADD', mine, 0, key + body))
            else:  # 'list': appended in write order, a reader sorts
                cmds.append(('RPUSH', mine, key + body))
        cmds.append(('EXEC',))
        for reply in r.pipe(cmds)[-1]:
            if layout != 'list' and reply != b'1':
                raise RuntimeError(f'ZADD answered {reply!r}')
    return (r.cpu_s() - start) / rows * 1e6, r.used_mib()


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 400_000
    rows = min(rows, 2_000_000)
    port, tmp = free_port(), tempfile.mkdtemp(prefix='rows_cost.')
    server = subprocess.Popen(
        ['redis-server', '--port', str(port), '--bind', '127.0.0.1', '--dir', tmp,
         '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''],
        stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                r = Redis(port)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError('redis-server did not start')
        shard = run(r, 'shard', 40_000, rows)
        account = run(r, 'account', 40_000, rows)
        hot = run(r, 'account', 2_000, rows)
        listed = run(r, 'list', 2_000, rows)
        print(f'rows_cost: shard_us={shard[0]:.2f} account_us={account[0]:.2f} '
              f'account_hot_us={hot[0]:.2f} list_hot_us={listed[0]:.2f} '
              f'shard_mib={shard[1]:.1f} account_mib={account[1]:.1f} '
              f'list_hot_mib={listed[1]:.1f}')
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
