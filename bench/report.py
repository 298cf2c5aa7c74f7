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
    clk_tck = os.sysconf("SC_CLK_TCK")
    runs = collections.defaultdict(dict)  # (target, job) -> {round: record}
    for line in open(os.path.join(results, "fio.tsv")):
        rnd, target, job, iops, bw, lat, p50, p99, minflt, ticks = line.split()
        rec = {"iops": float(iops), "mib_s": int(bw) / 2**20, "lat_mean_us": float(lat) / 1e3,
               "lat_p50_us": int(p50) / 1e3, "lat_p99_us": int(p99) / 1e3}
        if minflt != "-":
            ios = float(iops) * wall  # the counters include the ramp
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
    peers = [t for t in PEERS if t in measured]

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
    p("rublk: %s; devdax: %s" % (meta["rublk"], meta.get("devdax", "?")))
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
    p("Server CPU per I/O (µs, ≈: the counters include the ramp; lower is better):")
    p("")
    p("| job | " + " | ".join(servers) + " |")
    p("|---|" + "---:|" * len(servers))
    for j in jobs:
        p("| %s | %s |" % (JOB_NAMES[j][0], " | ".join(
            "%.0f" % record["jobs"][j]["targets"][t]["server_cpu_us_per_io"] for t in servers)))
    p("")
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
