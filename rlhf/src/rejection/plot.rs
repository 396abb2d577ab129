//! SVG plots of a rejection-sampling run: reward against the round, and the expected max
//! and median reward against the number of samples `N` (the paper's Figure 7).

use std::path::Path;

use plotters::prelude::*;

use super::run::RoundReport;
use crate::error::RlhfError;
use crate::rollout::HeldOut;

fn plot_err(path: &Path, e: impl std::fmt::Display) -> RlhfError {
    RlhfError::io(path, std::io::Error::other(e.to_string()))
}

/// One curve: its name, colour and points.
pub type Series = (String, RGBColor, Vec<(f64, f64)>);

/// A line chart of `series` into `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[Series],
) -> Result<(), RlhfError> {
    let points = series
        .iter()
        .flat_map(|s| s.2.iter())
        .filter(|p| p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(());
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.1).max(1e-3);
    llama2::atomic::write_file(path, |tmp| {
        let root = SVGBackend::new(tmp, (800, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("reward")
            .draw()
            .map_err(|e| plot_err(path, e))?;
        for (name, colour, pts) in series {
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                .map_err(|e| plot_err(path, e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))
    })
}

fn lighter(c: u8) -> u8 {
    ((u16::from(c) + 255) / 2) as u8
}

/// `rewards.svg` (held-out, kept, max / median / mean of the samples per round; round 0
/// is the initial policy) and `best_of_n.svg` (one max and one median curve per round).
pub fn plot_rounds(initial: &HeldOut, rounds: &[RoundReport], dir: &Path) -> Result<(), RlhfError> {
    let by_round = |f: &dyn Fn(&RoundReport) -> f64| -> Vec<(f64, f64)> {
        rounds.iter().map(|r| (r.round as f64, f(r))).collect()
    };
    let mut held_out = vec![(0.0, initial.reward)];
    held_out.extend(by_round(&|r| r.held_out.reward));
    line_chart(
        &dir.join("rewards.svg"),
        "Rejection sampling: reward per round",
        "round",
        &[
            ("held-out (one sample)".into(), BLUE, held_out),
            (
                "kept (best vs archive)".into(),
                GREEN,
                by_round(&|r| r.kept_mean),
            ),
            ("max of K".into(), RED, by_round(&|r| r.sample_max)),
            (
                "median of K".into(),
                MAGENTA,
                by_round(&|r| r.sample_median),
            ),
        ],
    )?;
    let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let mut series = Vec::new();
    for (i, r) in rounds.iter().enumerate() {
        let colour = palette[i % palette.len()];
        series.push((
            format!("round {} max", r.round),
            colour,
            r.best_of_n
                .iter()
                .map(|&(n, max, _)| (n as f64, max))
                .collect(),
        ));
        series.push((
            format!("round {} median", r.round),
            RGBColor(lighter(colour.0), lighter(colour.1), lighter(colour.2)),
            r.best_of_n
                .iter()
                .map(|&(n, _, med)| (n as f64, med))
                .collect(),
        ));
    }
    line_chart(
        &dir.join("best_of_n.svg"),
        "Max and median reward of N samples",
        "N",
        &series,
    )
}
