//! `gtk report SWEEP` of a grid sweep: per swept key, the selection metric against the key's
//! values (one line per strategy, the 95 % band over seeds), drawn through the selected
//! configuration: the other keys keep the selected configuration's values, so each figure is
//! one axis of the grid through its best point. The numbers are the summary's own cells
//! (`summary.json`), on the split the configurations were ranked on: a figure of test numbers
//! for every configuration would show what a validation selection is meant to hide.

use super::figures::{
    BandGrid, BandPanel, BandSeries, SweepReport, escape, metric_label, metric_range,
};
use super::{BINARIZED, GridSummary, MEAN_ROW, Sweep};
use crate::error::{Error, Result};
use crate::plot::{Figure, Header, Mark, render, strategy_color};
use crate::run_folder::OutputDir;
use crate::run_folder::fsio::write_atomic;
use std::fmt::Write;

/// One swept key's figure, as numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct GridKeyFigure {
    /// The swept key (`run.mask_lr`).
    pub key: String,
    /// File name without extension (`grid_mask_lr`).
    pub stem: String,
    /// The key's values in grid order: x position 0, 1, ….
    pub values: Vec<String>,
    /// The configuration at each x position (the selected one's other values).
    pub configurations: Vec<String>,
    /// The mean over tasks (several tasks) and each task.
    pub panels: Vec<BandPanel>,
}

/// The file stem of a key's figure: `grid_` and the key's name without its table.
fn stem_of(key: &str) -> String {
    let name = key.split_once('.').map_or(key, |(_, n)| n);
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("grid_{safe}")
}

/// The figures' data: one per swept key with at least two values (a key set to one value has
/// nothing to draw against).
pub fn grid_figure_data(summary: &GridSummary) -> Vec<GridKeyFigure> {
    let Some(selected) = summary.configuration(&summary.selected) else {
        return Vec::new();
    };
    let range = metric_range(&summary.metric);
    let split = if summary.selection_split == "val" {
        "validation"
    } else {
        "test"
    };
    let y_desc = format!("{split} {}", metric_label(&summary.metric));
    let mut out = Vec::new();
    for (k, key) in summary.keys.iter().enumerate() {
        // The configurations that differ from the selected one in this key only, in grid
        // order (the grid varies the last key fastest, so this is the key's value order).
        let line: Vec<_> = summary
            .configurations
            .iter()
            .filter(|c| {
                c.settings
                    .iter()
                    .zip(&selected.settings)
                    .enumerate()
                    .all(|(i, (a, b))| i == k || a == b)
            })
            .collect();
        if line.len() < 2 {
            continue;
        }
        let Some(first) = line.first() else {
            continue;
        };
        let rows: Vec<String> = if first.summary.tasks.len() > 1 {
            std::iter::once(MEAN_ROW.to_string())
                .chain(first.summary.tasks.iter().cloned())
                .collect()
        } else {
            first.summary.tasks.clone()
        };
        let values: Vec<String> = line.iter().map(|c| c.settings[k][1].clone()).collect();
        let panels = rows
            .iter()
            .map(|row| BandPanel {
                title: if row == MEAN_ROW {
                    "mean over tasks".into()
                } else {
                    format!("task {row}")
                },
                y_desc: y_desc.clone(),
                x_desc: key.clone(),
                x_labels: values.clone(),
                series: first
                    .summary
                    .strategies
                    .iter()
                    .map(|s| BandSeries {
                        strategy: s.clone(),
                        dots: false,
                        points: line
                            .iter()
                            .enumerate()
                            .filter_map(|(x, c)| {
                                let i = &c.summary.cell(s, row)?.interval;
                                let clip =
                                    |v: Option<f64>| v.unwrap_or(i.mean).clamp(range.0, range.1);
                                Some((x as f64, i.mean, clip(i.low), clip(i.high)))
                            })
                            .collect(),
                    })
                    .filter(|b| !b.points.is_empty())
                    // The measured points themselves, on the line.
                    .flat_map(|b| {
                        [
                            BandSeries {
                                dots: true,
                                ..b.clone()
                            },
                            b,
                        ]
                    })
                    .collect(),
                log_y: false,
            })
            .collect();
        out.push(GridKeyFigure {
            key: key.clone(),
            stem: stem_of(key),
            values,
            configurations: line.iter().map(|c| c.name.clone()).collect(),
            panels,
        });
    }
    out
}

/// Draws one key's figure.
fn key_figure(summary: &GridSummary, data: &GridKeyFigure) -> Result<Figure> {
    let metric = metric_label(&summary.metric);
    let split = if summary.selection_split == "val" {
        "validation"
    } else {
        "test"
    };
    let strategies: Vec<&String> = data
        .panels
        .first()
        .map(|p| {
            p.series
                .iter()
                .filter(|s| !s.dots)
                .map(|s| &s.strategy)
                .collect()
        })
        .unwrap_or_default();
    let legend = strategies
        .iter()
        .map(|s| {
            if *s == BINARIZED {
                (
                    "gated, binarized masks W×1[M>0]".to_string(),
                    strategy_color("gated"),
                    Mark::Dashed,
                )
            } else {
                ((*s).clone(), strategy_color(s), Mark::Line)
            }
        })
        .collect();
    let others: Vec<String> = summary
        .configuration(&summary.selected)
        .map(|c| {
            c.settings
                .iter()
                .filter(|[k, _]| *k != data.key)
                .map(|[k, v]| format!("{k} = {v}"))
                .collect()
        })
        .unwrap_or_default();
    let n = summary.seeds.len();
    let bands = if n < 2 {
        "one seed: no interval".to_string()
    } else {
        format!(
            "bands: {:.0} % confidence interval of the mean over {n} seeds (Student t, {} df)",
            summary.confidence * 100.0,
            n - 1
        )
    };
    let through = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; other keys at the selected configuration's {}",
            others.join(", ")
        )
    };
    let cols = match data.panels.len() {
        0..=3 => data.panels.len().max(1),
        4 => 2,
        _ => 3,
    };
    let grid = BandGrid {
        header: Header {
            title: format!(
                "Final {split} {metric} against {} — grid sweep {}",
                data.key, summary.sweep
            ),
            subtitle: Some(format!(
                "{bands}{through}; {} is better",
                if summary.lower_is_better {
                    "lower"
                } else {
                    "higher"
                }
            )),
            legend,
        },
        panels: data.panels.clone(),
        cols,
    };
    render(
        &data.stem,
        &format!("Final {split} {metric} against {}", data.key),
        format!(
            "Each strategy's final {split} {metric} (the split the configurations are ranked on) \
             at every value of {} with the {:.0} % confidence band over the {n} seeds, clipped to \
             the metric's range{through}. The points are the summary's cells: configurations {}.",
            data.key,
            summary.confidence * 100.0,
            data.configurations
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &grid,
    )
}

/// Reads a finished grid sweep and writes one figure per swept key, `report.md` and
/// `report.html` (the summary's tables and the figures) into the claimed folder `out`.
pub fn write_grid_report(sweep: &Sweep, out: OutputDir) -> Result<SweepReport> {
    let summary = GridSummary::of_sweep(sweep)?;
    let data = grid_figure_data(&summary);
    let dest = out.destination().to_path_buf();
    let tmp = out.path().to_path_buf();
    let mut figures = Vec::new();
    let mut md = format!("# gatekit report: grid sweep {}\n\n", summary.sweep);
    md.push_str(&summary.markdown());
    let mut html_figures = String::new();
    for d in &data {
        let fig = key_figure(&summary, d)?;
        for (ext, bytes) in [("png", fig.png.as_slice()), ("svg", fig.svg.as_bytes())] {
            let name = format!("{}.{ext}", fig.stem);
            write_atomic(&tmp.join(&name), bytes)?;
            figures.push(dest.join(name));
        }
        let _ = write!(
            md,
            "\n## {title}\n\n![{title}]({stem}.png)\n\n{caption} ([SVG]({stem}.svg))\n",
            title = fig.title,
            stem = fig.stem,
            caption = fig.caption,
        );
        let _ = write!(
            html_figures,
            "<h2>{}</h2>\n{}\n<p>{}</p>\n",
            escape(&fig.title),
            fig.svg
                .trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            escape(&fig.caption)
        );
    }
    let single: Vec<&String> = summary
        .keys
        .iter()
        .filter(|k| !data.iter().any(|d| &d.key == *k))
        .collect();
    if !single.is_empty() {
        let _ = writeln!(
            md,
            "\nNot drawn (one value in the grid): {}.",
            single
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    write_atomic(&tmp.join("report.md"), md.as_bytes())?;
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>gatekit grid sweep {name}</title>\
         <style>body{{font-family:sans-serif;max-width:1400px;margin:2em auto}}img{{max-width:100%}}</style>\
         </head><body>\n<h1>gatekit report: grid sweep {name}</h1>\n<pre>{text}</pre>\n{html_figures}</body></html>\n",
        name = escape(&summary.sweep),
        text = escape(&summary.text()),
    );
    write_atomic(&tmp.join("report.html"), html.as_bytes())?;
    out.finish().map_err(|e| Error::Run {
        path: dest.clone(),
        message: format!("cannot finish the report: {e}"),
    })?;
    Ok(SweepReport {
        out: dest.clone(),
        figures,
        markdown: dest.join("report.md"),
        html: dest.join("report.html"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_name_the_key_without_its_table() {
        assert_eq!(stem_of("run.mask_lr"), "grid_mask_lr");
        assert_eq!(stem_of("defaults.x_range"), "grid_x_range");
        assert_eq!(stem_of("lr"), "grid_lr");
    }
}
