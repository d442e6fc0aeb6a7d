//! `report.md` and `report.html`: the comparison tables of the last evaluation next to the
//! figures. The HTML file embeds every figure as a base64 PNG, so it can be mailed or attached
//! as one file; the Markdown file links the PNG and SVG files beside it.
//!
//! The HTML is templated with `maud` (compile-time checked markup, every spliced value
//! escaped); the Markdown is plain text and stays `write!`.

use super::figures::{differing_keys, run_labels};
use super::{Quantity, RunData};
use crate::plot::Figure;
use crate::run::{NumberFormat, Record};
use base64::prelude::{BASE64_STANDARD, Engine as _};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::fmt::Write;

/// One run's part of the report.
#[derive(Debug, Clone)]
pub(super) struct Section {
    pub run: RunData,
    pub figures: Vec<Figure>,
}

/// A table: header, rows of cells, with `bold[row][col]` marking the best values.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    bold: Vec<Vec<bool>>,
}

impl Table {
    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| {} |", self.header.join(" | "));
        let _ = writeln!(
            s,
            "|{}",
            self.header
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { " --- |" } else { " ---: |" })
                .collect::<String>()
        );
        for (r, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    if self.bold[r][c] {
                        format!("**{v}**")
                    } else {
                        v.clone()
                    }
                })
                .collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        s
    }

    /// The table cut into tables of at most `n` columns after the first, which each repeats.
    fn column_slices(&self, n: usize) -> Vec<Table> {
        let n = n.max(1);
        let rest = self.header.len().saturating_sub(1);
        (0..rest.div_ceil(n).max(1))
            .map(|k| {
                let cols: Vec<usize> = std::iter::once(0)
                    .chain(1 + k * n..(1 + (k + 1) * n).min(self.header.len()))
                    .collect();
                let pick = |row: &Vec<String>| cols.iter().map(|&c| row[c].clone()).collect();
                Table {
                    header: pick(&self.header),
                    rows: self.rows.iter().map(pick).collect(),
                    bold: self
                        .bold
                        .iter()
                        .map(|b| cols.iter().map(|&c| b[c]).collect())
                        .collect(),
                }
            })
            .collect()
    }

    fn html(&self) -> Markup {
        html! {
            table {
                thead { tr { @for h in &self.header { th { (h) } } } }
                tbody {
                    @for (r, row) in self.rows.iter().enumerate() {
                        tr {
                            @for (c, v) in row.iter().enumerate() {
                                @let best = self.bold[r][c].then_some("best");
                                @if c == 0 {
                                    th class=[best] { (v) }
                                } @else {
                                    td class=[best] { (v) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The last evaluation's test metric per task and strategy (best per row in bold), with the
/// binarized gated model in its own column.
fn comparison_table(run: &RunData) -> Table {
    let strategies = run.strategies();
    let tasks = run.tasks();
    let last = run.last_step();
    let objective = run.objective();
    let value = |s: &str, t: &str| -> f64 {
        run.eval_series(s, t, "test", Quantity::Metric)
            .iter()
            .rev()
            .find(|p| p.0 == last as f64)
            .map_or(f64::NAN, |p| p.1)
    };
    let binarized = |t: &str| -> f64 {
        run.binarized_series(t, Quantity::Metric)
            .iter()
            .rev()
            .find(|p| p.0 == last as f64)
            .map_or(f64::NAN, |p| p.1)
    };
    let has_bin = tasks.iter().any(|t| !binarized(t).is_nan());
    let evaluated = tasks
        .iter()
        .any(|t| strategies.iter().any(|s| !value(s, t).is_nan()));
    // A run stopped before its first full evaluation has only probes: say so rather than
    // label a column of dashes with step 0.
    let mut header = vec![if evaluated {
        format!("test {} (step {last})", run.metric_name())
    } else {
        format!(
            "test {}: no full evaluation yet (probe curves below)",
            run.metric_name()
        )
    }];
    header.extend(strategies.iter().cloned());
    if has_bin {
        header.push("gated, binarized".into());
    }
    // The rows' values first: the table has one number format, chosen from all of them.
    let mut lines: Vec<(String, Vec<f64>, f64)> = Vec::new();
    let mut sums = vec![0.0; strategies.len()];
    let mut bin_sum = 0.0;
    for t in &tasks {
        let values: Vec<f64> = strategies.iter().map(|s| value(s, t)).collect();
        for (acc, v) in sums.iter_mut().zip(&values) {
            *acc += v;
        }
        bin_sum += binarized(t);
        lines.push((t.clone(), values, binarized(t)));
    }
    if tasks.len() > 1 {
        let n = tasks.len() as f64;
        lines.push((
            "mean".into(),
            sums.iter().map(|s| s / n).collect(),
            bin_sum / n,
        ));
    }
    let all: Vec<f64> = lines
        .iter()
        .flat_map(|(_, v, b)| v.iter().copied().chain([*b]))
        .collect();
    let number = NumberFormat::for_values(&all, 3, 4);
    let mut rows = Vec::new();
    let mut bold = Vec::new();
    for (name, values, bin) in lines {
        // Every column that ties the best value is bold.
        let best =
            values
                .iter()
                .copied()
                .filter(|v| !v.is_nan())
                .fold(None::<f64>, |b, v| match b {
                    Some(bv) if !objective.better(v, bv) => b,
                    _ => Some(v),
                });
        let mut row = vec![name];
        let mut marks = vec![false];
        for v in &values {
            row.push(number.show(*v));
            marks.push(Some(*v) == best && values.len() > 1);
        }
        if has_bin {
            row.push(number.show(bin));
            marks.push(false);
        }
        rows.push(row);
        bold.push(marks);
    }
    Table { header, rows, bold }
}

/// Per task and parameter: share of mask entries off, and undecided, at the last mask record.
fn mask_table(run: &RunData) -> Option<Table> {
    let step = run.last_mask_step()?;
    let params = run.params();
    let mut header = vec![format!("off (undecided), step {step}")];
    header.extend(params.iter().cloned());
    let mut rows = Vec::new();
    for t in run.tasks() {
        let mut row = vec![t.clone()];
        for p in &params {
            row.push(match run.mask_stats(step, &t, p) {
                Some((off, und)) => format!("{:.1}% ({:.1}%)", 100.0 * off, 100.0 * und),
                None => "-".into(),
            });
        }
        rows.push(row);
    }
    let bold = rows.iter().map(|r| vec![false; r.len()]).collect();
    Some(Table { header, rows, bold })
}

/// Per pair of tasks, over all gated parameters: identical mask bits, chance, difference.
fn similarity_table(run: &RunData) -> Option<Table> {
    let masks = run.masks.as_ref().filter(|m| m.tasks.len() > 1)?;
    let (share, chance) = (masks.similarity(&[]), masks.chance(&[]));
    let header = vec![
        "tasks".to_string(),
        "identical mask bits".into(),
        "chance".into(),
        "difference".into(),
    ];
    let mut rows = Vec::new();
    for a in 0..masks.tasks.len() {
        for b in a + 1..masks.tasks.len() {
            rows.push(vec![
                format!("{} – {}", masks.tasks[a], masks.tasks[b]),
                format!("{:.4}", share[a][b]),
                format!("{:.4}", chance[a][b]),
                format!("{:+.4}", share[a][b] - chance[a][b]),
            ]);
        }
    }
    let bold = rows.iter().map(|r| vec![false; r.len()]).collect();
    Some(Table { header, rows, bold })
}

const SIMILARITY_NOTE: &str = "Task similarity of the binarized masks over all gated \
                               parameters; chance: the share two independent masks with the \
                               same on-shares would have.";

/// Several runs: the last mean test metric per strategy, with the settings that differ.
fn runs_table(runs: &[RunData]) -> Table {
    let keys = differing_keys(runs);
    let strategies: Vec<&str> = super::STRATEGIES
        .iter()
        .copied()
        .filter(|s| runs.iter().any(|r| r.strategies().iter().any(|x| x == s)))
        .collect();
    let mut header = vec!["run".to_string()];
    header.extend(keys.iter().cloned());
    header.extend(
        strategies
            .iter()
            .map(|s| format!("{s}: mean test {}", runs[0].metric_name())),
    );
    let finals: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| {
            strategies
                .iter()
                .map(|s| {
                    r.mean_over_tasks(|t| r.eval_series(s, t, "test", Quantity::Metric))
                        .last()
                        .map_or(f64::NAN, |p| p.1)
                })
                .collect()
        })
        .collect();
    let number = NumberFormat::for_values(&finals.concat(), 3, 4);
    let mut rows = Vec::new();
    for (r, values) in runs.iter().zip(&finals) {
        let mut row = vec![r.name.clone()];
        for k in &keys {
            row.push(
                r.run_table
                    .get(k)
                    .map_or("-".into(), |v| v.to_string().trim_matches('"').to_string()),
            );
        }
        row.extend(values.iter().map(|v| number.show(*v)));
        rows.push(row);
    }
    let bold = rows.iter().map(|r| vec![false; r.len()]).collect();
    Table { header, rows, bold }
}

fn run_summary(run: &RunData) -> String {
    let set = &run.set;
    let has_recovery = run
        .records
        .iter()
        .any(|r| matches!(r, Record::Recovery { .. }));
    let has_histograms = run
        .records
        .iter()
        .any(|r| matches!(r, Record::Histogram { .. }));
    format!(
        "{} tasks ({}), model `{}`, {} of {} steps, strategies: {}{}.{}",
        set.tasks.len(),
        run.tasks().join(", "),
        set.model.name,
        run.step,
        set.run.steps,
        run.strategies().join(", "),
        if has_recovery {
            "; the tasks' generating masks are known (recovery in TensorBoard)"
        } else {
            ""
        },
        match (run.step < set.run.steps, has_histograms) {
            (true, true) => format!(
                " It stopped at step {} of {} (continue it with `gtk train --resume`).",
                run.step, set.run.steps
            ),
            (true, false) => format!(
                " It stopped at step {} of {} before its first histogram snapshots, so the \
                 weight and mask distributions are left out (continue it with \
                 `gtk train --resume`).",
                run.step, set.run.steps
            ),
            (false, true) => String::new(),
            (false, false) => " Its log has no histogram snapshots (an older run), so the weight \
                 and mask distributions are left out."
                .into(),
        }
    )
}

const NOTE: &str = "Bold: the best strategy per task. \"gated, binarized\" is the gated model \
                    with its masks rounded to 0/1 (`W ⊙ 1[M > 0]`), what `gtk export \
                    --binarize` ships.";

/// The Markdown report.
pub(super) fn markdown(
    sections: &[Section],
    comparison: Option<&Figure>,
    runs: &[RunData],
) -> String {
    let mut s = String::new();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let _ = writeln!(s, "# gatekit report: {}\n", names.join(", "));
    if let Some(fig) = comparison {
        let _ = writeln!(s, "## Runs side by side\n");
        let _ = writeln!(s, "{}", runs_table(runs).markdown());
        let _ = writeln!(s, "Legend: {}\n", run_labels(runs).join("; "));
        figure_md(&mut s, fig, "###");
    }
    for sec in sections {
        let run = &sec.run;
        let _ = writeln!(s, "## Run {}\n", run.name);
        let _ = writeln!(s, "{}\n", run_summary(run));
        let _ = writeln!(s, "{}", comparison_table(run).markdown());
        let _ = writeln!(s, "{NOTE}\n");
        if let Some(t) = mask_table(run) {
            let _ = writeln!(
                s,
                "Share of each task's mask entries that are off (M < 0), and in parentheses \
                 still undecided (0.1 < σ(M) < 0.9):\n"
            );
            let _ = writeln!(s, "{}", t.markdown());
        }
        if let Some(t) = similarity_table(run) {
            let _ = writeln!(s, "{SIMILARITY_NOTE}\n");
            let _ = writeln!(s, "{}", t.markdown());
        }
        for fig in &sec.figures {
            figure_md(&mut s, fig, "###");
        }
    }
    s
}

fn figure_md(s: &mut String, fig: &Figure, level: &str) {
    let _ = writeln!(s, "{level} {}\n", fig.title);
    let _ = writeln!(s, "![{}]({}.png)\n", fig.title, fig.stem);
    let _ = writeln!(s, "{} ([SVG]({}.svg))\n", fig.caption, fig.stem);
}

/// The self-contained HTML report.
pub(super) fn html(sections: &[Section], comparison: Option<&Figure>, runs: &[RunData]) -> String {
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let title = format!("gatekit report: {}", names.join(", "));
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { (title) }
                nav {
                    ul {
                        @if comparison.is_some() {
                            li { a href="#runs" { "Runs side by side" } }
                        }
                        @for sec in sections {
                            @for fig in &sec.figures {
                                li {
                                    a href={ "#" (fig.stem) } {
                                        @if sections.len() > 1 { (sec.run.name) ": " }
                                        (fig.title)
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(fig) = comparison {
                    h2 id="runs" { "Runs side by side" }
                    (runs_table(runs).html())
                    (figure_html(fig))
                }
                @for sec in sections {
                    (section_html(sec))
                }
            }
        }
    };
    page.into_string()
}

/// One run's part of report.html: its summary, tables and figures.
fn section_html(sec: &Section) -> Markup {
    let run = &sec.run;
    html! {
        h2 { "Run " (run.name) }
        p { (inline(&run_summary(run))) }
        (comparison_table(run).html())
        p.note { (inline(NOTE)) }
        @if let Some(t) = mask_table(run) {
            p {
                "Share of each task's mask entries that are off (M < 0), and in parentheses \
                 still undecided (0.1 < σ(M) < 0.9):"
            }
            // In slices of a few parameters, each a table that fits a 1280 px window (one
            // table of all LeNet-5's ten parameters was ~1450 px wide and cut columns).
            @for part in t.column_slices(MASK_COLUMNS) {
                div.wide { (part.html()) }
            }
        }
        @if let Some(t) = similarity_table(run) {
            p { (inline(SIMILARITY_NOTE)) }
            (t.html())
        }
        @for fig in &sec.figures {
            (figure_html(fig))
        }
    }
}

/// A figure embedded as a base64 PNG, with links to its files beside the report.
fn figure_html(fig: &Figure) -> Markup {
    html! {
        figure id=(fig.stem) {
            h3 { (fig.title) }
            img src={ "data:image/png;base64," (base64(&fig.png)) } width=(fig.width)
                height=(fig.height) alt=(fig.title) data-file={ (fig.stem) ".png" };
            figcaption {
                (inline(&fig.caption))
                " (" a href={ (fig.stem) ".svg" } { "SVG" } ", "
                a href={ (fig.stem) ".png" } { "PNG" } ")"
            }
        }
    }
}

/// Parameter columns per mask table in report.html: 6 cells of "100.0% (100.0%)" and the task
/// column stay under ~1000 px.
const MASK_COLUMNS: usize = 6;

const CSS: &str = "body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 2em auto; \
padding: 0 1em; color: #222; }\n\
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; }\n\
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }\n\
th:first-child { text-align: left; }\n\
thead th { background: #f3f3f3; }\n\
td.best { font-weight: bold; background: #eaf3e6; }\n\
.wide { overflow-x: auto; }\n\
figure { margin: 2em 0; }\n\
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }\n\
figcaption { color: #444; max-width: 70em; }\n\
code { background: #f5f5f5; padding: 0 0.2em; }\n\
.note { color: #555; }\n";

/// Text with Markdown `code` spans as `<code>`, everything escaped.
fn inline(s: &str) -> Markup {
    html! {
        @for (i, part) in s.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

/// Standard base64 with padding, for data URIs (the `base64` crate, already built for ureq).
fn base64(bytes: &[u8]) -> String {
    BASE64_STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    /// LeNet-5's mask table (10 parameters) is cut into tables that fit a 1280 px window:
    /// at most MASK_COLUMNS parameter columns each, every parameter once, the task column in
    /// each, every row's cells kept.
    #[test]
    fn wide_mask_tables_are_cut_to_fit() {
        let params: Vec<String> = ["conv1", "conv2", "fc1", "fc2", "fc3"]
            .iter()
            .flat_map(|l| [format!("{l}.weight"), format!("{l}.bias")])
            .collect();
        let mut header = vec!["off (undecided), step 6".to_string()];
        header.extend(params.iter().cloned());
        let rows: Vec<Vec<String>> = ["black", "red"]
            .iter()
            .map(|t| {
                std::iter::once(t.to_string())
                    .chain((0..10).map(|i| format!("{i}.0% (100.0%)")))
                    .collect()
            })
            .collect();
        let bold = rows.iter().map(|r| vec![false; r.len()]).collect();
        let table = Table { header, rows, bold };
        let parts = table.column_slices(MASK_COLUMNS);
        assert_eq!(parts.len(), 2);
        let mut seen = Vec::new();
        for p in &parts {
            assert!(p.header.len() <= MASK_COLUMNS + 1, "{:?}", p.header);
            assert_eq!(p.header[0], "off (undecided), step 6");
            assert_eq!(p.rows[1][0], "red");
            // Widest cell "100.0% (100.0%)" at ~8 px a character plus padding, task column
            // ~200 px: the table stays well under 1280 px.
            let width: usize = p
                .header
                .iter()
                .enumerate()
                .map(|(c, h)| {
                    let longest = p.rows.iter().map(|r| r[c].len()).chain([h.len()]).max();
                    if c == 0 {
                        200
                    } else {
                        longest.unwrap_or(0) * 8 + 24
                    }
                })
                .sum();
            assert!(width < 1280, "{width} px: {:?}", p.header);
            seen.extend(p.header[1..].iter().cloned());
            assert_eq!(
                p.rows[0][1..],
                p.header[1..]
                    .iter()
                    .map(|h| {
                        let i = params.iter().position(|x| x == h).unwrap();
                        format!("{i}.0% (100.0%)")
                    })
                    .collect::<Vec<_>>()[..]
            );
        }
        assert_eq!(seen, params);
    }

    #[test]
    fn escapes_and_code_spans() {
        assert_eq!(
            inline("a `<b>` & c").into_string(),
            "a <code>&lt;b&gt;</code> &amp; c"
        );
    }
}
