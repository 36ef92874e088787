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

/// At most this many points are drawn in a raster (more only blacken it).
const MAX_POINTS: usize = 200_000;
/// At most this many rate bins (of at least 5 ms) span a run.
const MAX_BINS: f64 = 4000.0;

/// One population's spikes, gathered as the run goes in bounded memory: a histogram of
/// every spike, and a thinned sample of them for the raster.
struct PopRaster {
    name: String,
    /// Neurons (times the batch).
    n: usize,
    counts: Vec<u32>,
    /// (time in s, index), every `keep_every`-th spike.
    points: Vec<(f64, i64)>,
    keep_every: u64,
    seen: u64,
}

/// What `snnc run --plot` draws, sampled after every step.
pub struct RasterData {
    /// Width of a rate bin (s): 5 ms, or longer for long runs.
    bin: f64,
    duration: f64,
    pops: Vec<PopRaster>,
}

impl RasterData {
    /// For the spiking populations of `net`, over a run of `duration` seconds.
    pub fn new<T: snnc_runtime::scalar::Float>(net: &snnc_runtime::network::Network<T>, duration: f64) -> RasterData {
        let bin = (duration / MAX_BINS).max(5e-3);
        let bins = ((duration / bin).ceil() as usize).max(1);
        let pops = net
            .pops
            .iter()
            .filter(|p| !p.spikes().is_empty())
            .map(|p| PopRaster { name: p.name.clone(), n: p.n * net.batch, counts: vec![0; bins], points: Vec::new(), keep_every: 1, seen: 0 })
            .collect();
        RasterData { bin, duration, pops }
    }

    /// Call after every step.
    pub fn sample<T: snnc_runtime::scalar::Float>(&mut self, net: &snnc_runtime::network::Network<T>) {
        let t = net.time();
        let spiking = net.pops.iter().filter(|p| !p.spikes().is_empty());
        for (r, pop) in self.pops.iter_mut().zip(spiking) {
            let b = ((t / self.bin) as usize).min(r.counts.len() - 1);
            for (k, active) in pop.active().iter().enumerate() {
                r.counts[b] = r.counts[b].saturating_add(active.len() as u32);
                for &i in active {
                    if r.seen % r.keep_every == 0 {
                        r.points.push((t, (k * pop.n) as i64 + i64::from(i)));
                    }
                    r.seen += 1;
                }
            }
            // Too many points: keep every other one, and from now on half as many.
            if r.points.len() > MAX_POINTS {
                let mut k = 0;
                r.points.retain(|_| {
                    k += 1;
                    k % 2 == 1
                });
                r.keep_every *= 2;
            }
        }
    }
}

/// Draws into an RGB buffer with `draw`, then writes `path` as a PNG. The file is
/// written whole or reported (and removed): a full disk is an error, not a truncated
/// image.
fn save_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<(), String> {
    use image::ImageEncoder;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(root)?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| format!("cannot encode `{}`: {e}", path.display()))?;
    std::fs::write(path, &png).map_err(|e| {
        let _ = std::fs::remove_file(path);
        format!("cannot write `{}`: {e}", path.display())
    })
}

/// Spike raster (top) and population rates (bottom), 1200 x 800 px.
pub fn raster_png(path: &Path, data: &RasterData) -> Result<(), String> {
    save_png(path, (1200, 800), |root| draw_raster(root, data))
}

fn draw_raster(root: DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, data: &RasterData) -> Result<(), String> {
    let text = font_available();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the raster: {e}");
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(520);
    let pops = &data.pops;
    let total: usize = pops.iter().map(|p| p.n).sum::<usize>().max(1);
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let ms = data.duration * 1e3;
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
        c.draw_series(p.points.iter().map(|(t, i)| Circle::new((t * 1e3, (offset + (*i as usize % p.n.max(1))) as f64), 1, color.filled())))
            .map_err(|e| err(&e))?;
        offset += p.n;
    }
    let bin = data.bin;
    let rates: Vec<Vec<f64>> = pops.iter().map(|p| p.counts.iter().map(|c| f64::from(*c) / (p.n.max(1) as f64 * bin)).collect()).collect();
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
            series.label(p.name.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if text {
        c.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| err(&e))?;
    }
    Ok(())
}

/// Training curves, 1000 x 700 px: loss (top) and accuracy (bottom) against batches;
/// `train` per batch (thin), `test` per epoch (after that many batches; dots and line).
pub fn curves_png(path: &Path, train: &[(f64, f64)], test: &[(usize, f64, f64)]) -> Result<(), String> {
    save_png(path, (1000, 700), |root| draw_curves(root, train, test))
}

fn draw_curves(root: DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, train: &[(f64, f64)], test: &[(usize, f64, f64)]) -> Result<(), String> {
    let text = font_available();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the training curves: {e}");
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
    Ok(())
}

/// `snnc fit`: the readout's output z and its target f against time, 1200 x 400 px, with
/// the end of learning marked.
pub fn fit_png(path: &Path, z: &[(f64, f64)], f: &[(f64, f64)], learn_end: f64) -> Result<(), String> {
    save_png(path, (1200, 400), |root| {
        let text = font_available();
        let err = |e: &dyn std::fmt::Display| format!("cannot draw the fit: {e}");
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let t_end = z.last().map_or(1.0, |p| p.0);
        let y = z.iter().chain(f).map(|p| p.1.abs()).filter(|v| v.is_finite()).fold(1e-9f64, f64::max).min(10.0) * 1.1;
        let mut chart = ChartBuilder::on(&root);
        chart.margin(10).x_label_area_size(if text { 30 } else { 5 }).y_label_area_size(if text { 50 } else { 5 });
        let mut c = chart.build_cartesian_2d(0.0..t_end, -y..y).map_err(|e| err(&e))?;
        let mut mesh = c.configure_mesh();
        if text {
            mesh.x_desc("time (s)").y_desc("readout");
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| err(&e))?;
        c.draw_series(LineSeries::new(vec![(learn_end, -y), (learn_end, y)], BLACK.mix(0.4).stroke_width(1))).map_err(|e| err(&e))?;
        let clip = |p: &(f64, f64)| (p.0, p.1.clamp(-y, y));
        let tf = c.draw_series(LineSeries::new(f.iter().map(clip), RED.mix(0.6).stroke_width(3))).map_err(|e| err(&e))?;
        if text {
            tf.label("target f").legend(|(x, yy)| PathElement::new(vec![(x, yy), (x + 20, yy)], RED));
        }
        let tz = c.draw_series(LineSeries::new(z.iter().map(clip), BLUE.stroke_width(1))).map_err(|e| err(&e))?;
        if text {
            tz.label("output z (learning, then fixed weights)").legend(|(x, yy)| PathElement::new(vec![(x, yy), (x + 20, yy)], BLUE));
            c.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| err(&e))?;
        }
        Ok(())
    })
}
