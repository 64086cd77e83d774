//! PNG text: a drawing backend around plotters' bitmap one whose `draw_text` places each glyph
//! at its exact (sub-pixel) pen position plus its left side bearing.
//!
//! plotters 0.3.7's `ab_glyph` text drawing truncates the pen position to whole pixels and
//! drops each glyph's left side bearing, so letters drift (`en tropy`, `frac tion`) by up to a
//! pixel each. Here every glyph is outlined at its own position, and its coverage is drawn at the
//! pixel bounds `ab_glyph` gives. The text box, anchors, rotation and baseline are plotters'
//! (so layout and the SVG output, which keeps text as text, are unchanged).

use ab_glyph::{Font, PxScale, ScaleFont, point};
use plotters::prelude::BitMapBackend;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind, FontStyle,
};

/// plotters' bitmap backend with sub-pixel glyph placement.
pub(crate) struct PngBackend<'a>(pub BitMapBackend<'a>);

type Error<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for PngBackend<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), Error<'a>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), Error<'a>> {
        self.0.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Error<'a>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(&mut self, from: BackendCoord, to: BackendCoord, style: &S) -> Result<(), Error<'a>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Error<'a>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), Error<'a>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), Error<'a>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), Error<'a>> {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Result<(), Error<'a>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), Error<'a>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let bold = matches!(style.style(), FontStyle::Bold);
        let Some(font) = crate::font::face(bold) else {
            // No face registered here (cannot happen after `ensure_font`): plotters draws it.
            return self.0.draw_text(text, style, pos);
        };
        // The box and anchor as plotters computes them, so every label stays where it was.
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.get_size();
        let size = style.size() as f32;
        let scaled = font.as_scaled(PxScale::from(size));
        // plotters puts the baseline at size/2 below the box's top.
        let baseline = size / 2.0;
        let mut pen = 0.0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                pen += scaled.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(PxScale::from(size), point(pen, baseline));
            pen += scaled.h_advance(id);
            let Some(outlined) = font.outline_glyph(glyph) else {
                continue; // a space
            };
            let bounds = outlined.px_bounds();
            let (ox, oy) = (bounds.min.x as i32, bounds.min.y as i32);
            let mut result = Ok(());
            outlined.draw(|gx, gy, coverage| {
                if result.is_err() || coverage <= 0.0 {
                    return;
                }
                let (x, y) = trans.transform(ox + gx as i32 + dx - min_x, oy + gy as i32 + dy - min_y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                    let c = BackendColor {
                        alpha: color.alpha * f64::from(coverage.min(1.0)),
                        rgb: color.rgb,
                    };
                    result = self.0.draw_pixel((x, y), c);
                }
            });
            result?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use plotters::prelude::*;
    use plotters_backend::text_anchor::Pos;

    /// The first column with ink of each glyph of `text` drawn at (20, 20), and the pen
    /// positions plus left side bearings ab_glyph gives for them.
    fn ink_starts(text: &str, size: f64) -> (Vec<i32>, Vec<f32>) {
        crate::font::ensure_font().unwrap();
        let (w, h) = (400u32, 60u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let mut backend = PngBackend(BitMapBackend::with_buffer(&mut buf, (w, h)));
            let style = TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
            backend.draw_text(text, &style, (20, 20)).unwrap();
        }
        let inked = |x: u32| (0..h).any(|y| buf[((y * w + x) * 3) as usize] < 200);
        let mut starts = Vec::new();
        let mut prev = false;
        for x in 0..w {
            let now = inked(x);
            if now && !prev {
                starts.push(x as i32);
            }
            prev = now;
        }
        let font = crate::font::face(false).unwrap();
        let scaled = font.as_scaled(PxScale::from(size as f32));
        let mut pen = 20.0f32;
        let mut want = Vec::new();
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            want.push(pen + scaled.h_side_bearing(id));
            pen += scaled.h_advance(id);
        }
        (starts, want)
    }

    #[test]
    fn glyphs_sit_at_their_pen_position_plus_bearing() {
        // Separate strokes, so every glyph is one run of inked columns.
        for (text, size) in [("nnnnnnnnnn", 20.0), ("iiiiiiiiiiii", 17.0), ("n i n i n", 23.0)] {
            let (starts, want) = ink_starts(text, size);
            let want: Vec<f32> = text
                .chars()
                .zip(want)
                .filter(|(c, _)| *c != ' ')
                .map(|(_, x)| x)
                .collect();
            assert_eq!(starts.len(), want.len(), "{text}: {starts:?}");
            for (got, exact) in starts.iter().zip(&want) {
                // Anti-aliasing inks the column the exact edge falls in (a faint pixel counts
                // only above the threshold, hence up to one column later).
                let d = *got as f32 - exact;
                assert!(
                    (-1.0..=1.0).contains(&d),
                    "{text}: ink at {got}, glyph edge at {exact} ({starts:?} vs {want:?})"
                );
            }
        }
    }
}
