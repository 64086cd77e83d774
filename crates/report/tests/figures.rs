//! Figures are valid PNG and SVG files of the expected size, and a missing font is a clear
//! error. Needs DejaVu Sans (`apt-get install fonts-dejavu-core`) or `UEB_FONT`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use ueb_metrics::Predictions;
use ueb_report::figures::{
    Figure, ReliabilityFigure, RiskCoverageFigure, ScoreHistogramFigure, ScorePanel, png_bytes, svg_string,
};
use ueb_report::font::find_font;

fn check_png(bytes: &[u8], size: (u32, u32)) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a decodable PNG");
    let info = reader.info();
    assert_eq!((info.width, info.height), size);
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).expect("pixel data");
    // Not a blank canvas: something other than white was drawn.
    let px = &buf[..frame.buffer_size()];
    let non_white = px.chunks(3).filter(|p| p.iter().any(|&v| v < 200)).count();
    assert!(non_white > 1000, "only {non_white} drawn pixels");
}

fn check_svg(text: &str, size: (u32, u32)) {
    let doc = roxmltree::Document::parse(text).expect("well-formed SVG");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.attribute("width"), Some(size.0.to_string().as_str()));
    assert_eq!(root.attribute("height"), Some(size.1.to_string().as_str()));
    assert!(doc.descendants().any(|n| n.has_tag_name("text")), "SVG has text");
}

fn both<F: Figure>(fig: &F) {
    let size = fig.size();
    check_png(&png_bytes(fig, Path::new("test.png")).unwrap(), size);
    check_svg(&svg_string(fig, Path::new("test.svg")).unwrap(), size);
}

fn data() -> (Predictions, Vec<bool>, Vec<f64>) {
    let (probs, labels, score) = common::synthetic(400, 3, 7, 0.1);
    let pred = Predictions::from_probs(probs, 3, &labels).unwrap();
    let errors = pred.error_vec();
    (pred, errors, score)
}

#[test]
fn reliability_diagram_png_and_svg() {
    let (pred, ..) = data();
    let fig = ReliabilityFigure::new("Reliability of sr: tiny / synthetic / seed 0", &pred, 15).unwrap();
    assert_eq!(fig.size(), (1300, 760));
    both(&fig);
}

#[test]
fn risk_coverage_png_and_svg() {
    let (_, errors, score) = data();
    let other: Vec<f64> = score.iter().rev().copied().collect();
    let fig = RiskCoverageFigure::new(
        "Risk–coverage",
        &[("sr", &errors, &score, Some(0.1)), ("entropy", &errors, &other, None)],
    )
    .unwrap();
    both(&fig);
}

#[test]
fn score_histograms_png_and_svg() {
    let (_, errors, score) = data();
    let panels: Vec<ScorePanel> = (0..4)
        .map(|k| ScorePanel::new(format!("head {k}"), &errors, &score))
        .collect();
    let fig = ScoreHistogramFigure::new("Scores", panels);
    // 4 panels: 3 per row, 2 rows.
    assert_eq!(fig.size(), (1500, 2 * 380 + 50));
    both(&fig);
}

#[test]
fn figures_are_deterministic() {
    let (pred, ..) = data();
    let fig = ReliabilityFigure::new("r", &pred, 10).unwrap();
    let p = Path::new("x.png");
    assert_eq!(png_bytes(&fig, p).unwrap(), png_bytes(&fig, p).unwrap());
    assert_eq!(svg_string(&fig, p).unwrap(), svg_string(&fig, p).unwrap());
}

#[test]
fn the_embedded_font_needs_nothing_and_a_bad_ueb_font_is_a_clear_error() {
    assert_eq!(find_font(None).unwrap(), None, "no UEB_FONT: the embedded DejaVu Sans");
    let err = find_font(Some(Path::new("/nonexistent/font.ttf")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("UEB_FONT=/nonexistent/font.ttf") && err.contains("embedded"),
        "{err}"
    );
}

#[test]
fn score_panel_normalises_each_group() {
    let errors = [true, false, false, true, false];
    let score = [0.9, 0.1, 0.2, 0.8, 0.1];
    let p = ScorePanel::new("p", &errors, &score);
    assert_eq!((p.n_correct, p.n_wrong), (3, 2));
    assert!((p.correct.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!((p.wrong.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert_eq!((p.lo, p.hi), (0.1, 0.9));
}

/// The CSV beside every figure holds the numbers it draws: ueb-metrics' reliability bins and
/// risk–coverage points, and each panel's histogram.
#[test]
fn every_figure_writes_its_data_as_csv() {
    use ueb_metrics::{Binning, reliability_bins, risk_coverage_curve};
    let (pred, errors, score) = data();
    let rows = |csv: &str| -> Vec<Vec<String>> {
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    };
    let fig = ReliabilityFigure::new("r", &pred, 15).unwrap();
    let csv = fig.data_csv();
    assert!(csv.starts_with("binning,bin,lower,upper,count,mean_confidence,accuracy,wilson_low,wilson_high\n"));
    let want = reliability_bins(&pred, Binning::EqualWidth(15)).unwrap();
    let got: Vec<Vec<String>> = rows(&csv).into_iter().filter(|r| r[0] == "equal_width").collect();
    assert_eq!(got.len(), want.len());
    for (r, b) in got.iter().zip(&want) {
        assert_eq!(r[4].parse::<u64>().unwrap(), b.count);
        match b.accuracy {
            Some(a) => assert_eq!(r[6].parse::<f64>().unwrap(), a),
            None => assert_eq!(r[6], ""),
        }
    }
    assert_eq!(rows(&csv).iter().filter(|r| r[0] == "equal_mass").count(), 15);

    let fig = RiskCoverageFigure::new("rc", &[("sr", &errors, &score, None)]).unwrap();
    let csv = fig.data_csv();
    let sr: Vec<(f64, f64)> = rows(&csv)
        .iter()
        .filter(|r| r[0] == "sr")
        .map(|r| (r[1].parse().unwrap(), r[2].parse().unwrap()))
        .collect();
    let want: Vec<(f64, f64)> = risk_coverage_curve(&errors, &score)
        .unwrap()
        .into_iter()
        .map(|p| (p.coverage, p.risk))
        .collect();
    assert_eq!(sr, want, "400 rows: no thinning, every point as computed");
    // One head: its errors are everyone's, so the references are there too.
    assert_eq!(rows(&csv).iter().filter(|r| r[0] == "oracle").count(), 200);
    assert_eq!(rows(&csv).iter().filter(|r| r[0] == "random").count(), 200);

    let panel = ScorePanel::new("head, with a comma", &errors, &score);
    let fig = ScoreHistogramFigure::new("s", vec![panel.clone()]);
    let csv = fig.data_csv();
    let first = csv.lines().nth(1).unwrap();
    assert!(first.starts_with("\"head, with a comma\",0,"), "{first}");
    let total: f64 = csv
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').nth(3).unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-12, "correct fractions sum to 1: {total}");
    assert_eq!(csv.lines().count(), 1 + panel.correct.len());
}
