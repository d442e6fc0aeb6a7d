"""Mean ± standard deviation over seeds of each continual set's average accuracy, backward
transfer and forgetting per strategy, and pick's task-identification rate, as Markdown."""
import json
import pathlib
import re
import statistics
import sys

out = pathlib.Path(sys.argv[1])
rows = {}
for f in sorted(out.glob("continual-*-seed*.json")):
    name, seed = re.match(r"(.*)-seed(\d+)\.json", f.name).groups()
    for s in json.loads(f.read_text()):
        rows.setdefault((name, s["strategy"]), []).append(s)


def ms(values, scale=1.0, signed=False):
    m = statistics.mean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:+.2f} ± {sd:.2f}" if signed else f"{m:.2f} ± {sd:.2f}"


print("| task set | strategy | seeds | average accuracy (%) | backward transfer (points) | forgetting (points) |")
print("|---|---|---:|---:|---:|---:|")
for (name, strategy), runs in rows.items():
    print(
        f"| {name} | {strategy} | {len(runs)} | {ms([r['average'] for r in runs], 100)} "
        f"| {ms([r['backward_transfer'] for r in runs], 100, True)} | {ms([r['forgetting'] for r in runs], 100)} |"
    )
picks = {}
for f in sorted(out.glob("pick-*-seed*.json")):
    name = re.match(r"pick-(.*)-seed\d+\.json", f.name).group(1)
    right = total = 0
    for t in json.loads(f.read_text())["tasks"]:
        p = t.get("pick")
        # q3 repeats the stored task p3.
        if p and t["task"].startswith("q"):
            votes = dict(p["votes"])
            right += votes.get("p" + t["task"][1:], 0)
            total += p["trials"]
    if total:
        picks.setdefault(name, []).append(100.0 * right / total)
if picks:
    print()
    print("| task set | seeds | pick: task identified from one unlabelled batch (%) |")
    print("|---|---:|---:|")
    for name, v in picks.items():
        print(f"| {name} | {len(v)} | {ms(v)} |")
