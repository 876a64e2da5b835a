#!/usr/bin/env python3
"""Summarise a benchmark run (scripts/bench/run.sh): medians per scene and tool, ratios, targets.

    report.py RESULTS_DIR OUT.md

RESULTS_DIR holds runs.tsv (scene, round, tool, wall_s, rss_kb, rc), machine.txt (key=value) and
the acquisition logs of dac's runs (SCENE-dac-rN.jsonl). Prints the table and writes OUT.md.
"""
import os
import statistics
import subprocess
import sys
from collections import defaultdict

SCENES = {
    "full": "full: 25 containers (12 running, 12 exited, 1 created), one with a 256 MiB file; exports and saves",
    "meta": "meta: 200 containers (20 running, 180 exited), metadata only (--no-export --no-save)",
    "big": "big: one container holding a 1 GiB file; export and save",
}
ORDER = ["dac", "dac-six", "docker-py", "shell", "floor", "floor-flat", "floor-disk", "floor-six",
         "docker-py-dacset", "floor-nochanges", "floor-nostats"]
ABOUT = {
    "dac": "dac collect (full bundle: stream hash, read-back hash, checks, sealed bag)",
    "docker-py": "paper's stack: docker-py 7.1.0, sequential, hash after writing",
    "shell": "examiner by hand: docker CLI | tee FILE | sha256sum, one after another",
    "floor": "dac's requests with curl in dac's plan (processes and stats all at once, metadata and logs 4 at once meanwhile, exports and saves 4 at once after them), bodies to /dev/null",
    "floor-flat": "the same requests, no tiers, exports first, 4 at once",
    "floor-disk": "the tiered floor writing bodies to files (no hashing)",
    "dac-six": "(meta) dac on the paper's six tables, the set docker-py collects: --no-stats --no-changes as well",
    "floor-six": "(meta) the tiered floor of dac-six's requests",
    "docker-py-dacset": "(analysis) docker-py, sequential, asking also what dac asks beyond the six tables: one-shot stats, changes",
    "floor-nochanges": "(analysis) the tiered floor without /containers/{id}/changes",
    "floor-nostats": "(analysis) the tiered floor without /containers/{id}/stats",
}


def main():
    res, out_md = sys.argv[1], sys.argv[2]
    runs = defaultdict(list)
    load = defaultdict(list)
    raw = []
    with open(os.path.join(res, "runs.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            scene, rnd, tool, wall, rss, rc, cpu, eng, other = line.rstrip("\n").split("\t")
            raw.append((scene, int(rnd), tool, float(wall), int(rss), int(rc), float(cpu), float(eng), float(other)))
            runs[(scene, tool)].append((float(wall), int(rss), int(rc), int(rnd)))
            load[(scene, tool)].append((float(cpu), float(eng), float(other)))
    machine = []
    with open(os.path.join(res, "machine.txt"), encoding="utf-8") as f:
        machine = [l.rstrip("\n").split("=", 1) for l in f if "=" in l]

    def med(scene, tool):
        r = runs.get((scene, tool))
        if not r:
            return None
        return statistics.median(w for w, _, _, _ in r)

    lines = []
    lines.append("| scene | tool | wall s (median) | min-max | peak RSS MiB (median) | x floor | x floor-flat | x docker-py | tool CPU s | engine CPU s | other CPU s | failed runs |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    scenes = [s for s in SCENES if any(k[0] == s for k in runs)]
    for scene in scenes:
        floor = med(scene, "floor")
        flat = med(scene, "floor-flat")
        py = med(scene, "docker-py")
        for tool in ORDER:
            r = runs.get((scene, tool))
            if not r:
                continue
            walls = [w for w, _, _, _ in r]
            rss = statistics.median(x for _, x, _, _ in r) / 1024
            m = statistics.median(walls)
            bad = sum(1 for _, _, rc, _ in r if rc != 0)
            fx = f"{m / floor:.2f}" if floor else "-"
            fl = f"{m / flat:.2f}" if flat else "-"
            px = f"{m / py:.2f}" if py else "-"
            ld = load[(scene, tool)]
            cpu, eng, oth = (statistics.median(x[i] for x in ld) for i in range(3))
            lines.append(f"| {scene} | {tool} | {m:.2f} | {min(walls):.2f}-{max(walls):.2f} | {rss:.1f} | {fx} | {fl} | {px} | {cpu:.2f} | {eng:.2f} | {oth:.2f} | {bad}/{len(r)} |")
    table = "\n".join(lines)

    # Targets.
    checks = []
    def target(text, ok, detail):
        checks.append(f"- {'MET' if ok else 'MISSED'}: {text} ({detail})")
    if med("full", "dac") and med("full", "floor"):
        d, f, p = med("full", "dac"), med("full", "floor"), med("full", "docker-py")
        target("full scene at most 1.15x the curl floor", d / f <= 1.15, f"dac {d:.2f} s / floor {f:.2f} s = {d / f:.2f}x")
        if med("full", "floor-flat"):
            ff = med("full", "floor-flat")
            checks.append(f"  - against the untiered floor: {d / ff:.2f}x ({ff:.2f} s); against the floor that writes to disk: "
                          + (f"{d / med('full', 'floor-disk'):.2f}x ({med('full', 'floor-disk'):.2f} s)" if med("full", "floor-disk") else "-"))
        if p:
            target("full scene faster than docker-py", d < p, f"dac {d:.2f} s, docker-py {p:.2f} s: {p / d:.2f}x faster")
    if med("meta", "dac-six") and med("meta", "docker-py"):
        d, p = med("meta", "dac-six"), med("meta", "docker-py")
        fs = med("meta", "floor-six")
        target("metadata-only, 200 containers, at least 3x faster than docker-py, on the six tables docker-py collects (dac-six)",
               p / d >= 3, f"dac-six {d:.2f} s, docker-py {p:.2f} s: {p / d:.2f}x" + (f"; {d / fs:.2f}x its curl floor ({fs:.2f} s)" if fs else ""))
    if med("meta", "dac") and med("meta", "docker-py"):
        d, p = med("meta", "dac"), med("meta", "docker-py")
        checks.append(f"  - with dac's default extras (one-shot stats of the running containers, which the engine answers on its one-second sampling tick, and /changes of every container), "
                      f"the command the issue names (--no-export --no-save): dac {d:.2f} s, {p / d:.2f}x docker-py's speed")
        if med("meta", "floor"):
            checks.append(f"  - the curl floor for dac's requests: {med('meta', 'floor'):.2f} s ({p / med('meta', 'floor'):.2f}x docker-py's speed)"
                          + (f"; without /changes: {med('meta', 'floor-nochanges'):.2f} s ({p / med('meta', 'floor-nochanges'):.2f}x)" if med("meta", "floor-nochanges") else ""))
        if med("meta", "docker-py-dacset"):
            q = med("meta", "docker-py-dacset")
            checks.append(f"  - on equal requests (docker-py-dacset, {q:.2f} s): dac is {q / d:.2f}x faster")
    if runs.get(("big", "dac")):
        peak = max(x for _, x, _, _ in runs[("big", "dac")]) / 1024
        target("peak RSS under 32 MiB exporting 1 GiB", peak < 32, f"dac's highest peak RSS over {len(runs[('big', 'dac')])} runs: {peak:.1f} MiB")

    # Where dac's time went, in its median run of each scene.
    phases = []
    here = os.path.dirname(os.path.abspath(__file__))
    for scene in scenes:
        r = runs.get((scene, "dac"))
        if not r:
            continue
        m = statistics.median(w for w, _, _, _ in r)
        rnd = min(r, key=lambda x: abs(x[0] - m))[3]
        log = os.path.join(res, f"{scene}-dac-r{rnd}.jsonl")
        if os.path.exists(log):
            txt = subprocess.run([sys.executable, os.path.join(here, "phases.py"), log, "--top", "3"],
                                 capture_output=True, text=True).stdout
            phases.append(f"{scene} (round {rnd}, {m:.2f} s wall):\n```\n{txt.rstrip()}\n```")

    print(table)
    print()
    print("\n".join(checks))

    md = []
    md.append("# DAC benchmark results")
    md.append("")
    md.append("Written by `scripts/bench/run.sh` (issue 5). Every figure below was measured in one run on the")
    md.append("machine described; medians of the rounds; peak RSS from `/usr/bin/time -f %M`. Each run starts")
    md.append("after `sync; echo 3 > /proc/sys/vm/drop_caches` and a settle pause, on a fresh scratch folder")
    md.append("on the engine's disk, deleted afterwards. Ratios are wall time over the reference's wall time")
    md.append("(below 1 is faster). CPU columns: the tool's user+system time (with its children), the bench")
    md.append("engine's (dockerd and its containerd), and the rest of the machine's busy time during the run")
    md.append("(\"other\": other work on the same cores, plus kernel writeback); a high \"other\" marks a noisy run.")
    md.append("")
    md.append("## Machine")
    md.append("")
    for k, v in machine:
        md.append(f"- {k}: {v}")
    md.append("")
    md.append("## Scenes")
    md.append("")
    for s in scenes:
        md.append(f"- {SCENES[s]}")
    md.append("")
    md.append("## Tools")
    md.append("")
    for t in ORDER:
        if any(k[1] == t for k in runs):
            md.append(f"- `{t}`: {ABOUT[t]}")
    md.append("")
    md.append("## Results")
    md.append("")
    md.append(table)
    md.append("")
    md.append("## Targets (issue 5)")
    md.append("")
    md.extend(checks)
    md.append("")
    md.append("## Where dac's time went")
    md.append("")
    md.append("From the acquisition log (`scripts/bench/phases.py`): per tier, the first request's start and")
    md.append("the last record, in ms from the session's start; `sum of req` adds the requests' own times.")
    md.append("")
    md.extend(phases)
    md.append("")
    md.append("## Reading these figures")
    md.append("")
    md.append("- The machine may be shared with other work: the `other CPU s` column is the busy time that")
    md.append("  neither the tool nor the bench engine used during the run; compare tools within a round.")
    md.append("- `floor` follows dac's own plan (tiers in order, processes and stats at once, exports after")
    md.append("  them); `floor-flat` drops the tiers, so it is the daemon's limit for the same requests;")
    md.append("  `floor-disk` adds what writing the bodies to the disk costs (no hashing).")
    md.append("- A VM whose balloon reports free pages to the host makes the first write into memory freed")
    md.append("  by the cache drop expensive (host page faults): every tool that writes pays it, the")
    md.append("  /dev/null floor does not; `floor-disk` shows how much.")
    md.append("")
    md.append("## Every run")
    md.append("")
    md.append("| scene | round | tool | wall s | peak RSS KiB | exit | tool CPU s | engine CPU s | other CPU s |")
    md.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for scene, rnd, tool, wall, rss, rc, cpu, eng, oth in raw:
        md.append(f"| {scene} | {rnd} | {tool} | {wall:.3f} | {rss} | {rc} | {cpu:.2f} | {eng:.2f} | {oth:.2f} |")
    md.append("")
    with open(out_md, "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    print(f"\nwritten: {out_md}")


if __name__ == "__main__":
    main()
