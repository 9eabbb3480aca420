//! `--plot FILE`: latency over time as an SVG (p50 and p99 of acknowledged
//! transfers, per second of the run). A tail that grows during a run (a queue
//! building up, a compaction, a GC pause in a dependency) is invisible in the
//! run-wide percentiles and obvious here. SVG because it needs no font files or
//! image codecs: plotters writes text as `<text>` elements the viewer renders.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::stats::SecondPoint;

/// Draws `series` into an SVG at `path`.
pub fn latency_svg(path: &Path, title: &str, series: &[SecondPoint]) -> anyhow::Result<()> {
    let p50: Vec<(f64, f64)> = points(series, |p| p.p50_ms);
    let p99: Vec<(f64, f64)> = points(series, |p| p.p99_ms);
    let x_max = series.last().map_or(1.0, |p| p.t_s as f64 + 1.0);
    let y_max = p99
        .iter()
        .chain(&p50)
        .map(|&(_, y)| y)
        .fold(1.0_f64, f64::max)
        * 1.1;

    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the load started")
            .y_desc("latency (ms)")
            .draw()?;
        chart
            .draw_series(LineSeries::new(p50, &BLUE))?
            .label("p50")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(p99, &RED))?
            .label("p99")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("plotting to {}", path.display()))
}

/// The seconds that have a value, as (t, ms).
fn points(series: &[SecondPoint], value: impl Fn(&SecondPoint) -> Option<f64>) -> Vec<(f64, f64)> {
    series
        .iter()
        .filter_map(|p| value(p).map(|v| (p.t_s as f64, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_both_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lat.svg");
        let series: Vec<SecondPoint> = (0..5)
            .map(|t| SecondPoint {
                t_s: t,
                acked: 10,
                errors: 0,
                p50_ms: Some(1.0 + t as f64),
                p99_ms: (t != 2).then_some(10.0 + t as f64),
            })
            .collect();
        latency_svg(&path, "test run", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("p99") && svg.contains("test run"));
        assert!(svg.matches("<polyline").count() >= 2);
    }
}
