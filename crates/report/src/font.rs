//! The TTF the figures' text is drawn with.
//!
//! plotters draws text through `ab_glyph` (pure Rust, no fontconfig or FreeType), which needs the
//! bytes of a font file. The figures use DejaVu Sans 2.37 (Bitstream Vera licence,
//! `assets/DejaVu-LICENSE.txt`), embedded in the binary, so they render the same on every machine
//! with no system package (decision RP8). The `UEB_FONT` environment variable names another TTF
//! instead; when it is set it must work, there is no silent fallback.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::error::{ReportError, Result};

/// The environment variable that names the font file.
pub const FONT_ENV: &str = "UEB_FONT";

/// The family name the figures use for their text.
pub const FAMILY: &str = "sans-serif";

/// DejaVu Sans, regular and bold, as shipped by the project.
const EMBEDDED_REGULAR: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const EMBEDDED_BOLD: &[u8] = include_bytes!("../assets/DejaVuSans-Bold.ttf");

/// The font file `UEB_FONT` names (`env`), or `None` for the embedded DejaVu Sans.
///
/// # Errors
/// [`ReportError::NoFont`] when `env` is set but is not a file.
pub fn find_font(env: Option<&Path>) -> Result<Option<PathBuf>> {
    match env {
        Some(p) if p.is_file() => Ok(Some(p.to_path_buf())),
        Some(p) => Err(ReportError::NoFont {
            looked: vec![format!("{FONT_ENV}={} (not a file)", p.display())],
        }),
        None => Ok(None),
    }
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
    register_bytes(bytes, style, path)
}

/// The registered faces, which the PNG text rasteriser (`text.rs`) reads too.
static REGULAR: OnceLock<&'static [u8]> = OnceLock::new();
static BOLD: OnceLock<&'static [u8]> = OnceLock::new();

fn register_bytes(bytes: &'static [u8], style: FontStyle, path: &Path) -> Result<()> {
    plotters::style::register_font(FAMILY, style, bytes).map_err(|_| ReportError::BadFont {
        path: path.to_path_buf(),
    })?;
    let slot = if matches!(style, FontStyle::Bold) {
        &BOLD
    } else {
        &REGULAR
    };
    let _ = slot.set(bytes);
    Ok(())
}

/// The registered face for `bold` (the regular one when no bold was registered), parsed once
/// per process; `None` before [`ensure_font`] has succeeded.
pub(crate) fn face(bold: bool) -> Option<&'static ab_glyph::FontRef<'static>> {
    static PARSED: OnceLock<[Option<ab_glyph::FontRef<'static>>; 2]> = OnceLock::new();
    REGULAR.get()?;
    let parse = |b: Option<&&'static [u8]>| b.and_then(|b| ab_glyph::FontRef::try_from_slice(b).ok());
    let faces = PARSED.get_or_init(|| [parse(REGULAR.get()), parse(BOLD.get().or(REGULAR.get()))]);
    faces[usize::from(bold)].as_ref()
}

/// Registers the font once per process; returns the file used, `None` for the embedded one.
///
/// # Errors
/// [`ReportError::Font`]: the message of the [`ReportError::NoFont`] or
/// [`ReportError::BadFont`] of the first call, on every call.
pub fn ensure_font() -> Result<Option<&'static Path>> {
    static FONT: OnceLock<std::result::Result<Option<PathBuf>, String>> = OnceLock::new();
    let found = FONT.get_or_init(|| {
        let env = std::env::var_os(FONT_ENV).map(PathBuf::from);
        let run = || -> Result<Option<PathBuf>> {
            match find_font(env.as_deref())? {
                Some(path) => {
                    register(&path, FontStyle::Normal)?;
                    if let Some(bold) = bold_sibling(&path) {
                        register(&bold, FontStyle::Bold)?;
                    }
                    Ok(Some(path))
                }
                None => {
                    let embedded = Path::new("embedded DejaVu Sans");
                    register_bytes(EMBEDDED_REGULAR, FontStyle::Normal, embedded)?;
                    register_bytes(EMBEDDED_BOLD, FontStyle::Bold, embedded)?;
                    Ok(None)
                }
            }
        };
        run().map_err(|e| e.to_string())
    });
    match found {
        Ok(p) => Ok(p.as_deref()),
        Err(message) => Err(ReportError::Font(message.clone())),
    }
}
