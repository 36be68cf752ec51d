//! `--plot FILE.svg`: bus bandwidth against message size (log2 x axis), one line per
//! run (this invocation's runs and those of the `--compare` reports), out of place.

use std::path::Path;

use plotters::prelude::*;

use crate::output::Run;
use crate::sizes::format_size;

/// One line of the plot: its legend and `(size in bytes, busbw in GB/s)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points by increasing size (sizes of 0 bytes are skipped: log axis).
    pub points: Vec<(u64, f64)>,
}

impl Series {
    /// The out-of-place busbw of `run`, named `<prefix><label> <collective>`.
    pub fn from_run(run: &Run, prefix: &str) -> Series {
        Series {
            name: format!("{prefix}{} {}", run.label, run.collective),
            points: run
                .results
                .iter()
                .filter(|r| r.size > 0)
                .map(|r| (r.size, r.out_of_place.busbw))
                .collect(),
        }
    }
}

fn tick_label(log2: f64) -> String {
    if (log2 - log2.round()).abs() < 1e-9 && log2 >= 0.0 {
        format_size(1usize << (log2.round() as u32).min(62))
    } else {
        format!("2^{log2:.1}")
    }
}

/// Draws `series` into the SVG file `path`.
pub fn plot(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("plotting {}: {e}", path.display());
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((u64::MAX, 0u64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x0, x1) = if lo > hi {
        (0.0, 10.0)
    } else {
        let (a, b) = ((lo as f64).log2().floor(), (hi as f64).log2().ceil());
        if b > a { (a, b) } else { (a - 1.0, a + 1.0) }
    };
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0f64, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };

    let root = SVGBackend::new(path, (1024, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0f64..ymax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("message size (bytes, log scale)")
        .y_desc("busbw (GB/s)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .x_labels(((x1 - x0) as usize + 1).min(14))
        .x_label_formatter(&|x| tick_label(*x))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.0 > 0 && p.1.is_finite())
            .map(|&(x, y)| ((x as f64).log2(), y))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_sizes() {
        assert_eq!(tick_label(10.0), "1 KiB");
        assert_eq!(tick_label(3.0), "8 B");
        assert_eq!(tick_label(2.5), "2^2.5");
    }
}
