#!/usr/bin/env python3
"""Deterministic, seeded corpus generator for the benchmarks of SPEC section 6.

    gen_corpus.py [--dir DIR] [--seed N] S|M|L|K100|K200|K400 ...     generate corpora (skips finished ones)
    gen_corpus.py change TREE [--seed N] [--percent P] modify P % of TREE's files in place

Corpora (under DIR, default bench/corpus/, git-ignored):

  S  20,000 files in 400 directories d0000..d0399 (50 files each),
     sizes log-uniform between 100 B and 64 KiB: mean (65536-100)/ln(655.36) = 10.1 kB,
     total about 202 MB.
  M  200,000 files in 2,000 directories (100 files each), sizes log-uniform between 100 B and
     4 KiB: mean (4096-100)/ln(40.96) = 1.08 kB, total about 215 MB (about 800 MB on disk,
     one 4 KiB block per file).
  L  8 files of exactly 64 MiB (512 MiB).
  K100, K200, K400  100,000, 200,000 and 400,000 files, 100 per directory, sizes
     log-uniform between 100 B and 1 KiB: the scale rows (peak memory against the number
     of files).

Content is pseudo-random bytes from Python's seeded Mersenne twister (random.Random), so the
same seed always yields byte-identical trees, and content does not compress (no tool gains from
it). Every file gets a fixed mtime (2023-11-14 + index seconds) and mode 0644, directories 0755,
so that the corpora are identical across machines and runs, not only in content.

A finished corpus is marked by DIR/<name>.done (holding its parameters); an unfinished one (no
marker) is removed and regenerated.

`change` picks round(P % of the files) of TREE (sorted by path, chosen with a seeded RNG, so
the same files on every run for the same tree), gives each new pseudo-random content whose size
is the old size scaled by a factor in [0.5, 1.5] (clamped to 100 B .. 64 KiB; about half the
files grow, half shrink), and a new mtime (2024-01-01 + index seconds). It prints one JSON
line: {"files": n, "bytes_changed": sum of the new sizes, "bytes_before": sum of the old sizes}.
`bytes_changed` is what a whole-file copy of the changed files must write; the versioned row
of bench/run.sh compares the bytes a pass copies against it.
"""

import argparse
import json
import math
import os
import random
import shutil
import sys

FILE_MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
CHANGE_MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z

CORPORA = {
    # name: (files, directories, min size, max size)
    "S": (20_000, 400, 100, 64 * 1024),
    "M": (200_000, 2_000, 100, 4 * 1024),
    # The scale rows (issue 17): the same shape, 100 files per directory, small files.
    "K100": (100_000, 1_000, 100, 1024),
    "K200": (200_000, 2_000, 100, 1024),
    "K400": (400_000, 4_000, 100, 1024),
}
L_FILES = 8
L_SIZE = 64 << 20


def log_uniform(rng, lo, hi):
    """A size between lo and hi (inclusive) with log-uniform density."""
    return min(hi, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))


def write_file(path, data, mtime):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    os.utime(path, (mtime, mtime))


def gen_tree(root, name, seed):
    files, dirs, lo, hi = CORPORA[name]
    rng = random.Random(f"{seed}-{name}")
    per_dir = files // dirs
    total = 0
    index = 0
    os.makedirs(root)
    for d in range(dirs):
        dpath = os.path.join(root, f"d{d:04d}")
        os.mkdir(dpath)
        for f in range(per_dir):
            size = log_uniform(rng, lo, hi)
            write_file(os.path.join(dpath, f"f{f:03d}.bin"), rng.randbytes(size), FILE_MTIME + index)
            total += size
            index += 1
        os.chmod(dpath, 0o755)
        os.utime(dpath, (FILE_MTIME, FILE_MTIME))
    os.utime(root, (FILE_MTIME, FILE_MTIME))
    return {"files": index, "dirs": dirs, "bytes": total}


def gen_l(root, seed):
    rng = random.Random(f"{seed}-L")
    os.makedirs(root)
    for i in range(L_FILES):
        write_file(os.path.join(root, f"big{i}.bin"), rng.randbytes(L_SIZE), FILE_MTIME + i)
    return {"files": L_FILES, "dirs": 0, "bytes": L_FILES * L_SIZE}


def generate(base, name, seed):
    root = os.path.join(base, name)
    marker = os.path.join(base, f"{name}.done")
    wanted = {"name": name, "seed": seed}
    if os.path.exists(marker):
        with open(marker) as f:
            done = json.load(f)
        if {k: done.get(k) for k in wanted} == wanted and os.path.isdir(root):
            print(f"{name}: present ({done['files']} files, {done['bytes']} bytes)", file=sys.stderr)
            return
        os.remove(marker)
    if os.path.exists(root):
        shutil.rmtree(root)
    print(f"{name}: generating under {root} ...", file=sys.stderr)
    info = gen_l(root, seed) if name == "L" else gen_tree(root, name, seed)
    info.update(wanted)
    with open(marker, "w") as f:
        json.dump(info, f)
    print(f"{name}: {info['files']} files, {info['bytes']} bytes", file=sys.stderr)


def all_files(tree):
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in filenames:
            out.append(os.path.join(dirpath, name))
    out.sort(key=lambda p: os.fsencode(os.path.relpath(p, tree)))
    return out


def change(tree, seed, percent):
    files = all_files(tree)
    n = max(1, round(len(files) * percent / 100))
    rng = random.Random(f"{seed}-change")
    picked = sorted(rng.sample(range(len(files)), n))
    changed = before = 0
    for i, k in enumerate(picked):
        path = files[k]
        old = os.path.getsize(path)
        size = max(100, min(64 * 1024, int(old * rng.uniform(0.5, 1.5))))
        data = rng.randbytes(size)
        # Replace by rename, so a tree that shares inodes with another (cp -al) stays intact.
        tmp = path + ".gen-tmp"
        write_file(tmp, data, CHANGE_MTIME + i)
        os.rename(tmp, path)
        changed += size
        before += old
    print(json.dumps({"files": n, "bytes_changed": changed, "bytes_before": before}))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    if len(sys.argv) > 1 and sys.argv[1] == "change":
        p = argparse.ArgumentParser(prog="gen_corpus.py change")
        p.add_argument("tree")
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--percent", type=float, default=1.0)
        a = p.parse_args(sys.argv[2:])
        change(a.tree, a.seed, a.percent)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=os.path.join(here, "corpus"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("corpora", nargs="*", default=["S", "M", "L"], choices=["S", "M", "L", "K100", "K200", "K400"])
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    for name in a.corpora:
        generate(a.dir, name, a.seed)


if __name__ == "__main__":
    main()
