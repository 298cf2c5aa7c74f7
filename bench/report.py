#!/usr/bin/env python3
"""Turn bench/guest.sh results into a table (Markdown) and a record (JSON).

usage: bench/report.py RESULTS_DIR COMMIT   (writes RESULTS_DIR/table.md and
RESULTS_DIR/results.json, prints the table)

Figures per (target, job) are medians over rounds. A ratio pmem-stack/peer is
the median over rounds of the per-round ratio: both were measured in the same
round, minutes apart at most, so host drift hits both alike (the spread of
those per-round ratios is shown as min-max).
"""
import collections
import json
import os
import re
import statistics
import sys

JOB_NAMES = {
    "randread4k": ("4k randread QD32", "IOPS"),
    "randwrite4k": ("4k randwrite QD32", "IOPS"),
    "randread4k-qd1": ("4k randread QD1", "IOPS"),
    "seqread128k": ("128k seq read QD16", "MiB/s"),
    "seqwrite128k": ("128k seq write QD16", "MiB/s"),
    "fsyncwrite4k": ("4k randwrite QD1 fsync=1", "IOPS"),
}
PEERS = ["raw", "dm-linear", "map", "rublk-null", "rublk-loop"]
# pmem-stack's default on /dev/pmem0: what `add` picks with no --io-path
# (the direct path on 6.16+, user copy before: features::choose). Only
# ps-auto measures it on every kernel; a run without it grades nothing.
DEFAULT_TARGET = "ps-auto"


def is_kublk(target):
    return target.startswith("kublk-")


def fail(msg):
    sys.exit("bench/report: FAILED: " + msg)


def load(results):
    meta = {}
    for line in open(os.path.join(results, "meta.env")):
        if "=" in line:
            k, v = line.rstrip("\n").split("=", 1)
            meta[k] = v
    params = dict(kv.split("=", 1) for kv in meta["params"].split())
    wall = float(params["runtime"]) + float(params["ramp"])
    clk_tck = int(meta.get("clk_tck") or os.sysconf("SC_CLK_TCK"))
    runs = collections.defaultdict(dict)  # (target, job) -> {round: record}
    for line in open(os.path.join(results, "fio.tsv")):
        fields = line.split()
        if len(fields) == 10:  # before the window was measured: ramp included
            fields += ["-", "-"]
        rnd, target, job, iops, bw, lat, p50, p99, minflt, ticks, dev_ios, _window = fields
        rec = {"iops": float(iops), "mib_s": int(bw) / 2**20, "lat_mean_us": float(lat) / 1e3,
               "lat_p50_us": int(p50) / 1e3, "lat_p99_us": int(p99) / 1e3}
        if minflt != "-":
            # I/Os while the counters ran: what the device completed in the
            # window (old results: fio's rate over ramp + runtime).
            ios = int(dev_ios) if dev_ios != "-" else float(iops) * wall
            if ios <= 0:
                fail("%s/%s round %s: the device completed no I/O while measured" % (target, job, rnd))
            rec["server_faults_per_io"] = int(minflt) / ios
            rec["server_cpu_us_per_io"] = int(ticks) / clk_tck * 1e6 / ios
        runs[(target, job)][int(rnd)] = rec
    mem = collections.defaultdict(list)
    for line in open(os.path.join(results, "mem.tsv")):
        rnd, target, pid, rss, hwm, anon, filek, shmem, cpu, minflt, majflt, threads = line.split()
        mem[target].append({"vm_rss_kb": int(rss), "vm_hwm_kb": int(hwm), "rss_anon_kb": int(anon),
                            "rss_file_kb": int(filek), "rss_shmem_kb": int(shmem),
                            "cpu_s": float(cpu), "threads": int(threads)})
    unavailable = {}
    path = os.path.join(results, "unavailable.tsv")
    if os.path.exists(path):
        for line in open(path):
            if line.strip():
                t, why = line.rstrip("\n").split(" ", 1)
                unavailable[t] = why
    return meta, runs, mem, unavailable


def figure(job, rec):
    return rec["mib_s"] if JOB_NAMES[job][1] == "MiB/s" else rec["iops"]


def fmt(v):
    return "%.0f" % v if v >= 100 else "%.1f" % v


def per_round(runs, a, b, j, value):
    """Median, min, max of value(a's round) / value(b's round) over shared rounds."""
    ratios = [value(rec) / value(runs[(b, j)][rnd]) for rnd, rec in runs[(a, j)].items()
              if rnd in runs[(b, j)] and value(runs[(b, j)][rnd]) > 0]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def bars(p, record, runs, measured, jobs):
    """Issue 23's targets for the default path, each met or not, with its figure."""
    if DEFAULT_TARGET not in measured:
        p("Targets (issue 23) for the default path: not graded (no ps-auto in this run).")
        p("")
        return
    default = DEFAULT_TARGET
    rows = []

    def bar(what, got, op, want):
        if got is None:
            rows.append((what, "n/a", want, "not measured"))
            return
        ok = got[0] >= want if op == ">=" else got[0] <= want
        rows.append((what, "%.2f [%.2f-%.2f]" % got, "%s %.2f" % ("≥" if op == ">=" else "≤", want),
                     "met" if ok else "**short**"))

    fig = lambda j: (lambda rec: figure(j, rec))
    cpu = lambda rec: rec.get("server_cpu_us_per_io") or 0.0
    for j in ("randread4k", "randwrite4k"):
        if j in jobs and "kublk-null" in measured:
            bar("%s: %s / kublk-null" % (JOB_NAMES[j][0], default),
                per_round(runs, default, "kublk-null", j, fig(j)), ">=", 0.9)
            bar("%s: CPU per I/O, %s / kublk-null" % (JOB_NAMES[j][0], default),
                per_round(runs, default, "kublk-null", j, cpu), "<=", 1.25)
    loops = [t for t in measured if t == "kublk-loop" or t.startswith("kublk-loop+")]
    for j in jobs:
        if not loops:
            break
        # The fastest kublk loop configuration of this job (median over rounds).
        best = max(loops, key=lambda t: statistics.median(figure(j, r) for r in runs[(t, j)].values()))
        bar("%s: %s / %s (the fastest kublk loop)" % (JOB_NAMES[j][0], default, best),
            per_round(runs, default, best, j, fig(j)), ">=", 1.5 if j == "fsyncwrite4k" else 1.0)
    for j in ("seqread128k", "seqwrite128k"):
        if j in jobs and "raw" in measured:
            bar("%s: %s / raw" % (JOB_NAMES[j][0], default), per_round(runs, default, "raw", j, fig(j)),
                ">=", 0.8)
    if "ps-devdax" in measured:
        for j in jobs:
            bar("%s: ps-devdax / %s" % (JOB_NAMES[j][0], default),
                per_round(runs, "ps-devdax", default, j, fig(j)), ">=", 1.0)
    record["bars"] = [{"what": w, "got": g, "want": t, "verdict": v} for w, g, t, v in rows]
    p("Targets (issue 23) for the default path, median of the per-round ratios [min-max]:")
    p("")
    p("| target | ratio | bar | |")
    p("|---|---:|---:|---|")
    for row in rows:
        p("| %s | %s | %s | %s |" % row)
    p("")


def lever_base(target):
    """The target a pmem-stack lever target is measured against: the name
    without its %ring, ^threads, ~reads and @affinity suffixes
    (ps-auto%defer -> ps-auto), or None for a target that is no lever."""
    if not target.startswith("ps-"):
        return None
    base = re.sub(r"(%[a-z]+|\^[0-9]+|~[a-z]+|@[a-z-]+)", "", target)
    return base if base != target else None


def levers(p, record, runs, measured, jobs):
    """Each lever target against its base target, round by round."""
    pairs = [(t, lever_base(t)) for t in measured if lever_base(t) in measured]
    if not pairs:
        return
    cpu = lambda rec: rec.get("server_cpu_us_per_io") or 0.0
    p("Levers against their base target in the same rounds (median of the per-round ratios, "
      "[min-max]; figure > 1 and CPU per I/O < 1 favour the lever):")
    p("")
    p("| job | " + " | ".join("%s / %s | CPU per I/O" % pair for pair in pairs) + " |")
    p("|---|" + "---:|---:|" * len(pairs))
    for j in jobs:
        cells = []
        for lever, base in pairs:
            for what, value in (("", lambda rec: figure(j, rec)), ("cpu:", cpu)):
                got = per_round(runs, lever, base, j, value)
                if got is not None:
                    record["jobs"][j]["ratios"]["%s%s/%s" % (what, lever, base)] = {
                        "median": got[0], "min": got[1], "max": got[2]}
                cells.append("%.2f [%.2f-%.2f]" % got if got else "–")
        p("| %s | %s |" % (JOB_NAMES[j][0], " | ".join(cells)))
    p("")


def main():
    results, commit = sys.argv[1], sys.argv[2]
    meta, runs, mem, unavailable = load(results)
    targets = meta["targets"].split()
    jobs = meta["jobs"].split()
    measured = [t for t in targets if t not in unavailable]
    for t in measured:
        for j in jobs:
            if not runs.get((t, j)):
                fail("no result for %s/%s in %s" % (t, j, results))
    ours = [t for t in measured if t.startswith("ps-")]
    peers = [t for t in PEERS if t in measured] + [t for t in measured if is_kublk(t)]

    record = {"commit": commit, "meta": meta, "unavailable": unavailable, "jobs": {}, "memory": {}}
    out = []
    p = out.append
    p("## Kernel %s (%s, commit %s)" % (meta["kernel"], meta["date"], commit))
    p("")
    p(
        "TCG guest, %s vCPUs (%s, -cpu %s, string-copy flags: %s), %s; %s"
        % (
            meta["vcpus"],
            meta.get("cpu", "?"),
            meta.get("qemu_cpu", "max"),
            meta.get("copy_flags") or "none",
            meta["fio"],
            meta["params"],
        )
    )
    p("rublk: %s; kublk: %s; devdax: %s" % (meta["rublk"], meta.get("kublk", "not in this run"),
                                            meta.get("devdax", "?")))
    for t, why in unavailable.items():
        p("- **%s unavailable**: %s" % (t, why))
    p("")
    p("Median over rounds; higher is better.")
    p("")
    p("| job | " + " | ".join(measured) + " |")
    p("|---|" + "---:|" * len(measured))
    for j in jobs:
        name, unit = JOB_NAMES[j]
        cells = []
        jrec = record["jobs"].setdefault(j, {"unit": unit, "targets": {}, "ratios": {}})
        for t in measured:
            xs = [figure(j, r) for r in runs[(t, j)].values()]
            med = statistics.median(xs)
            spread = (max(xs) - min(xs)) / med * 100 if med else 0.0
            cells.append("%s ±%.0f%%" % (fmt(med), spread / 2))
            rs = list(runs[(t, j)].values())
            jrec["targets"][t] = {
                "median": med, "rounds": xs,
                "lat_p50_us": statistics.median(r["lat_p50_us"] for r in rs),
                "lat_p99_us": statistics.median(r["lat_p99_us"] for r in rs),
                "server_cpu_us_per_io": statistics.median(r["server_cpu_us_per_io"] for r in rs)
                if "server_cpu_us_per_io" in rs[0] else None,
                "server_faults_per_io": statistics.median(r["server_faults_per_io"] for r in rs)
                if "server_faults_per_io" in rs[0] else None,
            }
        p("| %s (%s) | %s |" % (name, unit, " | ".join(cells)))
    p("")
    p("Ratios pmem-stack / peer (median of the per-round ratios, [min-max]); > 1: pmem-stack is faster.")
    p("")
    for j in jobs:
        for o in ours:
            for peer in peers:
                ratios = []
                for rnd, rec in runs[(o, j)].items():
                    peer_rec = runs[(peer, j)].get(rnd)
                    if peer_rec and figure(j, peer_rec) > 0:
                        ratios.append(figure(j, rec) / figure(j, peer_rec))
                if ratios:
                    record["jobs"][j]["ratios"]["%s/%s" % (o, peer)] = {
                        "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    p("| job | pmem-stack | " + " | ".join("/ " + peer for peer in peers) + " |")
    p("|---|---|" + "---:|" * len(peers))
    for j in jobs:
        for o in ours:
            cells = []
            for peer in peers:
                r = record["jobs"][j]["ratios"].get("%s/%s" % (o, peer))
                cells.append("**%.2f** [%.2f-%.2f]" % (r["median"], r["min"], r["max"]) if r else "n/a")
            p("| %s | %s | %s |" % (JOB_NAMES[j][0], o, " | ".join(cells)))
    p("")
    kernel_paths = [t for t in ("dm-linear", "map") if t in measured and "raw" in measured]
    if kernel_paths:
        p("In-kernel paths over the same data area / raw `/dev/pmem0` (median of per-round ratios; ≈ 1 expected):")
        p("")
        p("| job | " + " | ".join("%s / raw" % t for t in kernel_paths) + " |")
        p("|---|" + "---:|" * len(kernel_paths))
        for j in jobs:
            cells = []
            for t in kernel_paths:
                ratios = [figure(j, rec) / figure(j, runs[("raw", j)][rnd])
                          for rnd, rec in runs[(t, j)].items()
                          if rnd in runs[("raw", j)] and figure(j, runs[("raw", j)][rnd]) > 0]
                r = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
                record["jobs"][j]["ratios"]["%s/raw" % t] = r
                cells.append("**%.2f** [%.2f-%.2f]" % (r["median"], r["min"], r["max"]))
            p("| %s | %s |" % (JOB_NAMES[j][0], " | ".join(cells)))
        p("")
    p("4k randread QD1 latency (µs, median over rounds; lower is better):")
    p("")
    if "randread4k-qd1" in jobs:
        p("| | " + " | ".join(measured) + " |")
        p("|---|" + "---:|" * len(measured))
        for k in ("lat_p50_us", "lat_p99_us"):
            p("| %s | %s |" % (k[4:7], " | ".join(
                "%.1f" % record["jobs"]["randread4k-qd1"]["targets"][t][k] for t in measured)))
    p("")
    servers = [t for t in measured if t in mem]
    old = any(len(line.split()) == 10 for line in open(os.path.join(results, "fio.tsv")))
    p("Server CPU per I/O (µs: user + system time of all the server's threads, io_uring "
      "workers included, %s; median over rounds; lower is better):"
      % ("≈: the counters include the ramp" if old else "from the end of fio's ramp to its exit"))
    p("")
    p("| job | " + " | ".join(servers) + " |")
    p("|---|" + "---:|" * len(servers))
    for j in jobs:
        p("| %s | %s |" % (JOB_NAMES[j][0], " | ".join(
            "%.1f" % record["jobs"][j]["targets"][t]["server_cpu_us_per_io"] for t in servers)))
    p("")
    cpu_peers = [t for t in servers if is_kublk(t) or t.startswith("rublk-")]
    if cpu_peers and ours:
        p("Server CPU per I/O, pmem-stack / peer (median of the per-round ratios, [min-max]); "
          "< 1: pmem-stack spends less:")
        p("")
        p("| job | pmem-stack | " + " | ".join("/ " + t for t in cpu_peers) + " |")
        p("|---|---|" + "---:|" * len(cpu_peers))
        for j in jobs:
            for o in (t for t in ours if t in servers):
                cells = []
                for peer in cpu_peers:
                    ratios = [rec["server_cpu_us_per_io"] / runs[(peer, j)][rnd]["server_cpu_us_per_io"]
                              for rnd, rec in runs[(o, j)].items()
                              if rnd in runs[(peer, j)] and runs[(peer, j)][rnd]["server_cpu_us_per_io"] > 0]
                    if ratios:
                        r = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
                        record["jobs"][j]["ratios"]["cpu:%s/%s" % (o, peer)] = r
                        cells.append("**%.2f** [%.2f-%.2f]" % (r["median"], r["min"], r["max"]))
                    else:
                        cells.append("n/a")
                p("| %s | %s | %s |" % (JOB_NAMES[j][0], o, " | ".join(cells)))
        p("")
    bars(p, record, runs, measured, jobs)
    levers(p, record, runs, measured, jobs)
    p("Server memory after its fio runs (/proc/PID/status, MiB, median over rounds):")
    p("")
    p("| | " + " | ".join(servers) + " |")
    p("|---|" + "---:|" * len(servers))
    for k in ("vm_rss_kb", "vm_hwm_kb", "rss_anon_kb", "rss_file_kb"):
        row = []
        for t in servers:
            v = statistics.median(m[k] for m in mem[t]) / 1024
            record["memory"].setdefault(t, {})[k[:-3] + "_mib"] = v
            row.append("%.1f" % v)
        p("| %s | %s |" % (k[:-3], " | ".join(row)))
    text = "\n".join(out) + "\n"
    open(os.path.join(results, "table.md"), "w").write(text)
    json.dump(record, open(os.path.join(results, "results.json"), "w"), indent=1, sort_keys=True)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
