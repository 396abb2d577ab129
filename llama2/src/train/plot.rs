//! SVG plot of the loss and learning-rate curves of a run.

use std::path::Path;

use plotters::prelude::*;

use super::error::TrainError;
use super::log::StepMetrics;

/// Reads one value of a step.
type Metric<'a> = &'a dyn Fn(&StepMetrics) -> f64;

/// Draws loss (top) and learning rate (bottom) against the step into an SVG
/// file, written atomically ([`crate::atomic::write_file`]).
pub fn plot_curves(metrics: &[StepMetrics], path: &Path) -> Result<(), TrainError> {
    if metrics.is_empty() {
        return Ok(());
    }
    crate::atomic::write_file(path, |tmp| draw(metrics, tmp, path))
}

fn draw(metrics: &[StepMetrics], tmp: &Path, path: &Path) -> Result<(), TrainError> {
    let err = |e: &dyn std::fmt::Display| TrainError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let root = SVGBackend::new(tmp, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(400);
    let first = metrics[0].step as f64;
    let last = (metrics[metrics.len() - 1].step as f64).max(first + 1.0);
    let curves: [(&str, Metric, _, RGBColor); 2] = [
        ("loss", &|m: &StepMetrics| m.loss, top, BLUE),
        ("learning rate", &|m: &StepMetrics| m.lr, bottom, RED),
    ];
    for (name, value, area, color) in curves {
        let values: Vec<f64> = metrics
            .iter()
            .map(value)
            .filter(|v| v.is_finite())
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (lo.min(0.0), lo.max(0.0) + 1.0)
        };
        let pad = (hi - lo) * 0.05;
        let mut chart = ChartBuilder::on(&area)
            .caption(name, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(first..last, (lo - pad)..(hi + pad))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                metrics.iter().map(|m| (m.step as f64, value(m))),
                color,
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
