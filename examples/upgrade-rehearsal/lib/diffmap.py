#!/usr/bin/python3
"""Attribute the changed byte ranges of `clonebd diff --json` to files.

Usage: diffmap.py DIFF.json MOUNT PGDATA [TOP]

MOUNT is the ext4 file system of the newer snapshot, mounted read-only
(`mount -o ro,noload`); PGDATA is the PostgreSQL data directory inside it.
The physical extents of every file under PGDATA (from `filefrag -e`, which
uses the FIEMAP ioctl) are intersected with the changed ranges, so each
changed byte is charged to the file that holds it.

Prints the TOP (default 6) largest lines as `BYTES<TAB>KEY`, largest first,
where KEY is `base/DBOID/RELFILENODE` for a relation (all its segments and
forks together), `pg_wal` for the WAL, another top-level directory of
PGDATA, or `(in no file: ...)` for bytes in no file (ext4 metadata and
journal, blocks of files deleted since, such as sort spills).
"""

import bisect
import json
import os
import re
import subprocess
import sys

FILE_RE = re.compile(r"^File size of (.+) is \d+ \((\d+) blocks? of (\d+) bytes\)")
EXT_RE = re.compile(r"^\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+):")
REL_RE = re.compile(r"^(base/\d+/\d+)(?:[._].*)?$")


def extents(root):
    """Yields (physical_byte_offset, length_bytes, path relative to root)."""
    paths = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            paths.append(os.path.join(dirpath, f))
    for i in range(0, len(paths), 400):
        out = subprocess.run(
            ["filefrag", "-e"] + paths[i : i + 400],
            check=False,
            capture_output=True,
            text=True,
        ).stdout
        cur, bs = None, 4096
        for line in out.splitlines():
            m = FILE_RE.match(line)
            if m:
                cur, bs = os.path.relpath(m.group(1), root), int(m.group(3))
                continue
            m = EXT_RE.match(line)
            if m and cur is not None:
                start, length = int(m.group(1)), int(m.group(3))
                yield start * bs, length * bs, cur


def key_of(rel):
    m = REL_RE.match(rel)
    if m:
        return m.group(1)
    return rel.split("/", 1)[0]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    diff_path, mount, pgdata = sys.argv[1:4]
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 6
    with open(diff_path) as f:
        diff = json.load(f)
    ranges = sorted((r["offset"], r["length"]) for r in diff["ranges"])
    total = sum(length for _, length in ranges)
    exts = sorted(extents(os.path.join(mount, pgdata)))
    starts = [e[0] for e in exts]
    charged = {}
    for off, length in ranges:
        end = off + length
        # the extent that may start before `off` and reach into the range
        i = max(bisect.bisect_right(starts, off) - 1, 0)
        while i < len(exts) and exts[i][0] < end:
            s, n, path = exts[i]
            lo, hi = max(s, off), min(s + n, end)
            if hi > lo:
                k = key_of(path)
                charged[k] = charged.get(k, 0) + hi - lo
            i += 1
    rest = total - sum(charged.values())
    if rest > 0:
        charged["(in no file: ext4 metadata and journal, deleted files)"] = rest
    for k, v in sorted(charged.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{v}\t{k}")


if __name__ == "__main__":
    main()
