//! Figures, each written as PNG and SVG: reliability diagrams (equal-width and equal-mass
//! bins), risk–coverage curves of every head of a cell, and score histograms of correct vs
//! wrong predictions. Sizes and fonts are chosen to be readable at 100% zoom.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use ueb_metrics::{Binning, Predictions, ReliabilityBin, reliability_bins, risk_coverage_curve};

use crate::error::{ReportError, Result, io};
use crate::font::{FAMILY, ensure_font};

/// Line and bar colours (Tableau 10), one per head in order.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const BAR: RGBColor = RGBColor(31, 119, 180);
const GAP: RGBColor = RGBColor(214, 39, 40);
const CORRECT: RGBColor = RGBColor(31, 119, 180);
const WRONG: RGBColor = RGBColor(214, 39, 40);
const HIST: RGBColor = RGBColor(120, 120, 120);

/// Most points a curve keeps (evenly thinned, ends kept) so that SVGs stay small.
const MAX_CURVE_POINTS: usize = 1500;

/// Something that can be drawn on any plotters backend.
pub trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the figure on `root`; errors are plotters' messages.
    ///
    /// # Errors
    /// A drawing error of the backend, as text.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String>;
    /// The data the figure draws, as CSV with a header line (written beside the PNG and SVG, so
    /// the figure can be redrawn with other tools).
    fn data_csv(&self) -> String;
}

/// One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// An optional number as a CSV field (empty when absent); `{}` prints the shortest text that
/// reads back to the same f64.
fn csv_num(v: Option<f64>) -> String {
    v.map_or_else(String::new, |x| format!("{x}"))
}

fn e<T: std::fmt::Display>(err: T) -> String {
    err.to_string()
}

/// `1234` → `1234`, `12345` → `12.3k`, `1234567` → `1.23M`.
fn compact(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

/// Renders `fig` to PNG bytes (8-bit RGB).
///
/// # Errors
/// A font that cannot be found, a drawing or encoding error.
pub fn png_bytes<F: Figure>(fig: &F, name: &Path) -> Result<Vec<u8>> {
    ensure_font()?;
    let (w, h) = fig.size();
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = crate::text::PngBackend(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
        fig.draw(&root).map_err(|message| ReportError::Plot {
            path: name.to_path_buf(),
            message,
        })?;
        root.present().map_err(|err| ReportError::Plot {
            path: name.to_path_buf(),
            message: err.to_string(),
        })?;
    }
    let mut out = Vec::new();
    let png_err = |source| ReportError::Png {
        path: name.to_path_buf(),
        source,
    };
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(png_err)?;
        writer.write_image_data(&buf).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
    }
    Ok(out)
}

/// Renders `fig` to an SVG document.
///
/// # Errors
/// A font that cannot be found (plotters measures text with it), or a drawing error.
pub fn svg_string<F: Figure>(fig: &F, name: &Path) -> Result<String> {
    ensure_font()?;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, fig.size()).into_drawing_area();
        fig.draw(&root).map_err(|message| ReportError::Plot {
            path: name.to_path_buf(),
            message,
        })?;
        root.present().map_err(|err| ReportError::Plot {
            path: name.to_path_buf(),
            message: err.to_string(),
        })?;
    }
    Ok(s)
}

/// Writes `stem.png` and `stem.svg`; returns both paths.
///
/// # Errors
/// As [`png_bytes`] and [`svg_string`], or a write error.
pub fn write_figure<F: Figure>(fig: &F, stem: &Path) -> Result<[PathBuf; 3]> {
    if let Some(parent) = stem.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let png_path = stem.with_extension("png");
    let svg_path = stem.with_extension("svg");
    let csv_path = stem.with_extension("csv");
    std::fs::write(&png_path, png_bytes(fig, &png_path)?).map_err(io(&png_path))?;
    std::fs::write(&svg_path, svg_string(fig, &svg_path)?).map_err(io(&svg_path))?;
    std::fs::write(&csv_path, fig.data_csv()).map_err(io(&csv_path))?;
    Ok([png_path, svg_path, csv_path])
}

/// A reliability diagram of one head: equal-width bins on the left, equal-mass on the right;
/// each with bars of accuracy per bin, the gap to the diagonal, Wilson 95% intervals, the ECE
/// in the legend, and a histogram of the bin counts below.
#[derive(Debug, Clone)]
pub struct ReliabilityFigure {
    title: String,
    bins: usize,
    n: usize,
    equal_width: Vec<ReliabilityBin>,
    equal_mass: Vec<ReliabilityBin>,
    ece: f64,
    ece_em: f64,
}

impl ReliabilityFigure {
    /// Bins the head's top-label confidence with `bins` bins of each kind.
    ///
    /// # Errors
    /// Zero bins.
    pub fn new(
        title: impl Into<String>,
        pred: &Predictions,
        bins: usize,
    ) -> std::result::Result<Self, ueb_metrics::MetricsError> {
        Ok(Self {
            title: title.into(),
            bins,
            n: pred.len(),
            equal_width: reliability_bins(pred, Binning::EqualWidth(bins))?,
            equal_mass: reliability_bins(pred, Binning::EqualMass(bins))?,
            ece: ueb_metrics::calibration::ece(pred, bins),
            ece_em: ueb_metrics::calibration::ece_em(pred, bins),
        })
    }
}

fn bar_span(b: &ReliabilityBin) -> (f64, f64) {
    let (lo, hi) = (b.lower, b.upper);
    // Equal-mass bins of tied confidences have no width: keep them visible.
    const MIN_WIDTH: f64 = 0.004;
    if hi - lo < MIN_WIDTH {
        let c = f64::midpoint(lo, hi);
        (
            (c - MIN_WIDTH / 2.0).max(0.0),
            (c + MIN_WIDTH / 2.0).clamp(MIN_WIDTH, 1.0),
        )
    } else {
        (lo, hi)
    }
}

fn reliability_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    bins: &[ReliabilityBin],
    ece_label: &str,
    counts_on_bars: bool,
) -> std::result::Result<(), String> {
    let (_, h) = area.dim_in_pixel();
    let (top, bottom) = area.split_vertically((f64::from(h) * 0.68) as u32);
    let mut chart = ChartBuilder::on(&top)
        .caption(caption, (FAMILY, 19))
        .margin(8)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_labels(6)
        .y_labels(6)
        .max_light_lines(0)
        .bold_line_style(BLACK.mix(0.08))
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .x_desc("confidence")
        .y_desc("accuracy")
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(e)?;
    let filled: Vec<&ReliabilityBin> = bins.iter().filter(|b| b.count > 0).collect();
    chart
        .draw_series(filled.iter().filter_map(|b| {
            let (lo, hi) = bar_span(b);
            Some(Rectangle::new([(lo, 0.0), (hi, b.accuracy?)], BAR.mix(0.75).filled()))
        }))
        .map_err(e)?
        .label("accuracy per bin")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], BAR.mix(0.75).filled()));
    chart
        .draw_series(filled.iter().filter_map(|b| {
            let (lo, hi) = bar_span(b);
            Some(Rectangle::new(
                [(lo, b.accuracy?), (hi, b.mean_confidence?)],
                GAP.mix(0.3).filled(),
            ))
        }))
        .map_err(e)?
        .label(ece_label)
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], GAP.mix(0.3).filled()));
    chart
        .draw_series(filled.iter().filter_map(|b| {
            let (lo, hi) = bar_span(b);
            Some(Rectangle::new(
                [(lo, b.accuracy?), (hi, b.mean_confidence?)],
                GAP.stroke_width(1),
            ))
        }))
        .map_err(e)?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            8,
            5,
            BLACK.mix(0.7).stroke_width(2),
        ))
        .map_err(e)?
        .label("perfect calibration")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.7).stroke_width(2)));
    chart
        .draw_series(filled.iter().filter_map(|b| {
            let (lo, hi) = bar_span(b);
            let (wl, wh) = b.wilson?;
            let x = f64::midpoint(lo, hi);
            let cap = ((hi - lo) * 0.25).min(0.012);
            Some(PathElement::new(
                vec![
                    (x - cap, wl),
                    (x + cap, wl),
                    (x, wl),
                    (x, wh),
                    (x - cap, wh),
                    (x + cap, wh),
                ],
                BLACK.stroke_width(2),
            ))
        }))
        .map_err(e)?
        .label("Wilson 95% interval")
        .legend(|(x, y)| PathElement::new(vec![(x + 9, y - 7), (x + 9, y + 7)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .margin(10)
        .draw()
        .map_err(e)?;

    let max_count = bins.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    let mut hist = ChartBuilder::on(&bottom)
        .margin(8)
        .margin_right(24)
        .margin_top(4)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..1f64, 0f64..max_count * 1.22)
        .map_err(e)?;
    hist.configure_mesh()
        .x_labels(6)
        .y_labels(4)
        .max_light_lines(0)
        .bold_line_style(BLACK.mix(0.08))
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| compact(*v as u64))
        .x_desc("confidence")
        .y_desc("samples")
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(e)?;
    hist.draw_series(filled.iter().map(|b| {
        let (lo, hi) = bar_span(b);
        Rectangle::new([(lo, 0.0), (hi, b.count as f64)], HIST.mix(0.6).filled())
    }))
    .map_err(e)?;
    if counts_on_bars {
        let style = TextStyle::from((FAMILY, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        hist.draw_series(filled.iter().map(|b| {
            let (lo, hi) = bar_span(b);
            Text::new(
                compact(b.count),
                (f64::midpoint(lo, hi), b.count as f64 + max_count * 0.03),
                style.clone(),
            )
        }))
        .map_err(e)?;
    }
    Ok(())
}

impl Figure for ReliabilityFigure {
    fn size(&self) -> (u32, u32) {
        (1300, 760)
    }

    /// `binning,bin,lower,upper,count,mean_confidence,accuracy,wilson_low,wilson_high`, the
    /// equal-width bins then the equal-mass ones (empty bins with empty means).
    fn data_csv(&self) -> String {
        let mut s = String::from("binning,bin,lower,upper,count,mean_confidence,accuracy,wilson_low,wilson_high\n");
        for (name, bins) in [("equal_width", &self.equal_width), ("equal_mass", &self.equal_mass)] {
            for (k, b) in bins.iter().enumerate() {
                s.push_str(&format!(
                    "{name},{k},{},{},{},{},{},{},{}\n",
                    b.lower,
                    b.upper,
                    b.count,
                    csv_num(b.mean_confidence),
                    csv_num(b.accuracy),
                    csv_num(b.wilson.map(|w| w.0)),
                    csv_num(b.wilson.map(|w| w.1)),
                ));
            }
        }
        s
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(e)?;
        let body = root.titled(&self.title, (FAMILY, 22)).map_err(e)?;
        let (w, _) = body.dim_in_pixel();
        let (left, right) = body.split_horizontally(w / 2);
        let per_bin = self.n.div_ceil(self.bins.max(1)) as u64;
        reliability_panel(
            &left,
            &format!("equal-width bins (M = {})", self.bins),
            &self.equal_width,
            &format!("gap to diagonal, ECE = {:.4}", self.ece),
            true,
        )?;
        reliability_panel(
            &right,
            &format!(
                "equal-mass bins (M = {}, ≤ {} samples each)",
                self.bins,
                compact(per_bin)
            ),
            &self.equal_mass,
            &format!("gap to diagonal, ECE_em = {:.4}", self.ece_em),
            false,
        )
    }
}

/// Evenly thins `points` to at most `max` (the last point is always kept).
fn thin<T: Copy>(points: &[T], max: usize) -> Vec<T> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let step = points.len().div_ceil(max - 1);
    let mut out: Vec<T> = points.iter().step_by(step).copied().collect();
    if let Some(&last) = points.last()
        && !(points.len() - 1).is_multiple_of(step)
    {
        out.push(last);
    }
    out
}

/// One head's input of [`RiskCoverageFigure::new`]: name, errors, score, AURC for the legend.
pub type CurveInput<'a> = (&'a str, &'a [bool], &'a [f64], Option<f64>);

/// One head's curve for [`RiskCoverageFigure`].
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// `(coverage, risk)` points, by increasing coverage.
    pub points: Vec<(f64, f64)>,
}

/// Risk–coverage curves of every head of one cell on one plot, with the oracle and random
/// references when every head has the same errors.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskCoverageFigure {
    title: String,
    curves: Vec<Curve>,
    /// The shared error rate, when all heads make the same errors.
    error_rate: Option<f64>,
}

impl RiskCoverageFigure {
    /// Curves of `heads`: (name, errors, score, AURC for the legend).
    ///
    /// # Errors
    /// Empty input, a length mismatch or a NaN/Inf score.
    pub fn new(
        title: impl Into<String>,
        heads: &[CurveInput<'_>],
    ) -> std::result::Result<Self, ueb_metrics::MetricsError> {
        let mut curves = Vec::new();
        for (name, errors, score, aurc) in heads {
            let pts: Vec<(f64, f64)> = risk_coverage_curve(errors, score)?
                .into_iter()
                .map(|p| (p.coverage, p.risk))
                .collect();
            let label = match aurc {
                Some(a) => format!("{name} (AURC {:.4})", a),
                None => (*name).to_string(),
            };
            curves.push(Curve {
                label,
                points: thin(&pts, MAX_CURVE_POINTS),
            });
        }
        let same = heads.windows(2).all(|w| w[0].1 == w[1].1);
        let error_rate = match heads.first() {
            Some((_, errors, ..)) if same && !errors.is_empty() => {
                Some(errors.iter().filter(|&&x| x).count() as f64 / errors.len() as f64)
            }
            _ => None,
        };
        Ok(Self {
            title: title.into(),
            curves,
            error_rate,
        })
    }
}

impl Figure for RiskCoverageFigure {
    fn size(&self) -> (u32, u32) {
        (1100, 720)
    }

    /// `curve,coverage,risk`: every head's points as drawn (each curve thinned to at most
    /// `MAX_CURVE_POINTS`), then, when every head makes the same errors, the `random` and
    /// `oracle` references at the 200 coverages the figure draws them at.
    fn data_csv(&self) -> String {
        let mut s = String::from("curve,coverage,risk\n");
        for c in &self.curves {
            let label = csv_field(&c.label);
            for &(x, y) in &c.points {
                s.push_str(&format!("{label},{x},{y}\n"));
            }
        }
        if let Some(r) = self.error_rate {
            for k in 1..=200 {
                let c = f64::from(k) / 200.0;
                s.push_str(&format!("random,{c},{r}\n"));
            }
            for k in 1..=200 {
                let c = f64::from(k) / 200.0;
                s.push_str(&format!("oracle,{c},{}\n", (c - (1.0 - r)).max(0.0) / c));
            }
        }
        s
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(e)?;
        // The scale follows the curves from 5% coverage on: the first few samples' risk is
        // noise (one error among 3 samples is a risk of 0.33) and would flatten the rest.
        let top = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().filter(|p| p.0 >= 0.05).map(|p| p.1))
            .chain(self.error_rate)
            .fold(0.0f64, f64::max);
        let y_max = (top * 1.15).clamp(0.01, 1.0);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 22))
            .margin(12)
            .margin_right(28)
            .x_label_area_size(50)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..1f64, 0f64..y_max)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_labels(11)
            .y_labels(8)
            .max_light_lines(0)
            .bold_line_style(BLACK.mix(0.08))
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.3}"))
            .x_desc("coverage (fraction kept, most confident first)")
            .y_desc("risk (error rate of the kept)")
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 17))
            .draw()
            .map_err(e)?;
        if let Some(r) = self.error_rate {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, r), (1.0, r)],
                    8,
                    5,
                    BLACK.mix(0.5).stroke_width(2),
                ))
                .map_err(e)?
                .label("random")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], BLACK.mix(0.5).stroke_width(2)));
            // Oracle: errors kept last, risk = max(0, c − (1 − r))/c.
            let oracle: Vec<(f64, f64)> = (1..=200)
                .map(|k| {
                    let c = f64::from(k) / 200.0;
                    (c, ((c - (1.0 - r)).max(0.0) / c).min(y_max))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(oracle, BLACK.stroke_width(2)))
                .map_err(e)?
                .label("oracle")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], BLACK.stroke_width(2)));
        }
        for (k, curve) in self.curves.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let pts: Vec<(f64, f64)> = curve.points.iter().map(|&(c, r)| (c, r.min(y_max))).collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(3)))
                .map_err(e)?
                .label(curve.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .margin(12)
            .draw()
            .map_err(e)
    }
}

/// One head's panel of [`ScoreHistogramFigure`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScorePanel {
    /// Panel title (head name and ROC-AUC).
    pub title: String,
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Fraction of the correct predictions in each bin.
    pub correct: Vec<f64>,
    /// Fraction of the wrong predictions in each bin.
    pub wrong: Vec<f64>,
    /// Number of correct predictions.
    pub n_correct: usize,
    /// Number of wrong predictions.
    pub n_wrong: usize,
}

/// Bins of each score histogram panel.
pub const SCORE_BINS: usize = 30;

impl ScorePanel {
    /// Histograms of `score` for the correct and the wrong predictions, over the score's
    /// range in [`SCORE_BINS`] equal-width bins, each normalised to its group's size.
    pub fn new(title: impl Into<String>, errors: &[bool], score: &[f64]) -> Self {
        let finite = score.iter().copied().filter(|v| v.is_finite());
        let (mut lo, mut hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            (lo, hi) = (lo - 0.5, hi + 0.5);
        }
        let mut correct = vec![0.0; SCORE_BINS];
        let mut wrong = vec![0.0; SCORE_BINS];
        let (mut n_correct, mut n_wrong) = (0usize, 0usize);
        for (&err, &v) in errors.iter().zip(score) {
            if !v.is_finite() {
                continue;
            }
            let b = (((v - lo) / (hi - lo)) * SCORE_BINS as f64) as usize;
            let b = b.min(SCORE_BINS - 1);
            if err {
                wrong[b] += 1.0;
                n_wrong += 1;
            } else {
                correct[b] += 1.0;
                n_correct += 1;
            }
        }
        for (v, n) in [(&mut correct, n_correct), (&mut wrong, n_wrong)] {
            if n > 0 {
                v.iter_mut().for_each(|x| *x /= n as f64);
            }
        }
        Self {
            title: title.into(),
            lo,
            hi,
            correct,
            wrong,
            n_correct,
            n_wrong,
        }
    }
}

/// Score histograms (correct vs wrong) of every head of one cell, one panel per head.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreHistogramFigure {
    title: String,
    panels: Vec<ScorePanel>,
}

/// Panels per row of [`ScoreHistogramFigure`].
const PANEL_COLUMNS: usize = 3;

impl ScoreHistogramFigure {
    /// A figure of `panels`.
    pub fn new(title: impl Into<String>, panels: Vec<ScorePanel>) -> Self {
        Self {
            title: title.into(),
            panels,
        }
    }

    fn grid(&self) -> (usize, usize) {
        let cols = self.panels.len().clamp(1, PANEL_COLUMNS);
        (self.panels.len().div_ceil(cols).max(1), cols)
    }
}

impl Figure for ScoreHistogramFigure {
    /// `panel,bin,lower,upper,correct_fraction,wrong_fraction,n_correct,n_wrong`: each panel's
    /// equal-width bins.
    fn data_csv(&self) -> String {
        let mut s = String::from("panel,bin,lower,upper,correct_fraction,wrong_fraction,n_correct,n_wrong\n");
        for p in &self.panels {
            let title = csv_field(&p.title);
            let width = (p.hi - p.lo) / p.correct.len().max(1) as f64;
            for (k, (c, w)) in p.correct.iter().zip(&p.wrong).enumerate() {
                let lower = p.lo + width * k as f64;
                let upper = if k + 1 == p.correct.len() {
                    p.hi
                } else {
                    p.lo + width * (k + 1) as f64
                };
                s.push_str(&format!(
                    "{title},{k},{lower},{upper},{c},{w},{},{}\n",
                    p.n_correct, p.n_wrong
                ));
            }
        }
        s
    }

    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        (
            u32::try_from(cols * 500).unwrap_or(1500),
            u32::try_from(rows * 380 + 50).unwrap_or(1190),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(e)?;
        let body = root.titled(&self.title, (FAMILY, 22)).map_err(e)?;
        let areas = body.split_evenly(self.grid());
        for (panel, area) in self.panels.iter().zip(&areas) {
            let top = panel
                .correct
                .iter()
                .chain(&panel.wrong)
                .fold(0.0f64, |a, &b| a.max(b))
                .max(1e-9);
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, (FAMILY, 18))
                .margin(8)
                .margin_right(18)
                .x_label_area_size(44)
                .y_label_area_size(60)
                .build_cartesian_2d(panel.lo..panel.hi, 0f64..top * 1.3)
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_labels(5)
                .y_labels(5)
                .max_light_lines(0)
                .bold_line_style(BLACK.mix(0.08))
                .x_label_formatter(&|v| format!("{v:.2}"))
                .y_label_formatter(&|v| format!("{v:.2}"))
                .x_desc("score u (higher = more uncertain)")
                .y_desc("fraction of group")
                .label_style((FAMILY, 14))
                .axis_desc_style((FAMILY, 15))
                .draw()
                .map_err(e)?;
            let width = (panel.hi - panel.lo) / SCORE_BINS as f64;
            let bars = |v: &[f64], color: RGBColor| -> Vec<Rectangle<(f64, f64)>> {
                v.iter()
                    .enumerate()
                    .filter(|(_, h)| **h > 0.0)
                    .map(|(b, &h)| {
                        let x0 = panel.lo + b as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width, h)], color.mix(0.45).filled())
                    })
                    .collect()
            };
            chart
                .draw_series(bars(&panel.correct, CORRECT))
                .map_err(e)?
                .label(format!("correct (n = {})", panel.n_correct))
                .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], CORRECT.mix(0.45).filled()));
            chart
                .draw_series(bars(&panel.wrong, WRONG))
                .map_err(e)?
                .label(format!("wrong (n = {})", panel.n_wrong))
                .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], WRONG.mix(0.45).filled()));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(e)?;
        }
        Ok(())
    }
}
