#!/usr/bin/env python3
"""Results fragments of the book, generated from sweep summaries (issue 17).

bench/paper/run.sh trains every experiment of "Reproducing the paper" over 5 seeds with
`gtk train --seeds` and copies each sweep's summary.json to bench/paper/results/NAME.json.
This tool turns those files into Markdown fragments book/src/results/NAME.md, which the paper
chapter includes with {{#include results/NAME.md}}: each a table of mean ± 95 % interval per
strategy and task, and each claim of the paper labelled reproduced or not with its paired
interval over seeds.

  fragments.py write    regenerate every fragment from its summary
  fragments.py check    fail when a fragment differs from what its summary gives, when a
                        chapter has a results table that is not an included fragment (tables
                        of keys or options are marked `<!-- table: reference -->`), or when
                        a `<!-- results: NAME -->` section includes no fragment
"""
import json
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench/paper"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench/continual"))
import claims  # noqa: E402  (the paper's claims, issue 25)
import protocol_table  # noqa: E402  (the published continual-learning protocols, issue 27)
import paper_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUMMARIES = ROOT / "bench/paper/results"
FRAGMENTS = ROOT / "book/src/results"
CHAPTERS = [ROOT / "book/src/paper.md", ROOT / "book/src/continual.md"]
# bench/continual.sh: each sequential run's continual.json (accuracy matrices and measures)
# and gtk adapt's pick on it (adapt.json), per task set and seed.
CONTINUAL = ROOT / "bench/results/continual"

# Sections of the chapter whose experiments bench/paper/run.sh covers but whose 5-seed sweeps
# have not been run yet (they need MNIST and more time than issue 17's session had). Their
# single-seed tables stay, flagged in the chapter; remove a name here once its summary exists.
PENDING: set = set()

# Figure 5: the same sinusoid sweep with each mask regulariser; compared with no regulariser
# (the sinusoid sweep) seed by seed.
FIGURE5 = [("sinusoid", "none"), ("sinusoid-reg-abs", "exp(−\\|m\\|)"), ("sinusoid-reg-sq", "exp(−m²)")]

# Two-sided 95 % Student-t critical values t_{0.975, df} (gatekit's own t quantile computes
# the same; tests/sweep.rs and src/sweep/stats.rs check those against tables).
T975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305, 4: 2.776445105, 5: 2.570581836,
        6: 2.446911851, 7: 2.364624252, 8: 2.306004135, 9: 2.262157163, 10: 2.228138852}

LABEL = {"gated-binarized": "gated, W ⊙ 1[M > 0]"}


def fmt_metric(v):
    """gatekit's format_metric."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.3e}"
    return f"{v:.4f}"


def fmt_interval(mean, half):
    """gatekit's format_interval: the mean rounded to the half-width's second digit."""
    if half is None or not math.isfinite(half) or not math.isfinite(mean):
        return fmt_metric(mean)
    if half == 0:
        return f"{fmt_metric(mean)} ± 0"
    if max(abs(mean), half) < 1e-3 or half < 1e-6:
        return f"{mean:.2e} ± {half:.1e}"
    digits = min(max(1 - math.floor(math.log10(half)), 0), 6)
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def fmt_p(p):
    if p is None:
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def seeds_text(seeds):
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"seeds {seeds[0]}–{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def metric_name(s):
    return "MSE" if s["metric"] == "mse" else s["metric"]


def cell(s, strategy, row):
    for c in s["cells"]:
        if c["strategy"] == strategy and c["task"] == row:
            return c
    return None


def paired(s, b, row):
    for p in s["paired"]:
        if p["b"] == b and p["task"] == row:
            return p
    return None


def results_table(s):
    """Mean ± 95 % interval per strategy and task; a cell with a failed run (a seed at chance
    while the cell's other seeds are not, issue 25 item 5) is marked † and given without it."""
    margins = claims.load_claims()["margins"]
    failed = claims.failed_seeds(s, margins)
    rows = []
    for c in s["cells"]:
        if c["task"] not in rows:
            rows.append(c["task"])
    out = ["| task | " + " | ".join(LABEL.get(x, x) for x in s["strategies"]) + " |",
           "|---|" + "---:|" * len(s["strategies"])]
    for r in rows:
        cells = []
        for st in s["strategies"]:
            c = cell(s, st, r)
            if not c:
                cells.append("")
                continue
            text = fmt_interval(c["interval"]["mean"], c["interval"]["half_width"])
            bad = failed.get((st, r))
            if bad:
                keep = [v for sd, v in zip(s["seeds"], c["values"]) if sd not in bad]
                text += (f" † (seed {', '.join(map(str, bad))} at "
                         f"{', '.join(fmt_metric(v) for sd, v in zip(s['seeds'], c['values']) if sd in bad)}; "
                         f"without: {mean_interval(keep)})")
            cells.append(text)
        out.append(f"| {r} | " + " | ".join(cells) + " |")
    if failed:
        out.append("")
        out.append("† a failed run: that seed's model ended within 2 points of the majority-class "
                   "rate (0.1135) while the cell's other seeds are more than 10 points above it.")
    return "\n".join(out)


def header(name, sources):
    files = ", ".join(f"bench/paper/results/{n}.json" for n in sources)
    return (f"<!-- generated by book/tools/fragments.py from {files}; "
            "do not edit: rerun bench/paper/run.sh -->")


def experiment(name, s):
    n = len(s["seeds"])
    sources = [name]
    lines = [header(name, sources),
             f"Measured by `bench/paper/run.sh`: test {metric_name(s)} after {s['steps']} steps, "
             f"{seeds_text(s['seeds'])}, mean ± 95 % confidence interval half-width (Student t, "
             f"{n - 1} df); {'lower' if s['lower_is_better'] else 'higher'} is better.", "",
             results_table(s), ""]
    return "\n".join(lines)


def paired_text(a, b):
    """a − b per seed: mean ± 95 % half-width (p of the paired t-test)."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    m = sum(d) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1))
    half = T975[n - 1] * sd / math.sqrt(n)
    p = two_sided_p(m / (sd / math.sqrt(n)), n - 1) if sd > 0 else (1.0 if m == 0 else 0.0)
    return f"{fmt_interval(m, half)} (p {fmt_p(p)})"


def figure5(summaries):
    base = summaries["sinusoid"]
    lines = [header("figure5", [x for x, _ in FIGURE5]),
             f"Measured by `bench/paper/run.sh`: gated test MSE after {base['steps']} steps, "
             f"{seeds_text(base['seeds'])}, mean ± 95 % interval; differences to no regulariser "
             "are paired by seed (p: paired t-test).", "",
             "| mask regulariser | gated | − none | gated, W ⊙ 1[M > 0] | − none "
             "| masks undecided (%) |",
             "|---|---:|---:|---:|---:|---:|"]
    row = "mean over tasks"
    for key, label in FIGURE5:
        s = summaries[key]
        if s["seeds"] != base["seeds"]:
            raise SystemExit(f"{key}.json has seeds {s['seeds']} but sinusoid.json {base['seeds']}")
        cells = []
        for strategy in ["gated", "gated-binarized"]:
            c = cell(s, strategy, row)
            cells.append(fmt_interval(c["interval"]["mean"], c["interval"]["half_width"]))
            cells.append("" if key == "sinusoid" else
                         paired_text(c["values"], cell(base, strategy, row)["values"]))
        u = s.get("undecided")
        und = ""
        if u:
            ui = u["interval"]
            half = ui["half_width"]
            und = fmt_interval(100 * ui["mean"], None if half is None else 100 * half)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {und} |")
    lines.append("")
    return "\n".join(lines)


def two_sided_p(t, df):
    """P(|T| > |t|) by numerical integration of the t density (Simpson, fine enough for 3
    digits)."""
    t = abs(t)
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    f = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)
    k = 20000
    h = t / k
    area = f(0) + f(t) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, k))
    return max(0.0, 1 - 2 * area * h / 3)


def mean_interval(values, scale=1.0):
    """Mean ± 95 % Student-t half-width over seeds, scaled (e.g. to percent)."""
    v = [x * scale for x in values]
    m = sum(v) / len(v)
    if len(v) < 2:
        return fmt_metric(m)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return fmt_interval(m, T975[len(v) - 1] * sd / math.sqrt(len(v)))


def continual():
    """The Continual learning chapter's tables from bench/results/continual."""
    runs = {}
    for f in sorted(CONTINUAL.glob("continual-*-seed*.json")):
        name, seed = re.match(r"(continual-.*)-seed(\d+)\.json", f.name).groups()
        for s in json.loads(f.read_text()):
            runs.setdefault((name, s["strategy"]), []).append((int(seed), s))
    if not runs:
        return None
    lines = ["<!-- generated by book/tools/fragments.py from bench/results/continual "
             "(bench/continual.sh); do not edit -->", "",
             "| task set | strategy | seeds | average accuracy (%) | backward transfer (points) "
             "| forgetting (points) |", "|---|---|---:|---:|---:|---:|"]
    for (name, strategy), seeded in runs.items():
        seeds = sorted(k for k, _ in seeded)
        ss = [s for _, s in seeded]
        lines.append(
            f"| `{name}` | {strategy} | {', '.join(map(str, seeds))} "
            f"| {mean_interval([s['average'] for s in ss], 100)} "
            f"| {mean_interval([s['backward_transfer'] for s in ss], 100)} "
            f"| {mean_interval([s['forgetting'] for s in ss], 100)} |")
    picks = {}
    for f in sorted(CONTINUAL.glob("pick-*-seed*.json")):
        name = re.match(r"pick-(.*)-seed\d+\.json", f.name).group(1)
        right = total = 0
        for t in json.loads(f.read_text())["tasks"]:
            p = t.get("pick")
            # q3 repeats the stored task p3.
            if p and t["task"].startswith("q"):
                right += dict(p["votes"]).get("p" + t["task"][1:], 0)
                total += p["trials"]
        if total:
            picks.setdefault(name, []).append(right / total)
    if picks:
        lines += ["", "| run | seeds | pick: stored task identified from one unlabelled batch (%) |",
                  "|---|---:|---:|"]
        for name, v in picks.items():
            lines.append(f"| `{name}` | {len(v)} | {mean_interval(v, 100)} |")
    lines.append("")
    lines.append("Mean ± 95 % Student-t interval over the seeds listed.")
    return "\n".join(lines) + "\n"


def script_tables(script, *folders):
    """The markdown tables a bench table script prints for `folders`, in order."""
    import subprocess

    out = subprocess.run([sys.executable, str(ROOT / script), *map(str, folders)],
                         capture_output=True, text=True, check=True).stdout
    tables, rows = [], []
    for line in out.splitlines() + [""]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            tables.append("\n".join(rows) + "\n")
            rows = []
    return tables


def supermask():
    """The supermask inference table (every bench/results/supermask-*/ folder, one row per
    network, inputs and task count) and the collapse tables (the newest folder that has them),
    through bench/continual/{supermask,collapse}_table.py."""
    folders = sorted(f for f in (ROOT / "bench/results").glob("supermask-*") if f.is_dir())
    if not folders:
        return {}
    out = {"supermask-inference":
           script_tables("bench/continual/supermask_table.py", *folders)[0]}
    collapses = [f / "collapse" for f in folders if (f / "collapse").is_dir()]
    if collapses:
        collapse = collapses[-1]
        tables = script_tables("bench/continual/collapse_table.py", collapse)
        out["supermask-collapse"] = tables[0]
        out["supermask-collapse-rho"] = tables[1]
    return out


def render_all():
    summaries = {p.stem: json.loads(p.read_text()) for p in sorted(SUMMARIES.glob("*.json"))}
    out = {}
    table = continual()
    if table is not None:
        out["continual"] = table
    newest = protocol_table.latest(ROOT)
    protocol = protocol_table.render(newest) if newest else None
    if protocol is not None:
        out["continual-protocol"] = protocol
    for name, s in summaries.items():
        if name.startswith("sinusoid-reg-"):
            continue
        out[name] = experiment(name, s)
    if all(k in summaries for k, _ in FIGURE5):
        out["figure5"] = figure5(summaries)
    out.update(supermask())
    out.update(claims.render())
    return out


def check_chapters(fragments):
    errors = []
    for chapter in CHAPTERS:
        text = chapter.read_text()
        fenced = False
        pending = False
        # `<!-- table: reference -->` right above a table marks it as documentation (keys,
        # options, files), not results.
        reference = False
        for i, line in enumerate(text.splitlines(), 1):
            if line.startswith("```"):
                fenced = not fenced
            if not fenced and line.startswith("#"):
                pending = False
            m = re.match(r"<!-- results: ([\w-]+) -->", line)
            if m:
                pending = m.group(1) in PENDING
            row = line.strip()
            if row == "<!-- table: reference -->":
                reference = True
                continue
            is_row = row.startswith("|") and row.endswith("|")
            if reference and not is_row:
                reference = False
            if not fenced and not pending and not reference and is_row:
                errors.append(f"{chapter.relative_to(ROOT)}:{i}: a results table typed into the "
                              "chapter; results tables come from fragments "
                              "({{#include results/NAME.md}}, made by bench/paper/run.sh or "
                              "bench/continual.sh)")
        for m in re.finditer(r"<!-- results: ([\w-]+) -->", text):
            name = m.group(1)
            if name in PENDING:
                continue
            if f"{{{{#include results/{name}.md}}}}" not in text:
                errors.append(f"{chapter.relative_to(ROOT)}: section `{name}` includes no "
                              f"fragment results/{name}.md")
        for inc in re.findall(r"\{\{#include results/([\w-]+)\.md\}\}", text):
            if inc not in fragments:
                errors.append(f"{chapter.relative_to(ROOT)}: includes results/{inc}.md, which no "
                              f"summary in bench/paper/results or bench/results/continual makes")
    return errors


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    fragments = render_all()
    if mode == "write":
        FRAGMENTS.mkdir(parents=True, exist_ok=True)
        for name, text in fragments.items():
            (FRAGMENTS / f"{name}.md").write_text(text)
            print(f"wrote book/src/results/{name}.md")
        return
    if mode != "check":
        raise SystemExit("usage: fragments.py write|check")
    errors = []
    for name, text in fragments.items():
        path = FRAGMENTS / f"{name}.md"
        if not path.is_file() or path.read_text() != text:
            errors.append(f"book/src/results/{name}.md does not match its summary "
                          f"(bench/paper/results); rerun `python3 book/tools/fragments.py write`")
    for path in FRAGMENTS.glob("*.md"):
        if path.stem not in fragments:
            errors.append(f"book/src/results/{path.name} has no summary in bench/paper/results")
    errors += check_chapters(fragments)
    errors += claims.check(CHAPTERS, fragments)
    errors += paper_recipe.check()
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"results fragments: {len(fragments)} match their summaries; "
          f"pending 5-seed sweeps: {', '.join(sorted(PENDING)) or 'none'}")


if __name__ == "__main__":
    main()
