#!/usr/bin/env python3
"""Issue 5's targets from one run: every ratio, and whether it is met.

Usage:
  targets.py --live LIVE.tsv --clone CLONE.tsv [--holes HOLES.tsv]
             [--clones20 CLONES20.txt] [--pgbench PGBENCH.txt]
             [--write-into BENCHMARKS.md --header HEADER.md]

LIVE.tsv, CLONE.tsv and HOLES.tsv are peers.sh's results.tsv files (run.sh
writes them under OUT/live, OUT/clone and OUT/holes); CLONES20.txt and
PGBENCH.txt are what clones20.sh and pgbench.sh print. Each value is the
median of the run's passes, as summarize.py reports it. Ratios are taken
only within one file: the machine is shared and the peers move with it.

Prints a Markdown table (target, number, met) and a last line "N of M
targets met". With --write-into, the text between the markers
  <!-- targets.py: latest run begins -->  and  <!-- targets.py: latest run ends -->
in that file is replaced by HEADER.md's text, the tables of the live and
clone runs (summarize.py's throughput tables) and the targets table; the
rest of the file is left as it is. Exits 1 on unreadable input, 0 otherwise
(a missed target is a result, not an error). Only the standard library.
"""
import argparse
import csv
import re
import statistics
import sys

TARGET = "clonebd"
CLONE_TARGET = "clonebd-clone"
MEMORY_PEER = "nbdkit-memory"
FILE_PEERS = ["nbdkit-file", "qemu-nbd-raw", "qemu-nbd-qcow2", "nbd-server"]
QCOW2_PEER = "qemu-nbd-qcow2"
QEMU_PEERS = ["qemu-nbd-raw", "qemu-nbd-qcow2"]
WORKLOADS = ["seqread", "seqwrite", "randread-qd1", "randread-qd32", "randwrite-qd1",
             "randwrite-qd32", "mc4-randread", "mc4-randwrite", "clone-firstwrite"]
BEGIN = "<!-- targets.py: latest run begins -->"
END = "<!-- targets.py: latest run ends -->"


class Results:
    """Medians per (peer, workload) of one results.tsv (rows with status ok)."""

    def __init__(self, path):
        self.values = {}
        self.peers = []
        self.workloads = []
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                peer, wl = row.get("peer"), row.get("workload")
                if not peer or not wl:
                    continue
                if peer not in self.peers:
                    self.peers.append(peer)
                if wl not in self.workloads:
                    self.workloads.append(wl)
                if row.get("status") != "ok":
                    continue
                try:
                    v = float(row["mbps" if "seq" in wl else "iops"])
                except (KeyError, ValueError):
                    continue
                self.values.setdefault((peer, wl), []).append(v)

    def median(self, peer, wl):
        xs = self.values.get((peer, wl))
        return statistics.median(xs) if xs else None

    def best(self, peers, wl):
        """(value, peer) of the highest median among `peers`, or (None, None)."""
        got = [(self.median(p, wl), p) for p in peers if self.median(p, wl) is not None]
        return max(got) if got else (None, None)


def fmt(v, wl):
    if v is None:
        return "n/a"
    if "seq" in wl:
        return f"{v:,.0f} MB/s"
    return f"{v / 1000:,.1f}k" if v >= 1000 else f"{v:,.0f}"


class Table:
    def __init__(self):
        self.rows = []

    def add(self, target, number, met):
        """met: True, False, or None (no target: shown, not counted)."""
        self.rows.append((target, number, met))

    def ratio(self, target, ours, theirs, their_name, wl, need):
        if ours is None or not theirs:
            self.add(target, f"no result ({fmt(ours, wl)} vs {fmt(theirs, wl)} {their_name})", False)
            return
        r = ours / theirs
        # 0.996 is not met and must not print as 1.00
        shown = f"{r:.3f}" if need is not None and r < need <= round(r, 2) else f"{r:.2f}"
        self.add(target, f"{fmt(ours, wl)} vs {fmt(theirs, wl)} ({their_name}): **{shown}**",
                 r >= need if need is not None else None)

    def markdown(self):
        out = ["| target | number | met |", "|---|---|---|"]
        for target, number, met in self.rows:
            mark = {True: "yes", False: "**no**", None: "(no target)"}[met]
            out.append(f"| {target} | {number} | {mark} |")
        counted = [m for _, _, m in self.rows if m is not None]
        out.append("")
        out.append(f"{sum(counted)} of {len(counted)} targets met")
        return "\n".join(out)


def live_targets(t, live):
    for wl in WORKLOADS:
        if wl not in live.workloads:
            continue
        ours = live.median(TARGET, wl)
        best, who = live.best(FILE_PEERS, wl)
        t.ratio(f"live {wl} ≥ 1.0× best file peer", ours, best, who or "no file peer", wl, 1.0)
    for wl in WORKLOADS:
        if wl not in live.workloads:
            continue
        t.ratio(f"live {wl} ≥ 0.8× {MEMORY_PEER}", live.median(TARGET, wl),
                live.median(MEMORY_PEER, wl), MEMORY_PEER, wl, 0.8)


def clone_targets(t, clone):
    wl = "clone-firstwrite"
    t.ratio(f"clone {wl} ≥ 2× {QCOW2_PEER}", clone.median(CLONE_TARGET, wl),
            clone.median(QCOW2_PEER, wl), QCOW2_PEER, wl, 2.0)
    for wl in WORKLOADS:
        if wl == "clone-firstwrite" or wl not in clone.workloads:
            continue
        t.ratio(f"clone {wl} vs {QCOW2_PEER}", clone.median(CLONE_TARGET, wl),
                clone.median(QCOW2_PEER, wl), QCOW2_PEER, wl, None)


def hole_targets(t, holes):
    for wl in holes.workloads:
        if not wl.startswith("hole-"):
            continue
        best, who = holes.best(QEMU_PEERS, wl)
        t.ratio(f"{wl} (never-written ranges) ≥ qemu-nbd", holes.median(TARGET, wl), best,
                who or "no qemu-nbd", wl, 1.0)


def clones20_targets(t, text):
    m = re.search(r"ratio clones/single: ([0-9.]+)", text)
    agg = re.findall(r"^\| (clones|single) \| \d+ \| (\d+) \|", text, re.M)
    p99 = re.search(r"^\| clones \| \d+ \| \d+ \| \d+ \| \d+ \| (\d+) \| (\d+) \|", text, re.M)
    detail = ", ".join(f"{k} {int(v):,} IOPS" for k, v in agg)
    if p99:
        detail += f"; per-clone p99 worst {int(p99.group(1)) / 1000:.0f} ms, median {int(p99.group(2)) / 1000:.0f} ms"
    if m:
        r = float(m.group(1))
        t.add("20 clones ≥ 0.9× one volume (aggregate IOPS)", f"**{r:.3f}** ({detail})", r >= 0.9)
    else:
        t.add("20 clones ≥ 0.9× one volume (aggregate IOPS)", "no ratio in clones20 output", False)
    hwm = re.search(r"after clones phase (\d+) MiB, end (\d+) MiB", text)
    if hwm:
        peak = max(int(hwm.group(1)), int(hwm.group(2)))
        t.add("server RSS < 1 GiB (20 clones)", f"peak {peak} MiB", peak < 1024)


def pgbench_targets(t, text):
    header = None
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| export"):
            header = cells
        elif header and line.startswith("| ") and not line.startswith("|---"):
            rows[cells[0]] = dict(zip(header, cells))
    for name in ("clonebd-live", "clonebd-clone"):
        row = rows.get(name)
        for peer in ("qemu-raw", "qemu-qcow2"):
            target = f"pgbench TPS, {name} ≥ {peer}"
            try:
                r = float(row[f"vs {peer}"])
            except (TypeError, KeyError, ValueError):
                t.add(target, "no result", False)
                continue
            t.add(target, f"{row['TPS (median)']} TPS: **{r:.2f}**", r >= 1.0)
    hwm = re.search(r"peak RSS \(VmHWM\): (\d+) MiB", text)
    if hwm:
        peak = int(hwm.group(1))
        t.add("server RSS < 1 GiB (pgbench)", f"peak {peak} MiB", peak < 1024)


def throughput_table(res, peers_first):
    """summarize.py's throughput table, medians with (±half spread)."""
    wls = [w for w in WORKLOADS if w in res.workloads] + \
        [w for w in res.workloads if w not in WORKLOADS]
    peers = [p for p in peers_first if p in res.peers] + [p for p in res.peers if p not in peers_first]
    out = ["| peer | " + " | ".join(wls) + " |", "|---|" + "---:|" * len(wls)]
    for p in peers:
        cells = []
        for w in wls:
            xs = res.values.get((p, w))
            if not xs:
                cells.append("n/a")
                continue
            m = statistics.median(xs)
            cell = fmt(m, w).replace(" MB/s", "")
            if len(xs) > 1 and m:
                cell += f" (±{(max(xs) - min(xs)) / m * 50:.0f}%)"
            cells.append(cell)
        out.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def write_into(path, text):
    with open(path) as fh:
        doc = fh.read()
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no '{BEGIN}' ... '{END}' markers")
    doc = doc[: start + len(BEGIN)] + "\n" + text.rstrip("\n") + "\n" + doc[end:]
    with open(path, "w") as fh:
        fh.write(doc)


def main(argv):
    ap = argparse.ArgumentParser(description="Issue 5's targets from one benchmark run.")
    ap.add_argument("--live", required=True)
    ap.add_argument("--clone", required=True)
    ap.add_argument("--holes")
    ap.add_argument("--clones20")
    ap.add_argument("--pgbench")
    ap.add_argument("--write-into")
    ap.add_argument("--header")
    a = ap.parse_args(argv)
    try:
        live, clone = Results(a.live), Results(a.clone)
        holes = Results(a.holes) if a.holes else None
        clones20 = open(a.clones20).read() if a.clones20 else None
        pgbench = open(a.pgbench).read() if a.pgbench else None
        header = open(a.header).read() if a.header else ""
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        print(f"targets.py: {e}", file=sys.stderr)
        return 1
    t = Table()
    live_targets(t, live)
    clone_targets(t, clone)
    if holes:
        hole_targets(t, holes)
    if clones20 is not None:
        clones20_targets(t, clones20)
    if pgbench is not None:
        pgbench_targets(t, pgbench)
    table = t.markdown()
    print(table)
    if a.write_into:
        order = [MEMORY_PEER] + FILE_PEERS + [TARGET, CLONE_TARGET]
        parts = [header.rstrip("\n"), "", "Live volume:", "", throughput_table(live, order), "",
                 "Clone against the qcow2 overlay:", "", throughput_table(clone, order), ""]
        if holes:
            parts += ["Never-written ranges:", "", throughput_table(holes, order), ""]
        parts += ["Targets (issue 5), as `benches/scripts/targets.py` reads them from this run:", "",
                  table]
        try:
            write_into(a.write_into, "\n".join(parts).lstrip("\n"))
        except (OSError, ValueError) as e:
            print(f"targets.py: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
