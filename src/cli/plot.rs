//! PNG figures: a spike raster with population rates (`snnc run --plot`) and training
//! curves (`snnc train --plot`).

use plotters::prelude::*;
use std::path::Path;

/// Registers a system sans-serif font for labels (plotters' ab_glyph renderer needs the
/// bytes). Returns false when none is found: figures are then drawn without text.
fn font_available() -> bool {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FONT.get_or_init(|| {
        let candidates = [
            std::env::var("SNNC_FONT").unwrap_or_default(),
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into(),
            "/usr/share/fonts/dejavu/DejaVuSans.ttf".into(),
            "/usr/share/fonts/TTF/DejaVuSans.ttf".into(),
            "/System/Library/Fonts/Supplemental/Arial.ttf".into(),
        ];
        for c in candidates.iter().filter(|c| !c.is_empty()) {
            if let Ok(bytes) = std::fs::read(c) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// One population's spikes: (name, neurons, times in s, indices).
pub struct Raster<'a> {
    pub name: &'a str,
    pub n: usize,
    pub t: &'a [f64],
    pub i: &'a [i64],
}

/// Spike raster (top) and population rates in 5 ms bins (bottom), 1200 x 800 px.
pub fn raster_png(path: &Path, pops: &[Raster], duration: f64) -> Result<(), String> {
    let text = font_available();
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw `{}`: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(520);
    let total: usize = pops.iter().map(|p| p.n).sum::<usize>().max(1);
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let ms = duration * 1e3;
    let mut chart = ChartBuilder::on(&top);
    chart.margin(10).x_label_area_size(if text { 30 } else { 5 }).y_label_area_size(if text { 60 } else { 5 });
    if text {
        chart.caption("spikes", ("sans-serif", 20));
    }
    let mut c = chart.build_cartesian_2d(0.0..ms, 0.0..total as f64).map_err(|e| err(&e))?;
    let mut mesh = c.configure_mesh();
    mesh.disable_mesh();
    if text {
        mesh.y_desc("neuron").x_desc("time (ms)");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| err(&e))?;
    let mut offset = 0usize;
    for (k, p) in pops.iter().enumerate() {
        let color = colors[k % colors.len()];
        // Subsample huge rasters to at most 200k points.
        let stride = (p.t.len() / 200_000).max(1);
        c.draw_series(
            p.t.iter().zip(p.i).step_by(stride).map(|(t, i)| Circle::new((t * 1e3, (offset + (*i as usize % p.n)) as f64), 1, color.filled())),
        )
        .map_err(|e| err(&e))?;
        offset += p.n;
    }
    let bin = 5e-3;
    let bins = ((duration / bin).ceil() as usize).max(1);
    let rates: Vec<Vec<f64>> = pops
        .iter()
        .map(|p| {
            let mut h = vec![0.0; bins];
            for t in p.t {
                let b = ((t / bin) as usize).min(bins - 1);
                h[b] += 1.0;
            }
            h.iter().map(|c| c / (p.n.max(1) as f64 * bin)).collect()
        })
        .collect();
    let peak = rates.iter().flatten().fold(1.0f64, |m, v| m.max(*v));
    let mut chart = ChartBuilder::on(&bottom);
    chart.margin(10).x_label_area_size(if text { 30 } else { 5 }).y_label_area_size(if text { 60 } else { 5 });
    let mut c = chart.build_cartesian_2d(0.0..ms, 0.0..peak * 1.1).map_err(|e| err(&e))?;
    let mut mesh = c.configure_mesh();
    if text {
        mesh.y_desc("rate (Hz)").x_desc("time (ms)");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| err(&e))?;
    for (k, (p, r)) in pops.iter().zip(&rates).enumerate() {
        let color = colors[k % colors.len()];
        let series = c
            .draw_series(LineSeries::new(r.iter().enumerate().map(|(b, v)| ((b as f64 + 0.5) * bin * 1e3, *v)), color.stroke_width(2)))
            .map_err(|e| err(&e))?;
        if text {
            series.label(p.name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if text {
        c.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

/// Training curves, 1000 x 700 px: loss (top) and accuracy (bottom) against batches;
/// `train` per batch (thin), `test` per epoch (after that many batches; dots and line).
pub fn curves_png(path: &Path, train: &[(f64, f64)], test: &[(usize, f64, f64)]) -> Result<(), String> {
    let text = font_available();
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw `{}`: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(350);
    let n = train.len().max(1) as f64;
    let max_loss = train.iter().map(|t| t.0).chain(test.iter().map(|t| t.1)).filter(|v| v.is_finite()).fold(1e-12f64, f64::max);
    for (area, what) in [(&top, 0), (&bottom, 1)] {
        let y_max = if what == 0 { max_loss * 1.05 } else { 1.0 };
        let mut chart = ChartBuilder::on(area);
        chart.margin(10).x_label_area_size(if text { 30 } else { 5 }).y_label_area_size(if text { 60 } else { 5 });
        let mut c = chart.build_cartesian_2d(0.0..n, 0.0..y_max).map_err(|e| err(&e))?;
        let mut mesh = c.configure_mesh();
        if text {
            mesh.y_desc(if what == 0 { "loss per trial" } else { "accuracy" }).x_desc("batch");
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| err(&e))?;
        let pick = |l: f64, a: f64| if what == 0 { l } else { a };
        let tr = c
            .draw_series(LineSeries::new(train.iter().enumerate().map(|(b, (l, a))| (b as f64 + 1.0, pick(*l, *a))), BLUE.mix(0.5).stroke_width(1)))
            .map_err(|e| err(&e))?;
        if text {
            tr.label("train (per batch)").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        }
        let points: Vec<(f64, f64)> = test.iter().map(|(b, l, a)| (*b as f64, pick(*l, *a))).collect();
        let te = c.draw_series(LineSeries::new(points.clone(), RED.stroke_width(2))).map_err(|e| err(&e))?;
        if text {
            te.label("test (held out, per epoch)").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        }
        c.draw_series(points.iter().map(|p| Circle::new(*p, 3, RED.filled()))).map_err(|e| err(&e))?;
        if text {
            c.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}
