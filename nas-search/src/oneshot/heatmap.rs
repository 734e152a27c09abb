//! An SVG heat map of softmaxed architecture weights: one panel per cell type, edges as rows,
//! ops as columns, each square shaded by its weight and labelled with it.

use std::fmt::Write as _;
use std::path::Path;

use super::arch::ArchSnapshot;
use super::error::Result;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// White (0) to dark blue (1).
fn shade(v: f32) -> String {
    let t = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let lerp = |a: f32, b: f32| (a + (b - a) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        lerp(255.0, 8.0),
        lerp(255.0, 48.0),
        lerp(255.0, 107.0)
    )
}

/// The heat map of `arch` as an SVG document. Each row is scaled by its own maximum for the
/// colour (so the preferred op of every edge stands out); the printed numbers are the weights.
pub fn heatmap_svg(arch: &ArchSnapshot, title: &str) -> String {
    let mut panels: Vec<(&str, &Vec<Vec<f32>>)> = vec![(
        if arch.weights_reduce.is_some() {
            "normal cell"
        } else {
            "cell"
        },
        &arch.weights_normal,
    )];
    if let Some(r) = &arch.weights_reduce {
        panels.push(("reduction cell", r));
    }
    let (cell_w, cell_h) = (64.0, 22.0);
    let left = 70.0;
    let top = 50.0;
    let head = 110.0; // room for rotated op names
    let k = arch.ops.len() as f64;
    let panel_w = left + k * cell_w + 30.0;
    let rows = arch.edges.len() as f64;
    // Wide enough for the title too (14 px sans-serif: about 8.4 px a character).
    let width =
        (panel_w * panels.len() as f64 + 10.0).max(20.0 + 8.4 * title.chars().count() as f64);
    let height = top + head + rows * cell_h + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14">{}</text>"#,
        esc(title)
    );
    for (p, (name, m)) in panels.iter().enumerate() {
        let x0 = p as f64 * panel_w + 10.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            x0 + left,
            top - 10.0,
            esc(name)
        );
        for (j, op) in arch.ops.iter().enumerate() {
            let cx = x0 + left + (j as f64 + 0.5) * cell_w;
            let cy = top + head - 6.0;
            let _ = writeln!(
                s,
                r#"<text x="{cx}" y="{cy}" transform="rotate(-45 {cx} {cy})">{}</text>"#,
                esc(op)
            );
        }
        for (e, row) in m.iter().enumerate() {
            let y = top + head + e as f64 * cell_h;
            let label = arch.edges.get(e).map(String::as_str).unwrap_or("?");
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                x0 + left - 6.0,
                y + cell_h * 0.7,
                esc(label)
            );
            let mx = row.iter().copied().fold(0.0f32, f32::max);
            for (j, &v) in row.iter().enumerate() {
                let x = x0 + left + j as f64 * cell_w;
                let rel = if mx > 0.0 { v / mx } else { 0.0 };
                let fg = if rel > 0.6 { "white" } else { "black" };
                let _ = writeln!(
                    s,
                    r##"<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{}" stroke="#cccccc"/><text x="{}" y="{}" text-anchor="middle" fill="{fg}">{v:.3}</text>"##,
                    shade(rel),
                    x + cell_w / 2.0,
                    y + cell_h * 0.7
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Writes [`heatmap_svg`] to `path` atomically (a kill leaves the old file or the new one).
pub fn save_heatmap(arch: &ArchSnapshot, title: &str, path: &Path) -> Result<()> {
    Ok(crate::builder::write_file_atomic(
        path,
        heatmap_svg(arch, title).as_bytes(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_is_wide_enough_for_its_title() {
        let arch = ArchSnapshot {
            space: "nb201".into(),
            ops: vec!["none".into(), "skip_connect".into()],
            edges: vec!["1<-0".into()],
            alpha_normal: vec![vec![0.0, 0.0]],
            weights_normal: vec![vec![0.5, 0.5]],
            alpha_reduce: None,
            weights_reduce: None,
            edge_weights_normal: None,
            edge_weights_reduce: None,
        };
        let title = "gdas on nb201: softmax of the architecture weights after 12 epochs";
        let svg = heatmap_svg(&arch, title);
        let width: f64 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap();
        // Before: the panels' width alone (238 px here, 430 px for NB201's five ops).
        assert!(width >= 8.0 * title.len() as f64, "{width}");
    }
}
