"""The paper's claims tested as the paper states them (issue 25), for fragments.py.

Reads bench/paper/claims.toml and the sweep summaries of both recipes and renders
book/src/results/claims.md (one row per claim and recipe), conclusion.md (gated − the better
baseline per experiment, TOST) and beyond.md (gatekit's own findings, never the paper's).
Also the checks book/check.sh runs on them: every claim has a line and a quote (found on that
line of the paper's text when the text is next to the repository), and no chapter calls a row
a claim that this file did not make.

Statistics: paired differences over seeds, 90 % two-sided Student-t intervals (two one-sided
5 % tests); the t quantiles come from the regularized incomplete beta function below (no
scipy; tests/paper_claims.rs and `claims.py selftest` check them against published tables).
"""
import json
import math
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = ROOT / "bench/paper/claims.toml"
SUMMARIES = ROOT / "bench/paper/results"
RECIPES = [("default", "gatekit's default recipe", SUMMARIES),
           ("paper", "the paper's recipe", SUMMARIES / "paper-recipe")]
PAPER_TEXT = [ROOT.parent / "shared/paper/like-a-light-switch.txt",
              ROOT / "../shared/paper/like-a-light-switch.txt"]
VERDICTS = ["**reproduced**", "**not reproduced**", "**inconclusive**"]
FINDING_VERDICTS = {"reproduced": "**holds**", "not reproduced": "**does not hold**",
                    "inconclusive": "**undecided**"}

# ------------------------------------------------------------------ Student t


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (Numerical Recipes, Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betai(a, b, x):
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1 - x) / b


def t_cdf(t, df):
    """P(T ≤ t) for Student's t with df degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * _betai(df / 2, 0.5, x)
    return 1 - tail if t > 0 else tail


def t_quantile(p, df):
    """The p-quantile of Student's t (bisection on t_cdf, to 1e-12)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# ------------------------------------------------------------------ data


def load_claims():
    return tomllib.loads(CLAIMS.read_text())


def summaries(directory):
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def config(directory, name):
    """The [run] table of the run's own resolved config (copied by bench/paper/run.sh)."""
    p = directory / f"{name}.config.toml"
    if not p.is_file():
        return None
    return tomllib.loads(p.read_text()).get("run")


def values(s, strategy, row):
    if row == "masks undecided":
        u = s.get("undecided")
        return None if u is None else list(u["values"])
    for c in s["cells"]:
        if c["strategy"] == strategy and c["task"] == row:
            return list(c["values"])
    return None


def chance_of(s, margins):
    """The majority-class rate of a classification experiment (MNIST test set), else None."""
    return margins["mnist_chance"] if s["metric"] == "accuracy" else None


def failed_seeds(s, margins):
    """Seeds whose model ends at chance while the others of its kind do not (issue 25 item 5):
    per (strategy, task) cell, a value within 2 points of the majority-class rate while the
    median of the cell's other seeds is more than 10 points above it. {(strategy, task): [seed]}"""
    chance = chance_of(s, margins)
    if chance is None:
        return {}
    out = {}
    for c in s["cells"]:
        v = c["values"]
        for i, x in enumerate(v):
            others = sorted(v[:i] + v[i + 1:])
            if not others:
                continue
            med = others[len(others) // 2] if len(others) % 2 else \
                (others[len(others) // 2 - 1] + others[len(others) // 2]) / 2
            if x <= chance + 0.02 and med > chance + 0.10:
                out.setdefault((c["strategy"], c["task"]), []).append(s["seeds"][i])
    return out


# ------------------------------------------------------------------ tests


def interval(d, level=0.90):
    """Mean and two-sided `level` Student-t interval of the values d."""
    n = len(d)
    m = sum(d) / n
    if n < 2:
        return m, None, None
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1))
    half = t_quantile(1 - (1 - level) / 2, n - 1) * sd / math.sqrt(n)
    return m, m - half, m + half


def decide(kind, lo, hi, margin):
    if lo is None:
        return "inconclusive"
    if kind == "superiority":
        if lo > 0:
            return "reproduced"
        return "not reproduced" if hi < margin else "inconclusive"
    if kind in ("equivalence", "at-chance"):
        if -margin < lo and hi < margin:
            return "reproduced"
        return "not reproduced" if lo > margin or hi < -margin else "inconclusive"
    if kind == "non-inferiority":
        if lo > -margin:
            return "reproduced"
        return "not reproduced" if hi < -margin else "inconclusive"
    raise ValueError(kind)


def margin_of(claim, lower_is_better, reference, margins):
    """(margin, its words) for a claim: explicit, named in [margins], or by the metric."""
    m = claim.get("margin")
    if isinstance(m, str):
        return margins[m], f"{margins[m]:g} ('{m.replace('_', ' ')}')"
    if m is not None:
        return m, f"{m:g}"
    if lower_is_better:
        r = margins["mse_relative"]
        return r * abs(reference), f"{100 * r:g} % of {fmt(reference)}"
    return margins["accuracy"], f"{margins['accuracy']:g} (1 point)"


def fmt(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.4f}"


def seed_list(seeds):
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


class Missing(Exception):
    pass


def side(spec, claim, summ):
    exp = spec.get("experiment", claim["experiment"])
    if exp not in summ:
        raise Missing(exp)
    s = summ[exp]
    v = values(s, spec.get("strategy"), spec["row"])
    if v is None:
        raise Missing(f"{exp}: {spec.get('strategy')} / {spec['row']}")
    return exp, s, v


def label(spec, claim):
    exp = spec.get("experiment", claim["experiment"])
    where = "" if exp == claim["experiment"] else f" ({exp})"
    row = "" if spec["row"] == "mean over tasks" else f" {spec['row']}"
    return f"{spec.get('strategy', '')}{row}{where}".strip()


def evaluate(claim, summ, margins, drop=()):
    """The test of one claim on one recipe's summaries: dict with the numbers and verdict.
    `drop`: seeds left out (flagged failed runs). Raises Missing when a summary is absent."""
    kind = claim["test"]
    exp_a, sa, va = side(claim["a"], claim, summ)
    seeds = sa["seeds"]
    keep = [i for i, s in enumerate(seeds) if s not in drop]
    va = [va[i] for i in keep]
    lower = claim.get("lower_is_better", sa["lower_is_better"])
    out = {"seeds": [seeds[i] for i in keep], "lower": lower}
    if kind in ("below", "above"):
        b = claim["bound"]
        bound = margins[b] if isinstance(b, str) else b
        m, lo, hi = interval(va)
        out.update(text=f"{label(claim['a'], claim)}: {fmt(m)} [{fmt(lo)}, {fmt(hi)}]; bound {fmt(bound)}")
        if kind == "below":
            out["verdict"] = "reproduced" if hi is not None and hi < bound else \
                ("not reproduced" if lo is not None and lo > bound else "inconclusive")
        else:
            out["verdict"] = "reproduced" if lo is not None and lo > bound else \
                ("not reproduced" if hi is not None and hi < bound else "inconclusive")
        out["test"] = f"mean {'<' if kind == 'below' else '>'} {fmt(bound)} (one-sided 95 %)"
        return out
    if kind == "at-chance":
        chance = margins[claim["chance"]]
        d = [x - chance for x in va]
        m, lo, hi = interval(d)
        margin = margins["accuracy"]
        out.update(text=f"{label(claim['a'], claim)} − {chance:g} = {fmt(m)} [{fmt(lo)}, {fmt(hi)}]",
                   verdict=decide(kind, lo, hi, margin),
                   test=f"TOST vs the majority-class rate {chance:g}, margin ±{margin:g}")
        return out
    exp_b, sb, vb = side(claim["b"], claim, summ)
    if sb["seeds"] != seeds:
        raise SystemExit(f"claim {claim['id']}: {exp_a} has seeds {seeds}, {exp_b} {sb['seeds']}")
    vb = [vb[i] for i in keep]
    # d > 0 is the claimed direction: a better than b.
    d = [(y - x) if lower else (x - y) for x, y in zip(va, vb)]
    m, lo, hi = interval(d)
    ref = sum(vb) / len(vb)
    margin, mwords = margin_of(claim, lower, ref, margins)
    names = {"superiority": "superiority, one-sided", "equivalence": "equivalence (TOST)",
             "non-inferiority": "non-inferiority"}
    sign = f"{label(claim['b'], claim)} − {label(claim['a'], claim)}" if lower else \
        f"{label(claim['a'], claim)} − {label(claim['b'], claim)}"
    out.update(text=f"{sign} = {fmt(m)} [{fmt(lo)}, {fmt(hi)}]",
               verdict=decide(kind, lo, hi, margin),
               test=f"{names[kind]}, margin {mwords}")
    return out


def involved_failures(claim, summ, margins):
    """Seeds flagged as failed runs in any cell the claim reads."""
    seeds = set()
    for key in ("a", "b"):
        spec = claim.get(key)
        if not spec or "row" not in spec:
            continue
        exp = spec.get("experiment", claim["experiment"])
        if exp not in summ:
            continue
        for (strategy, task), ss in failed_seeds(summ[exp], margins).items():
            if strategy == spec.get("strategy") and task == spec["row"]:
                seeds.update(ss)
    return sorted(seeds)


def cell_text(claim, summ, margins, finding=False):
    try:
        r = evaluate(claim, summ, margins)
    except Missing as e:
        return f"not run ({e} missing)"
    v = FINDING_VERDICTS[r["verdict"]] if finding else f"**{r['verdict']}**"
    text = f"{r['text']} → {v}"
    failed = involved_failures(claim, summ, margins)
    if failed:
        r2 = evaluate(claim, summ, margins, drop=failed)
        v2 = FINDING_VERDICTS[r2["verdict"]] if finding else f"**{r2['verdict']}**"
        text += (f"; without failed seed {', '.join(map(str, failed))} (†): {r2['text']} → {v2}")
    return text


def test_words(claim, margins):
    kind = claim["test"]
    for _, _, directory in RECIPES:
        try:
            return evaluate(claim, summaries(directory), margins)["test"]
        except (Missing, KeyError):
            continue
    return kind


def esc(text):
    return text.replace("|", "\\|")


def header(sources):
    return (f"<!-- generated by book/tools/fragments.py from bench/paper/claims.toml and {sources}; "
            "do not edit: rerun bench/paper/run.sh -->")


def claims_fragment():
    spec = load_claims()
    margins = spec["margins"]
    per = [(key, words, summaries(d)) for key, words, d in RECIPES]
    lines = [header("bench/paper/results/{,paper-recipe/}*.json"),
             "Each row: the paper's words with their line in the paper's text, the test, and per "
             "recipe the per-seed difference (oriented so that > 0 is the claimed direction) as "
             "mean [90 % interval] over the seeds of the sweeps (5), then the verdict. "
             "† marks a seed whose model ended at chance while its other seeds did not; the "
             "row then gives the test with and without it.", "",
             "| § | line | the paper says | test | " + " | ".join(w for _, w, _ in per) + " |",
             "|---|---:|---|---|" + "---|" * len(per)]
    for c in spec["claim"]:
        if c["test"].startswith("conclusion"):
            cells = ["see the conclusion table below"] * len(per)
            test = "equivalence (TOST) per experiment"
        elif c["test"] == "untested":
            cells = [f"not tested: {c['reason']}"] + [""] * (len(per) - 1)
            test = "-"
        elif c.get("source") == "figures":
            cells = [figure_cell(c, d, margins) for _, _, d in RECIPES]
            test = "superiority, one-sided, margin " + f"{c['margin']:g}"
        else:
            cells = [cell_text(c, s, margins) for _, _, s in per]
            test = test_words(c, margins)
        lines.append(f"| {c['section']} | {c['line']} | “{esc(c['quote'])}” ({c['experiment']}) "
                     f"| {esc(test)} | " + " | ".join(esc(x) for x in cells) + " |")
    lines.append("")
    return "\n".join(lines)


def figure_cell(claim, directory, margins):
    """A claim about a figure's statistic (bench/paper/results[/paper-recipe]/figures/NAME.json,
    written by `gtk report --figure-stats`)."""
    p = directory / "figures" / f"{claim['experiment']}.json"
    if not p.is_file():
        return "not run (figure statistics missing)"
    stats = json.loads(p.read_text())
    va, vb = figure_values(stats, claim["a"]), figure_values(stats, claim["b"])
    d = [x - y for x, y in zip(va, vb)]
    m, lo, hi = interval(d)
    v = decide("superiority", lo, hi, claim["margin"])
    return (f"{figure_label(claim['a'])} − {figure_label(claim['b'])} = {fmt(m)} "
            f"[{fmt(lo)}, {fmt(hi)}] → **{v}**")


def figure_values(stats, spec):
    if spec["statistic"] == "clustering":
        runs = stats["clustering"][spec["strategy"]]
        idx = -1 if spec["at"] == "last" else 0
        return [r[idx]["value"] for r in runs]
    layer = spec["layer"]
    return [r[layer]["soft"] for r in stats["mask_agreement"]]


def figure_label(spec):
    if spec["statistic"] == "clustering":
        return f"clustering ({spec['strategy']}, {spec['at']} checkpoint)"
    return f"mask agreement (layer {spec['layer'] + 1})"


def conclusion_fragment():
    spec = load_claims()
    margins = spec["margins"]
    best = next(c for c in spec["claim"] if c["test"] == "conclusion")
    binar = next(c for c in spec["claim"] if c["test"] == "conclusion-binarized")
    lines = [header("bench/paper/results/{,paper-recipe/}*.json"),
             f"The paper's conclusion (line {best['line']}): “{best['quote']}”; and (line "
             f"{binar['line']}): “{binar['quote']}”. Per experiment and seed, gated − the better "
             "of shared and separate on that seed's mean over tasks (for a loss: best − gated, "
             "so > 0 means gated is better), then gated with binarized masks − gated as trained; "
             "mean [90 % interval] over seeds, equivalence by two one-sided tests (TOST) at "
             "the margin shown. The paper's words ask for equivalence; the column “at least as "
             "good” gives the non-inferiority test at the same margin, for a gated model that is "
             "better than both baselines (not “similar”, but not against the paper's point).", "",
             "| experiment | recipe | seeds | margin | gated vs best baseline | similar (TOST) "
             "| at least as good | binarized vs gated | similar (TOST) |",
             "|---|---|---:|---:|---|---|---|---|---|"]
    for exp in best["experiments"]:
        for key, words, directory in RECIPES:
            summ = summaries(directory)
            if exp not in summ:
                lines.append(f"| {exp} | {words} | - | - | not run | | | | |")
                continue
            s = summ[exp]
            row = "mean over tasks" if len(s["tasks"]) > 1 else s["tasks"][0]
            lower = s["lower_is_better"]
            g = values(s, "gated", row)
            sh, se = values(s, "shared", row), values(s, "separate", row)
            gb = values(s, "gated-binarized", row)
            bestv = [min(a, b) if lower else max(a, b) for a, b in zip(sh, se)]
            if lower:
                ref = sum(bestv) / len(bestv)
                margin = max(margins["mse_relative"] * ref, margins["zero_loss"])
                mw = f"{fmt(margin)} (10 %)"
                d = [b - x for x, b in zip(g, bestv)]
                d2 = [x - y for x, y in zip(g, gb)]
            else:
                margin = margins["accuracy"]
                mw = f"{margin:g}"
                d = [x - b for x, b in zip(g, bestv)]
                d2 = [y - x for x, y in zip(g, gb)]
            m, lo, hi = interval(d)
            m2, lo2, hi2 = interval(d2)
            if lower:
                ref2 = sum(g) / len(g)
                margin2 = max(margins["mse_relative"] * ref2, margins["zero_loss"])
            else:
                margin2 = margin
            lines.append(
                f"| {exp} | {words} | {seed_list(s['seeds'])} | {mw} "
                f"| {fmt(m)} [{fmt(lo)}, {fmt(hi)}] | **{decide('equivalence', lo, hi, margin)}** "
                f"| {decide('non-inferiority', lo, hi, margin)} "
                f"| {fmt(m2)} [{fmt(lo2)}, {fmt(hi2)}] (margin {fmt(margin2)}) "
                f"| **{decide('equivalence', lo2, hi2, margin2)}** |")
    lines.append("")
    return "\n".join(lines)


def beyond_fragment():
    spec = load_claims()
    margins = spec["margins"]
    per = [(key, words, summaries(d)) for key, words, d in RECIPES]
    lines = [header("bench/paper/results/{,paper-recipe/}*.json"),
             "gatekit's own findings: **not claims of the paper**. Same tests and intervals as "
             "the claims table; **holds** / **does not hold** / **undecided**.", "",
             "| experiment | finding | test | " + " | ".join(w for _, w, _ in per) + " |",
             "|---|---|---|" + "---|" * len(per)]
    for f in spec.get("finding", []):
        cells = [cell_text(f, s, margins, finding=True) for _, _, s in per]
        lines.append(f"| {f['experiment']} | {esc(f['words'])} | {esc(test_words(f, margins))} | "
                     + " | ".join(esc(x) for x in cells) + " |")
    lines.append("")
    return "\n".join(lines)


def settings_fragment():
    """Each recipe's settings per experiment, from the run's own config.toml."""
    keys = ["steps", "batch_size", "optimizer", "lr", "dtype", "gate", "mask_optimizer",
            "mask_lr", "mask_init", "mask_lr_warmup", "binarize_after", "adam_beta2",
            "mask_regularizer", "mask_regularizer_weight"]
    lines = ["<!-- generated by book/tools/fragments.py from bench/paper/results/{,paper-recipe/}"
             "*.config.toml (each sweep's seed-0 config.toml); do not edit -->", "",
             "| experiment | recipe | " + " | ".join(keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    names = sorted({p.name[:-len(".config.toml")] for _, _, d in RECIPES
                    for p in d.glob("*.config.toml")})
    for name in names:
        for _, words, d in RECIPES:
            run = config(d, name)
            if run is None:
                continue
            cells = []
            for k in keys:
                v = run.get(k)
                cells.append("-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v)))
            lines.append(f"| {name} | {words} | " + " | ".join(esc(c) for c in cells) + " |")
    lines.append("")
    return "\n".join(lines)


def mean_ci(v):
    """Mean [90 % interval] text over seeds."""
    m, lo, hi = interval(v)
    return f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]"


def figures_fragment():
    """Figures 2 and 3 as numbers: clustering per strategy at the first and last histogram
    step, and mask agreement between tasks per layer, over seeds, per recipe."""
    lines = ["<!-- generated by book/tools/fragments.py from bench/paper/results/"
             "{,paper-recipe/}figures/*.json (examples/figure_stats.rs); do not edit -->", "",
             "Weight clustering (Figure 2): share of the effective weights in the 5 fullest of "
             "50 equal bins over each step's range, pooled over tasks (1: every weight on at "
             "most 5 values; 0.1: a uniform spread), weighted over the weight layers; mean "
             "[90 % interval] over seeds.", "",
             "| experiment | recipe | strategy | first step | last step | last − first |",
             "|---|---|---|---|---|---|"]
    agree = ["", "Mask agreement between tasks (Figure 3), per weight layer of the gated model: "
             "soft = 1 − mean \\|σ(M_t) − σ(M_u)\\| and binary = share of equal bits "
             "1[M > 0], averaged over all task pairs; mean [90 % interval] over seeds.", "",
             "| experiment | recipe | layer | soft agreement | binary agreement |",
             "|---|---|---|---|---|"]
    for key, words, d in RECIPES:
        for p in sorted((d / "figures").glob("*.json")):
            st = json.loads(p.read_text())
            for strategy, runs in st["clustering"].items():
                runs = [r for r in runs if r]
                if not runs:
                    continue
                first = [r[0]["value"] for r in runs]
                last = [r[-1]["value"] for r in runs]
                steps = f"{runs[0][0]['step']} → {runs[0][-1]['step']}"
                lines.append(f"| {p.stem} | {words} | {strategy} | {mean_ci(first)} "
                             f"| {mean_ci(last)} | {mean_ci([b - a for a, b in zip(first, last)])} "
                             f"(steps {steps}) |")
            per = st["mask_agreement"]
            if per and per[0]:
                for i, layer in enumerate(per[0]):
                    soft = [r[i]["soft"] for r in per]
                    binary = [r[i]["binary"] for r in per]
                    agree.append(f"| {p.stem} | {words} | {i + 1} (`{layer['param']}`) "
                                 f"| {mean_ci(soft)} | {mean_ci(binary)} |")
    return "\n".join(lines + agree) + "\n"


def render():
    out = {"claims": claims_fragment(), "conclusion": conclusion_fragment(),
           "beyond": beyond_fragment(), "settings": settings_fragment(),
           "figures": figures_fragment()}
    shapes_json = SUMMARIES / "shapes/linear.json"
    if shapes_json.is_file():
        import shapes  # bench/paper/shapes.py
        out["shapes"] = ("<!-- generated by book/tools/fragments.py from "
                         "bench/paper/results/shapes/linear.json (bench/paper/shapes.sh); "
                         "do not edit -->\n\n" + shapes.table(json.loads(shapes_json.read_text())))
        recipes = shapes_recipes()
        if recipes:
            out["shapes-recipes"] = recipes
    return out


# The recipes of bench/paper/results/shapes/NAME-seedS.json, in table order: the name before
# "-seed" and the label the book gives it (`linear.json` is the default on seed 25).
SHAPES_RECIPES = [
    ("default", "default"),
    ("trained-masks", "candidate"),
    ("switch300-trained", "switch at 300, masks trained"),
    ("switch200-trained", "switch at 200, masks trained"),
    ("switch300-frozen", "switch at 300, masks frozen"),
    ("soft-only", "sigmoid only, no switch"),
]


def shapes_recipes():
    """Every recipe measured on the generated linear sets, per generator seed, with the
    [run] keys it changes (bench/paper/shapes.sh --seed S [--set ...] writes each file)."""
    order = {name: i for i, (name, _) in enumerate(SHAPES_RECIPES)}
    labels = dict(SHAPES_RECIPES)
    runs = []
    for path in sorted((SUMMARIES / "shapes").glob("*.json")):
        name = "default" if path.stem == "linear" else path.stem.rsplit("-seed", 1)[0]
        if name in order:
            runs.append((name, path))
    if not any(r == "trained-masks" for r, _ in runs):
        return None
    rows = []
    for recipe, path in runs:
        r = json.loads(path.read_text())
        sets = r["sets"]
        ok = sum(s["gated"] <= 1e-6 * s["variance"] for s in sets)
        ratios = sorted(s["gated_steps"] / s["separate_steps"] for s in sets
                        if s.get("gated_steps") and s.get("separate_steps"))
        within = sum(x <= 4 for x in ratios)
        median = f"{ratios[len(ratios) // 2]:.1f}" if ratios else "-"
        changes = ", ".join(f"`{o}`" for o in r.get("overrides", [])) or "–"
        rows.append((r["generator_seed"], order[recipe], labels[recipe], changes, ok, within,
                     len(sets), median, path.relative_to(ROOT)))
    rows.sort(key=lambda x: (x[1], x[0]))
    sources = ", ".join(str(r[8]) for r in rows)
    lines = [f"<!-- generated by book/tools/fragments.py from {sources} "
             "(bench/paper/shapes.sh); do not edit -->", "",
             "| recipe | changes to tasks/linear.toml's [run] | generator seed "
             "| sets at 1e-6 × variance at the end | first at 1e-6 × variance within 4× "
             "separate's steps | median gated / separate steps |",
             "|---|---|---:|---:|---:|---:|"]
    for seed, _, label, changes, ok, within, n, median, _ in rows:
        lines.append(f"| {label} | {changes} | {seed} | {ok} / {n} | {within} / {n} "
                     f"| {median} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ checks


def paper_text():
    for p in PAPER_TEXT:
        if p.is_file():
            return p.read_text().splitlines()
    return None


def check(chapters, fragments):
    """Errors of the claims rules (issue 25 item 1)."""
    errors = []
    spec = load_claims()
    text = paper_text()
    ids = set()
    for c in spec.get("claim", []):
        cid = c.get("id", "?")
        if cid in ids:
            errors.append(f"bench/paper/claims.toml: claim id {cid} twice")
        ids.add(cid)
        if not isinstance(c.get("line"), int) or not c.get("quote", "").strip():
            errors.append(f"bench/paper/claims.toml: claim {cid} has no line or no quote")
            continue
        if c["test"] == "untested" and not c.get("reason"):
            errors.append(f"bench/paper/claims.toml: untested claim {cid} gives no reason")
        if text is not None:
            line = text[c["line"] - 1] if 0 < c["line"] <= len(text) else ""
            norm = lambda s: re.sub(r"\s+", " ", s)
            if norm(c["quote"]) not in norm(line):
                errors.append(f"bench/paper/claims.toml: claim {cid}: “{c['quote']}” is not on "
                              f"line {c['line']} of the paper's text")
    for f in spec.get("finding", []):
        if "quote" in f or "line" in f:
            errors.append(f"bench/paper/claims.toml: finding {f.get('id')} has a quote/line: "
                          "gatekit's own findings are not the paper's")
    # Claim rows: only in the claims and conclusion fragments, each with its line and quote.
    quotes = {(c["line"], c["quote"]) for c in spec.get("claim", []) if "quote" in c}
    for name, body in fragments.items():
        for i, row in enumerate(body.splitlines(), 1):
            if not row.startswith("|"):
                continue
            has_verdict = any(v in row for v in VERDICTS)
            if name == "claims" and (row.startswith("| 3") or row.startswith("| 4")):
                m = re.match(r"\| [\d.]+ \| (\d+) \| “(.*?)” ", row)
                if not m or (int(m.group(1)), m.group(2).replace("\\|", "|")) not in quotes:
                    errors.append(f"book/src/results/{name}.md:{i}: a claim row without a quote "
                                  "and line from bench/paper/claims.toml")
            elif has_verdict and name not in ("claims", "conclusion"):
                errors.append(f"book/src/results/{name}.md:{i}: a row with a claim verdict "
                              "outside the claims and conclusion tables")
    for chapter in chapters:
        for i, line in enumerate(chapter.read_text().splitlines(), 1):
            if any(v in line for v in VERDICTS) or re.search(r"\b[Cc]laims?:", line):
                errors.append(f"{chapter.relative_to(ROOT)}:{i}: calls something a claim or "
                              "gives a claim verdict in prose; claims and verdicts come from "
                              "bench/paper/claims.toml (results/claims.md)")
    return errors


def selftest():
    # Published two-sided 95 % / one-sided 95 % critical values.
    for df, q975, q95 in [(1, 12.706204736, 6.313751515), (4, 2.776445105, 2.131846786),
                          (9, 2.262157163, 1.833112933), (30, 2.042272456, 1.697260887)]:
        assert abs(t_quantile(0.975, df) - q975) < 1e-6, (df, t_quantile(0.975, df))
        assert abs(t_quantile(0.95, df) - q95) < 1e-6, (df, t_quantile(0.95, df))
    assert decide("equivalence", -0.004, 0.006, 0.01) == "reproduced"
    assert decide("equivalence", -0.02, 0.006, 0.01) == "inconclusive"
    assert decide("equivalence", 0.011, 0.03, 0.01) == "not reproduced"
    assert decide("superiority", 0.001, 0.03, 0.01) == "reproduced"
    assert decide("superiority", -0.02, 0.005, 0.01) == "not reproduced"
    assert decide("superiority", -0.02, 0.02, 0.01) == "inconclusive"
    assert decide("non-inferiority", -0.009, 0.02, 0.01) == "reproduced"
    assert decide("non-inferiority", -0.03, -0.011, 0.01) == "not reproduced"
    print("claims.py selftest: t quantiles and decision rules ok")


if __name__ == "__main__":
    selftest()
