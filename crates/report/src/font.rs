//! The TTF the figures' text is drawn with.
//!
//! plotters draws text through `ab_glyph` (pure Rust, no fontconfig or FreeType), which needs the
//! bytes of a font file. The file is found, in order: the `UEB_FONT` environment variable (a
//! path; when it is set it must work, there is no silent fallback), then the places where the
//! common distributions install DejaVu Sans (`fonts-dejavu-core` on Debian and Ubuntu).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::error::{ReportError, Result};

/// The environment variable that names the font file.
pub const FONT_ENV: &str = "UEB_FONT";

/// The family name the figures use for their text.
pub const FAMILY: &str = "sans-serif";

/// Where DejaVu Sans is looked for when `UEB_FONT` is not set, in order.
pub const FONT_CANDIDATES: [&str; 8] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
    "/opt/homebrew/share/fonts/DejaVuSans.ttf",
    "/Library/Fonts/DejaVuSans.ttf",
];

/// Finds the font file: `env` (the value of `UEB_FONT`) when given, else the first existing
/// file of `candidates`.
///
/// # Errors
/// [`ReportError::NoFont`] naming every place looked at (`env` set but not a file is an error
/// too).
pub fn find_font(env: Option<&Path>, candidates: &[&Path]) -> Result<PathBuf> {
    if let Some(p) = env {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(ReportError::NoFont {
            looked: vec![format!("{FONT_ENV}={} (not a file)", p.display())],
        });
    }
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Ok(p.to_path_buf());
    }
    let mut looked = vec![format!("{FONT_ENV} (not set)")];
    looked.extend(candidates.iter().map(|p| p.display().to_string()));
    Err(ReportError::NoFont { looked })
}

/// The bold face next to a regular DejaVu file (`DejaVuSans.ttf` → `DejaVuSans-Bold.ttf`).
fn bold_sibling(regular: &Path) -> Option<PathBuf> {
    let stem = regular.file_stem()?.to_str()?;
    let ext = regular.extension()?.to_str()?;
    let p = regular.with_file_name(format!("{stem}-Bold.{ext}"));
    p.is_file().then_some(p)
}

fn register(path: &Path, style: FontStyle) -> Result<()> {
    let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
    // plotters keeps registered fonts for the life of the process; this runs once per style.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, style, bytes).map_err(|_| ReportError::BadFont {
        path: path.to_path_buf(),
    })
}

/// Finds and registers the font once per process; returns the file used.
///
/// # Errors
/// [`ReportError::Font`]: the message of the [`ReportError::NoFont`] or
/// [`ReportError::BadFont`] of the first call, on every call.
pub fn ensure_font() -> Result<&'static Path> {
    static FONT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let found = FONT.get_or_init(|| {
        let env = std::env::var_os(FONT_ENV).map(PathBuf::from);
        let candidates: Vec<&Path> = FONT_CANDIDATES.iter().map(Path::new).collect();
        let run = || -> Result<PathBuf> {
            let path = find_font(env.as_deref(), &candidates)?;
            register(&path, FontStyle::Normal)?;
            if let Some(bold) = bold_sibling(&path) {
                register(&bold, FontStyle::Bold)?;
            }
            Ok(path)
        };
        run().map_err(|e| e.to_string())
    });
    match found {
        Ok(p) => Ok(p.as_path()),
        Err(message) => Err(ReportError::Font(message.clone())),
    }
}
