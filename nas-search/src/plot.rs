//! A small dependency-free SVG plotter: line plots (anytime curves) and scatter plots
//! (parameters vs accuracy).

use crate::error::Result;
use std::fmt::Write as _;
use std::path::Path;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A polyline through the points in order.
    Line,
    /// One dot per point.
    Points,
}

/// One named series of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// The points; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// Line or dots.
    pub style: Style,
    /// A fixed colour (`"#b0b0b0"`); `None`: the next one of the palette.
    pub colour: Option<String>,
}

/// A plot with axes, ticks, a legend and optional horizontal reference line.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// Title above the plot.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// The data.
    pub series: Vec<Series>,
    /// Logarithmic x axis (base 10; non-positive x are skipped).
    pub x_log: bool,
    /// A dashed horizontal line at `y` with a label (for example the table's optimum).
    pub reference: Option<(f64, String)>,
    /// Size in pixels.
    pub width: f64,
    /// Size in pixels.
    pub height: f64,
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// "Nice" tick positions covering `[lo, hi]`, about `n` of them (steps of 1, 2 or 5 x 10^k).
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{}", v.round() as i64)
    } else if (v * 10.0).fract().abs() < 1e-9 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Plot {
    /// An empty plot of 720 x 480 pixels.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Plot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            x_log: false,
            reference: None,
            width: 720.0,
            height: 480.0,
        }
    }

    /// Adds a series.
    pub fn add(&mut self, name: &str, points: Vec<(f64, f64)>, style: Style) -> &mut Self {
        self.series.push(Series {
            name: name.into(),
            points,
            style,
            colour: None,
        });
        self
    }

    fn tx(&self, x: f64) -> Option<f64> {
        if self.x_log {
            (x > 0.0).then(|| x.log10())
        } else {
            x.is_finite().then_some(x)
        }
    }

    /// The SVG document.
    pub fn to_svg(&self) -> String {
        let (w, h) = (self.width, self.height);
        let (ml, mr, mt, mb) = (70.0, 170.0, 40.0, 55.0);
        let (pw, ph) = (w - ml - mr, h - mt - mb);
        let pts = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter_map(|&(x, y)| {
                    let x = self.tx(x)?;
                    (y.is_finite()).then_some((x, y))
                })
        };
        let mut xmin = pts().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let mut xmax = pts().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        let mut ymin = pts().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let mut ymax = pts().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        if let Some((r, _)) = &self.reference {
            ymin = ymin.min(*r);
            ymax = ymax.max(*r);
        }
        if !xmin.is_finite() {
            (xmin, xmax, ymin, ymax) = (0.0, 1.0, 0.0, 1.0);
        }
        if xmax <= xmin {
            xmax = xmin + 1.0;
        }
        if ymax <= ymin {
            ymax = ymin + 1.0;
        }
        let pad = (ymax - ymin) * 0.05;
        let (ymin, ymax) = (ymin - pad, ymax + pad);
        let sx = |x: f64| ml + (x - xmin) / (xmax - xmin) * pw;
        let sy = |y: f64| mt + (1.0 - (y - ymin) / (ymax - ymin)) * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            ml + pw / 2.0,
            esc(&self.title)
        );
        // Grid and ticks.
        for t in nice_ticks(ymin, ymax, 6) {
            let y = sy(t);
            let _ = writeln!(
                s,
                r##"<line x1="{ml}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                ml + pw,
                ml - 6.0,
                y + 4.0,
                fmt_num(t)
            );
        }
        let xticks: Vec<(f64, String)> = if self.x_log {
            let mut v = Vec::new();
            let mut e = xmin.floor() as i32;
            while (e as f64) <= xmax + 1e-9 {
                for m in [1.0, 2.0, 5.0] {
                    let lx = (m * 10f64.powi(e)).log10();
                    if lx >= xmin - 1e-9 && lx <= xmax + 1e-9 {
                        v.push((lx, fmt_num(m * 10f64.powi(e))));
                    }
                }
                e += 1;
            }
            if v.len() < 3 {
                // A range narrower than a decade (parameters of 30,000-46,000, say) holds at
                // most one 1-2-5 tick: use nice linear values placed on the log axis instead.
                v = nice_ticks(10f64.powf(xmin), 10f64.powf(xmax), 6)
                    .into_iter()
                    .filter(|&t| t > 0.0)
                    .map(|t| (t.log10(), fmt_num(t)))
                    .filter(|(lx, _)| *lx >= xmin - 1e-9 && *lx <= xmax + 1e-9)
                    .collect();
            }
            v
        } else {
            nice_ticks(xmin, xmax, 8)
                .into_iter()
                .map(|t| (t, fmt_num(t)))
                .collect()
        };
        for (t, label) in xticks {
            let x = sx(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                mt + ph,
                mt + ph + 16.0,
                esc(&label)
            );
        }
        let _ = writeln!(
            s,
            r#"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            ml + pw / 2.0,
            h - 12.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
            mt + ph / 2.0,
            mt + ph / 2.0,
            esc(&self.y_label)
        );
        if let Some((r, label)) = &self.reference {
            let y = sy(*r);
            let _ = writeln!(
                s,
                r#"<line x1="{ml}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="gray" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" fill="gray">{}</text>"#,
                ml + pw,
                ml + 4.0,
                y - 4.0,
                esc(label)
            );
        }
        for (i, ser) in self.series.iter().enumerate() {
            let col = ser.colour.as_deref().unwrap_or(COLOURS[i % COLOURS.len()]);
            let mapped: Vec<(f64, f64)> = ser
                .points
                .iter()
                .filter_map(|&(x, y)| Some((sx(self.tx(x)?), y.is_finite().then(|| sy(y))?)))
                .collect();
            match ser.style {
                Style::Line => {
                    let d: Vec<String> = mapped
                        .iter()
                        .map(|(x, y)| format!("{x:.1},{y:.1}"))
                        .collect();
                    let _ = writeln!(
                        s,
                        r#"<polyline fill="none" stroke="{col}" stroke-width="2" points="{}"/>"#,
                        d.join(" ")
                    );
                }
                Style::Points => {
                    for (x, y) in &mapped {
                        let _ = writeln!(
                            s,
                            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{col}" fill-opacity="0.6"/>"#
                        );
                    }
                }
            }
            let ly = mt + 10.0 + 20.0 * i as f64;
            let lx = ml + pw + 12.0;
            let _ = writeln!(
                s,
                r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="4" fill="{col}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                ly - 2.0,
                lx + 20.0,
                ly + 4.0,
                esc(&ser.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }

    /// Writes the SVG to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        crate::builder::write_file_atomic(path, self.to_svg().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_axis_narrower_than_a_decade_gets_several_ticks() {
        let mut p = Plot::new("t", "parameters", "acc");
        p.x_log = true;
        p.add(
            "trials",
            vec![(30_500.0, 70.0), (38_000.0, 75.0), (45_900.0, 77.0)],
            Style::Points,
        );
        let svg = p.to_svg();
        // x tick labels are the middle-anchored texts of the tick lines.
        let labels: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<line") && l.contains("text-anchor=\"middle\""))
            .filter_map(|l| l.split('>').nth(2)?.split('<').next())
            .collect();
        assert!(labels.len() >= 3, "{labels:?}");
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        let t = nice_ticks(93.1, 94.4, 8);
        assert!(
            (t[0] - 93.2).abs() < 1e-9 && (t.last().unwrap() - 94.4).abs() < 1e-9 && t.len() == 7
        );
    }

    #[test]
    fn svg_has_one_polyline_per_line_series_and_points_in_the_frame() {
        let mut p = Plot::new("a < b", "evaluations", "accuracy");
        p.add(
            "rs",
            vec![(1.0, 90.0), (10.0, 93.0), (100.0, 94.0)],
            Style::Line,
        );
        p.add(
            "rea",
            vec![(1.0, 91.0), (10.0, 93.5), (100.0, f64::NAN)],
            Style::Line,
        );
        p.add("cells", vec![(0.5, 80.0), (1.5, 94.0)], Style::Points);
        p.reference = Some((94.37, "optimum".into()));
        p.x_log = true;
        let svg = p.to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("a &lt; b") && svg.contains("optimum"));
        // Every coordinate of the polylines lies inside the plotting frame.
        for line in svg.lines().filter(|l| l.starts_with("<polyline")) {
            let pts = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .trim_end_matches("\"/>");
            for xy in pts.split(' ') {
                let (x, y) = xy.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (70.0..=550.1).contains(&x) && (40.0..=425.1).contains(&y),
                    "{x},{y}"
                );
            }
        }
        // The NaN point is skipped: the second line has two points.
        let second = svg
            .lines()
            .filter(|l| l.starts_with("<polyline"))
            .nth(1)
            .unwrap();
        assert_eq!(second.matches(',').count(), 2);
    }
}
