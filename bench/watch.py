#!/usr/bin/env python3
"""Watch-mode benchmark (the watch issue): how long a change takes to reach the other side,
what an idle watcher costs, and how much memory a watcher of a large tree holds.

    python3 bench/watch.py --oneway BIN --twoway BIN --tree DIR [--large DIR] [--edits 20]
                           [--idle 60] [--work DIR]

- latency: the watcher runs on a copy of TREE (`oneway SRC DST --watch`, and
  `twoway A B --watch --no-recovery`); after its first pass, one file is rewritten EDITS
  times (0.5 s apart, each a new burst) and the time until the other side holds the new bytes
  is measured (the other side is read every 2 ms). Median and p95, target p95 <= 1 s.
- idle CPU: user + system CPU seconds the watcher process used over IDLE quiet seconds, with
  `--interval 3600` so that no full pass falls inside (target < 0.1 s per 10 s).
- peak RSS: VmHWM of `oneway LARGE DST --watch` after its first pass and a few changes.

Prints one JSON object per measurement on stdout; progress goes to stderr.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def say(*args):
    print("[watch]", *args, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def wait_until(pred, timeout, step=0.002):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def holds(path, content):
    try:
        with open(path, "rb") as f:
            return f.read() == content
    except OSError:
        return False


def start(cmd, log):
    say("starting", " ".join(cmd))
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def first_file(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            return os.path.relpath(os.path.join(dirpath, name), root)
    raise SystemExit(f"no file in {root}")


def latency(name, cmd, src, dst, rel, edits, log):
    """Rewrites src/rel `edits` times; returns the seconds until dst/rel held each version."""
    proc = start(cmd, log)
    try:
        # The first full pass is over when the other side holds the file.
        with open(os.path.join(src, rel), "rb") as f:
            original = f.read()
        if not wait_until(lambda: holds(os.path.join(dst, rel), original), 600, 0.05):
            raise SystemExit(f"{name}: the first pass did not finish")
        time.sleep(1.0)
        seconds = []
        for i in range(edits):
            content = f"edit {i} at {time.time()}\n".encode() * 64
            t0 = time.monotonic()
            with open(os.path.join(src, rel), "wb") as f:
                f.write(content)
            if not wait_until(lambda: holds(os.path.join(dst, rel), content), 30):
                raise SystemExit(f"{name}: edit {i} did not arrive within 30 s")
            seconds.append(time.monotonic() - t0)
            time.sleep(0.5)
        return seconds
    finally:
        stop(proc)


def idle_cpu(name, cmd, src, dst, rel, idle, log):
    proc = start(cmd, log)
    try:
        with open(os.path.join(src, rel), "rb") as f:
            original = f.read()
        if not wait_until(lambda: holds(os.path.join(dst, rel), original), 600, 0.05):
            raise SystemExit(f"{name}: the first pass did not finish")
        time.sleep(2.0)
        before = cpu_seconds(proc.pid)
        time.sleep(idle)
        return cpu_seconds(proc.pid) - before
    finally:
        stop(proc)


def summary(seconds):
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"median_s": round(statistics.median(ordered), 4), "p95_s": round(p95, 4), "runs": len(ordered)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oneway", required=True)
    ap.add_argument("--twoway", required=True)
    ap.add_argument("--tree", required=True, help="the tree to watch (copied first)")
    ap.add_argument("--large", help="a large tree for the peak RSS (not copied)")
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--idle", type=int, default=60)
    ap.add_argument("--work", help="scratch directory (default: a temporary one)")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="watch.", dir=args.work)
    log = os.path.join(work, "watch.log")
    try:
        src = os.path.join(work, "src")
        say("copying", args.tree)
        shutil.copytree(args.tree, src, symlinks=True)
        rel = first_file(src)

        dst = os.path.join(work, "dst")
        cmd = [args.oneway, src, dst, "--watch", "--interval", "3600", "--log", log]
        print(json.dumps({"case": "oneway --watch latency", **summary(latency("oneway", cmd, src, dst, rel, args.edits, log))}), flush=True)
        cpu = idle_cpu("oneway", cmd, src, dst, rel, args.idle, log)
        print(json.dumps({"case": "oneway --watch idle CPU", "idle_s": args.idle, "cpu_s": round(cpu, 4)}), flush=True)

        b, home = os.path.join(work, "b"), os.path.join(work, "home")
        os.mkdir(b)
        cmd = [args.twoway, src, b, "--home", home, "--watch", "--interval", "3600", "--no-recovery", "--log", log]
        print(json.dumps({"case": "twoway --watch latency", **summary(latency("twoway", cmd, src, b, rel, args.edits, log))}), flush=True)
        cpu = idle_cpu("twoway", cmd, src, b, rel, args.idle, log)
        print(json.dumps({"case": "twoway --watch idle CPU", "idle_s": args.idle, "cpu_s": round(cpu, 4)}), flush=True)

        if args.large:
            large_dst = os.path.join(work, "large-dst")
            rel = first_file(args.large)
            cmd = [args.oneway, args.large, large_dst, "--watch", "--interval", "3600", "--log", log]
            proc = start(cmd, log)
            try:
                with open(os.path.join(args.large, rel), "rb") as f:
                    original = f.read()
                if not wait_until(lambda: holds(os.path.join(large_dst, rel), original), 1800, 0.1):
                    raise SystemExit("large: the first pass did not finish")
                time.sleep(2.0)
                rss = peak_rss_kib(proc.pid)
            finally:
                stop(proc)
            print(json.dumps({"case": "oneway --watch peak RSS on the large tree", "peak_rss_kib": rss}), flush=True)
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
