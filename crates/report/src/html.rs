//! The static `index.html`: status of the results directory, every table, every figure.

use std::fmt::Write as _;
use std::path::Path;

use crate::tables::{MetricTable, html_escape};
use crate::{FigureKind, FigureRef, Formats, Inventory, ReportSummary};

const STYLE: &str = r#"
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; font-size: 16px; line-height: 1.45;
       color: #1d1d1f; margin: 0 auto; padding: 16px 24px 48px; max-width: 1360px; }
h1 { font-size: 28px; margin: 8px 0 4px; }
h2 { font-size: 23px; margin: 36px 0 8px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 19px; margin: 24px 0 8px; }
.meta, .legend, figcaption, .files { color: #555; font-size: 14px; }
nav a { margin-right: 14px; }
table.metric { border-collapse: collapse; margin: 18px 0 4px; font-variant-numeric: tabular-nums; }
table.metric caption { text-align: left; font-weight: bold; font-size: 18px; padding-bottom: 6px; white-space: nowrap; }
table.metric caption .dir { font-weight: normal; color: #555; font-size: 15px; }
table.metric th, table.metric td { padding: 5px 12px; border-bottom: 1px solid #e3e3e3; white-space: nowrap; }
table.metric thead th { border-bottom: 2px solid #999; text-align: center; vertical-align: bottom; }
table.metric tbody th { text-align: left; font-weight: normal; font-family: "DejaVu Sans Mono", monospace; font-size: 15px; }
table.metric td { text-align: right; }
table.metric tbody tr:nth-child(even) { background: #f6f6f8; }
.extra { color: #666; font-size: 13px; margin-left: 4px; }
.legend { max-width: 1100px; margin-top: 2px; }
.status { background: #f6f6f8; border: 1px solid #e3e3e3; padding: 10px 14px; border-radius: 6px; }
.missing { color: #a33; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
details > summary { cursor: pointer; font-size: 18px; font-weight: bold; margin: 12px 0; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 14px; }
"#;

/// Percent-encodes one path segment for a relative URL.
fn url_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn url(stem: &Path, ext: &str) -> String {
    let segs: Vec<String> = stem.iter().map(|s| url_segment(&s.to_string_lossy())).collect();
    format!("{}.{ext}", segs.join("/"))
}

fn figure(s: &mut String, f: &FigureRef, alt: &str, caption: &str) {
    let _ = writeln!(
        s,
        "<figure><img src=\"{}\" width=\"{}\" height=\"{}\" alt=\"{}\" loading=\"lazy\">\
         <figcaption>{} — <a href=\"{}\">PNG</a> · <a href=\"{}\">SVG</a></figcaption></figure>",
        url(&f.stem, "png"),
        f.size.0,
        f.size.1,
        html_escape(alt),
        html_escape(caption),
        url(&f.stem, "png"),
        url(&f.stem, "svg"),
    );
}

/// A few provenance fields of `env.json`, when present.
fn env_line(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("env.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let mut parts = Vec::new();
    if let Some(u) = get("ueb") {
        parts.push(format!("ueb {u}"));
    }
    if let Some(sha) = get("git_sha") {
        let short: String = sha.chars().take(10).collect();
        let dirty = v.get("git_dirty").and_then(serde_json::Value::as_bool) == Some(true);
        parts.push(format!("commit {short}{}", if dirty { " (dirty)" } else { "" }));
    }
    if let Some(d) = get("device") {
        parts.push(format!("device {d}"));
    }
    if let Some(c) = get("cpu") {
        parts.push(c);
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The page.
pub(crate) fn index(
    dir: &Path,
    inv: &Inventory,
    tables: &[MetricTable],
    summary: &ReportSummary,
    formats: Formats,
) -> String {
    let name = inv
        .plan
        .as_ref()
        .and_then(|p| p.name.clone())
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "results".to_string());
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>ueb report: {0}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>ueb report: {0}</h1>\n",
        html_escape(&name)
    );
    if let Some(env) = env_line(dir) {
        let _ = writeln!(s, "<p class=\"meta\">{}</p>", html_escape(&env));
    }
    let cells: std::collections::BTreeSet<&crate::CellKey> = inv.stages.iter().map(|st| &st.cell).collect();
    let _ = writeln!(
        s,
        "<div class=\"status\"><p>{} head stages in {} cells ({} backbone × dataset columns, {} heads). \
         Metrics of {} head stages read from <code>metrics.parquet</code>, {} computed from their scores; \
         {} bins, {} bootstrap resamples.</p>",
        summary.head_stages,
        cells.len(),
        inv.columns.len(),
        inv.heads.len(),
        summary.from_metrics_file,
        summary.computed,
        inv.metrics.bins,
        inv.metrics.bootstrap,
    );
    if summary.missing.is_empty() {
        if inv.plan.is_some() {
            s.push_str("<p>Every cell of the plan is present.</p>\n");
        } else {
            s.push_str("<p>No <code>plan.yaml</code>: missing cells cannot be listed.</p>\n");
        }
    } else {
        let _ = write!(
            s,
            "<p class=\"missing\">{} head stages of the plan are missing (not run yet, or in a shard that has not \
             finished): the tables show what is present.</p>\n<details><summary>missing</summary><ul>",
            summary.missing.len()
        );
        for m in &summary.missing {
            let _ = write!(s, "<li><code>{}</code></li>", html_escape(m));
        }
        s.push_str("</ul></details>\n");
    }
    s.push_str("</div>\n<nav><p><b>Tables:</b> ");
    for t in tables {
        let _ = write!(
            s,
            "<a href=\"#table-{}\">{}</a>",
            t.metric.name,
            html_escape(t.metric.title)
        );
    }
    s.push_str("</p><p><b>Figures:</b> ");
    for (b, d) in &inv.columns {
        let _ = write!(
            s,
            "<a href=\"#fig-{}-{}\">{} / {}</a>",
            url_segment(b),
            url_segment(d),
            html_escape(b),
            html_escape(d)
        );
    }
    s.push_str("</p></nav>\n<h2 id=\"tables\">Tables</h2>\n");
    for t in tables {
        s.push_str(&t.html());
        let mut files = Vec::new();
        for (on, ext) in [(formats.md, "md"), (formats.tex, "tex"), (formats.csv, "csv")] {
            if on {
                files.push(format!(
                    "<a href=\"tables/{0}.{1}\">{0}.{1}</a>",
                    url_segment(t.metric.name),
                    ext
                ));
            }
        }
        if !files.is_empty() {
            let _ = writeln!(s, "<p class=\"files\">Files: {}</p>", files.join(" · "));
        }
    }
    if !summary.figures.is_empty() {
        s.push_str("<h2 id=\"figures\">Figures</h2>\n");
    }
    for (b, d) in &inv.columns {
        let figs: Vec<&FigureRef> = summary
            .figures
            .iter()
            .filter(|f| f.cell.backbone == *b && f.cell.dataset == *d)
            .collect();
        if figs.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<h3 id=\"fig-{}-{}\">{} / {}</h3>",
            url_segment(b),
            url_segment(d),
            html_escape(b),
            html_escape(d)
        );
        let mut seeds: Vec<u64> = figs.iter().map(|f| f.cell.seed).collect();
        seeds.dedup();
        for (k, seed) in seeds.iter().enumerate() {
            let _ = writeln!(
                s,
                "<details{}><summary>seed {seed}</summary>",
                if k == 0 { " open" } else { "" }
            );
            let in_seed = figs.iter().filter(|f| f.cell.seed == *seed);
            for f in in_seed {
                let (alt, caption) = match (f.kind, &f.head) {
                    (FigureKind::RiskCoverage, _) => (
                        format!("Risk–coverage curves of every head, {b} / {d} / seed {seed}"),
                        "Risk–coverage: error rate of the predictions kept when the most uncertain are rejected \
                         (lower is better; AURC in the legend)."
                            .to_string(),
                    ),
                    (FigureKind::Scores, _) => (
                        format!("Score histograms of correct and wrong predictions, {b} / {d} / seed {seed}"),
                        "Scores of correct vs wrong predictions (each group normalised to 1): the less they overlap, \
                         the better the score detects errors."
                            .to_string(),
                    ),
                    (FigureKind::Reliability, head) => {
                        // No head: the classifier's probabilities, shared by the heads that leave
                        // them unchanged.
                        let h = head.clone().unwrap_or_else(|| "the classifier".to_string());
                        (
                            format!("Reliability diagram of {h}, {b} / {d} / seed {seed}"),
                            format!(
                                "Reliability of {h}'s probabilities: accuracy per confidence bin against the \
                                 diagonal, with Wilson 95% intervals and the samples per bin."
                            ),
                        )
                    }
                };
                figure(&mut s, f, &alt, &caption);
            }
            s.push_str("</details>\n");
        }
    }
    s.push_str("</body>\n</html>\n");
    s
}
