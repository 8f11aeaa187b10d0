#!/usr/bin/env python3
"""Issue 13.3: settlement ingest side by side (docs/performance.md).

    loadtest/ingest_ab.py ROUNDS EVENTS LABEL=BINARY [LABEL=BINARY ...]

Runs `examples/ingest_rate.rs` binaries (e.g. one built from main, one from
a branch) alternately, ROUNDS times each, with EVENTS events (half of them
usage events, half their consents) against the local PostgreSQL and Redis
(127.0.0.1:6379), and prints per run the events/s of the commit path and of
the stream path, and the CPU time per usage event of the PostgreSQL backends
serving the run's own database (sampled from /proc every 0.2 s) and of the
worker process (the commit path). CPU per event is the figure that a shared
machine disturbs least: events/s falls with the machine's load, CPU per
event much less. Measures only; asserts nothing. BATCH and
INGEST_CONCURRENCY pass through to the example. After each run the run's
Redis keys are unlinked (the example's database is dropped by itself).
"""
import os, re, subprocess, sys, threading, time
TICK = os.sysconf('SC_CLK_TCK')
def cpu(pid):
    try:
        f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK
    except Exception:
        return None
def backends(db):
    out = subprocess.run(['psql', '-h', '127.0.0.1', '-U', 'postgres', '-AtXq', '-c',
                          f"select pid from pg_stat_activity where datname = '{db}'"],
                         capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]
def run(label, binary, events, rnd):
    env = dict(os.environ)
    p = subprocess.Popen([binary, str(events), 'redis://127.0.0.1:6379'], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env)
    db = f'callauth_ingest_bench_{p.pid}'
    seen = {}  # pid -> last cpu
    lines = []
    marks = []
    wmarks = []
    def reader():
        for line in p.stdout:
            lines.append(line)
            if line.startswith(('commit path', 'stream path')):
                marks.append(sum(seen.values()))
                wmarks.append(cpu(p.pid))
    t = threading.Thread(target=reader); t.start()
    t0 = time.strftime('%H:%M:%S', time.gmtime()); la = open('/proc/loadavg').read().split()[:3]
    while p.poll() is None:
        for b in backends(db):
            c = cpu(b)
            if c is not None:
                seen[b] = c
        time.sleep(0.2)
    t.join()
    keys = subprocess.run(['redis-cli', '--scan', '--pattern', '{ingestbench%d:*' % p.pid], capture_output=True, text=True).stdout.split()
    if keys:
        subprocess.run(['redis-cli', 'unlink'] + keys, capture_output=True)
    out = ''.join(lines)
    rate = lambda k: (re.search(k + r' path: (\d+) events in ([\d.]+) s = (\d+) events/s', out))
    c, s = rate('commit'), rate('stream')
    if c and len(marks) >= 1 and not (s and len(marks) == 2):
        n_c = int(c.group(1))
        print(f"round {rnd} {label:6} {t0} load[{' '.join(la)}] commit {int(c.group(3)):6} ev/s ({int(c.group(3))//2:6} usage/s) pg {marks[0]*1e6/(n_c/2):6.1f} worker {wmarks[0]*1e6/(n_c/2):5.1f} us/usage-ev | stream FAILED: {out.splitlines()[1][:80]}", flush=True)
        return
    if not (c and s and len(marks) == 2):
        print(f'round {rnd} {label} FAILED\n{out}'); return
    n_c, n_s = int(c.group(1)), int(s.group(1))
    pg_c = marks[0]; pg_s = marks[1] - marks[0]
    print(f"round {rnd} {label:6} {t0} load[{' '.join(la)}] commit {int(c.group(3)):6} ev/s ({int(c.group(3))//2:6} usage/s) pg {pg_c*1e6/(n_c/2):6.1f} worker {wmarks[0]*1e6/(n_c/2):5.1f} us/usage-ev"
          f" | stream {int(s.group(3)):6} ev/s ({int(s.group(3))//2:6} usage/s) pg {pg_s*1e6/(n_s/2):6.1f} us/usage-ev", flush=True)
rounds, events = int(sys.argv[1]), int(sys.argv[2])
for r in range(1, rounds + 1):
    for lb in sys.argv[3:]:
        label, binary = lb.split('=', 1)
        run(label, binary, events, r)
