//! Charts drawn on the server (plotters): `/render`, alert e-mails, wiki and chat embeds.

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// One line of a chart: points `(t_ms, value)` oldest first; NaN leaves a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    pub points: Vec<(i64, f64)>,
}

/// How values are written on the axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    #[default]
    None,
    Bytes,
    Cores,
    /// Values already in percent (0..100).
    Percent,
    Seconds,
}

impl std::str::FromStr for Unit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "none" => Ok(Unit::None),
            "bytes" => Ok(Unit::Bytes),
            "cores" => Ok(Unit::Cores),
            "percent" => Ok(Unit::Percent),
            "seconds" => Ok(Unit::Seconds),
            other => Err(format!(
                "unknown unit {other:?}: expected none, bytes, cores, percent or seconds"
            )),
        }
    }
}

/// A chart to draw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chart {
    pub title: String,
    pub unit: Unit,
    pub lines: Vec<Line>,
    /// A horizontal threshold line (an alert rule's threshold).
    pub threshold: Option<f64>,
    /// A band drawn under the lines: lower and upper bounds at the same times (a baseline).
    pub band: Option<Vec<(i64, f64, f64)>>,
    pub width: u32,
    pub height: u32,
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("chart size {width}x{height} out of range (16..=4000 each)")]
    Size { width: u32, height: u32 },
    #[error("chart has {lines} lines, at most {max} can be drawn")]
    TooManyLines { lines: usize, max: usize },
    #[error("drawing failed: {0}")]
    Draw(String),
}

/// Smallest and largest width or height in pixels.
pub const SIZE_RANGE: std::ops::RangeInclusive<u32> = 16..=4000;
/// Most lines one chart draws (the legend would be unreadable beyond).
pub const MAX_LINES: usize = 100;

/// Colours of the lines, in order (Tableau 10, readable on white).
const PALETTE: [RGBColor; 10] = [
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
const FONT: &str = "sans-serif";
const THRESHOLD_COLOR: RGBColor = RGBColor(200, 0, 0);
const BAND_COLOR: RGBColor = RGBColor(31, 119, 180);
const TEXT_COLOR: RGBColor = RGBColor(40, 40, 40);

/// Draws `chart` as PNG bytes.
pub fn render_png(chart: &Chart) -> Result<Vec<u8>, ChartError> {
    check(chart)?;
    let (w, h) = (chart.width, chart.height);
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root, chart)?;
        root.present().map_err(draw_err)?;
    }
    let mut png_bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut png_bytes, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(draw_err)?;
    writer.write_image_data(&rgb).map_err(draw_err)?;
    writer.finish().map_err(draw_err)?;
    Ok(png_bytes)
}

/// Draws `chart` as an SVG document.
pub fn render_svg(chart: &Chart) -> Result<String, ChartError> {
    check(chart)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (chart.width, chart.height)).into_drawing_area();
        draw(&root, chart)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Writes `v` the way the axis of a chart in `unit` does: `1.5 GiB`, `250m`, `42%`, `3.2 ms`.
pub fn format_value(v: f64, unit: Unit) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    match unit {
        Unit::None => si(v, ""),
        Unit::Bytes => binary_bytes(v),
        Unit::Cores => {
            if v != 0.0 && v.abs() < 1.0 {
                format!("{}m", trim(v * 1000.0))
            } else {
                trim(v)
            }
        }
        Unit::Percent => format!("{}%", trim(v)),
        Unit::Seconds => seconds(v),
    }
}

fn check(chart: &Chart) -> Result<(), ChartError> {
    if !SIZE_RANGE.contains(&chart.width) || !SIZE_RANGE.contains(&chart.height) {
        return Err(ChartError::Size { width: chart.width, height: chart.height });
    }
    if chart.lines.len() > MAX_LINES {
        return Err(ChartError::TooManyLines { lines: chart.lines.len(), max: MAX_LINES });
    }
    Ok(())
}

fn draw_err(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

/// Registers the embedded font once; plotters' `ab_glyph` text looks fonts up by family name.
fn font_registered() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FONT, FontStyle::Normal, include_bytes!("../assets/fonts/DejaVuSans.ttf"))
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ChartError::Draw("the embedded DejaVu Sans font could not be read".into()))
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), ChartError> {
    font_registered()?;
    root.fill(&WHITE).map_err(draw_err)?;
    let (w, h) = (chart.width as i32, chart.height as i32);
    // Fonts and margins scale with the picture; tiny pictures get only lines.
    let small = w < 160 || h < 100;
    let font_px = (h as f64 / 28.0).clamp(10.0, 16.0);
    let text = |px: f64| (FONT, px).into_font().color(&TEXT_COLOR);

    let lines: Vec<Line> = chart
        .lines
        .iter()
        .map(|l| Line { label: l.label.clone(), points: decimate(&l.points, w.max(1) as usize) })
        .collect();
    let has_points = lines.iter().any(|l| l.points.iter().any(|p| p.1.is_finite()));

    // Legend below the plot: as many rows as fit in a third of the height.
    let legend = if small || h < 180 { Vec::new() } else { legend_entries(&lines, chart.unit) };
    let row_h = (font_px * 1.5) as i32;
    let (legend_rows, per_row) = legend_layout(&legend, w, font_px);
    let max_rows = ((h / 3) / row_h.max(1)).max(1);
    let shown_rows = legend_rows.min(max_rows);
    let legend_h = if legend.is_empty() { 0 } else { shown_rows * row_h + 6 };
    let (plot_area, legend_area) = root.split_vertically(h - legend_h);

    let (t0, t1) = time_range(&lines, chart.band.as_deref());
    let (lo, hi) = value_range(&lines, chart.threshold, chart.band.as_deref());
    let (y0, y1, y_ticks) = nice_ticks(lo, hi, chart.unit);
    let span_ms = t1 - t0;
    let x_ticks = time_ticks(t0, t1, ((w / 110).max(2)) as i64);
    let y_labels: Vec<String> = y_ticks.iter().map(|v| format_value(*v, chart.unit)).collect();
    let y_label_w = y_labels.iter().map(|s| s.chars().count()).max().unwrap_or(1) as f64
        * font_px
        * 0.62
        + 10.0;

    let mut builder = ChartBuilder::on(&plot_area);
    builder.margin(if small { 2 } else { 8 });
    if !small {
        // Room for half of the last time label, which is centred on the right edge.
        builder.margin_right((font_px * 3.0) as u32);
    }
    if !small {
        if !chart.title.is_empty() {
            builder.caption(&chart.title, text(font_px * 1.2));
        }
        builder.x_label_area_size((font_px * 2.8) as u32).y_label_area_size(y_label_w as u32);
    }
    let mut cc = builder
        .build_cartesian_2d((t0..t1).with_key_points(x_ticks), TickedAxis { range: y0..y1, ticks: y_ticks })
        .map_err(draw_err)?;
    if !small {
        let unit_desc = match chart.unit {
            Unit::Cores => "cores",
            _ => "",
        };
        cc.configure_mesh()
            .x_label_formatter(&|t| format_time(*t, span_ms))
            .y_label_formatter(&|v| format_value(*v, chart.unit))
            .y_desc(unit_desc)
            .label_style(text(font_px * 0.85))
            .axis_desc_style(text(font_px * 0.85))
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(draw_err)?;
    }

    if let Some(band) = &chart.band {
        // One polygon per run of finite bounds: upper edge forward, lower edge back.
        for run in band.split(|b| !b.1.is_finite() || !b.2.is_finite()).filter(|r| r.len() > 1) {
            let poly: Vec<(i64, f64)> =
                run.iter().map(|b| (b.0, b.2)).chain(run.iter().rev().map(|b| (b.0, b.1))).collect();
            cc.draw_series(std::iter::once(Polygon::new(poly, BAND_COLOR.mix(0.15).filled())))
                .map_err(draw_err)?;
        }
    }

    let stroke = if w >= 600 { 2 } else { 1 };
    for (i, line) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()].stroke_width(stroke);
        for segment in segments(&line.points) {
            if segment.len() == 1 {
                cc.draw_series(std::iter::once(Circle::new(segment[0], 2, color.filled())))
                    .map_err(draw_err)?;
            } else {
                cc.draw_series(LineSeries::new(segment, color)).map_err(draw_err)?;
            }
        }
    }

    if let Some(th) = chart.threshold.filter(|t| t.is_finite()) {
        let dashes = 24;
        let dash_ms = ((t1 - t0) / (dashes * 2)).max(1);
        let style = THRESHOLD_COLOR.stroke_width(stroke);
        cc.draw_series((0..dashes).map(|k| {
            let a = t0 + 2 * k * dash_ms;
            PathElement::new(vec![(a, th), ((a + dash_ms).min(t1), th)], style)
        }))
        .map_err(draw_err)?;
        if !small {
            let label = format!("threshold {}", format_value(th, chart.unit));
            let at = cc.backend_coord(&(t0, th));
            plot_area
                .draw(&Text::new(label, (at.0 + 4, at.1 - font_px as i32 - 2), text(font_px * 0.8).color(&THRESHOLD_COLOR)))
                .map_err(draw_err)?;
        }
    }

    if !small {
        // The time axis is in UTC: say so in the bottom-right corner, under the last time label.
        let (pw, ph) = plot_area.dim_in_pixel();
        let at = (pw as i32 - (font_px * 2.4) as i32, ph as i32 - (font_px * 1.1) as i32);
        plot_area.draw(&Text::new("UTC", at, text(font_px * 0.8))).map_err(draw_err)?;
    }

    if !has_points && !small {
        let (pw, ph) = plot_area.dim_in_pixel();
        let msg = if chart.lines.is_empty() { "no data: the query returned no series" } else { "no data in this time range" };
        let style = text(font_px).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
        plot_area.draw(&Text::new(msg, (pw as i32 / 2, ph as i32 / 2), style)).map_err(draw_err)?;
    }

    if !legend.is_empty() {
        draw_legend(&legend_area, &legend, per_row, shown_rows, legend_rows, font_px)?;
    }
    Ok(())
}

/// Legend texts: the series label and its last value.
fn legend_entries(lines: &[Line], unit: Unit) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let label = if l.label.is_empty() { "{}" } else { l.label.as_str() };
            let label: String = if label.chars().count() > 70 {
                label.chars().take(67).chain("...".chars()).collect()
            } else {
                label.to_string()
            };
            match l.points.iter().rev().find(|p| p.1.is_finite()) {
                Some(p) => format!("{label}  {}", format_value(p.1, unit)),
                None => label,
            }
        })
        .collect()
}

/// Entries per row (same width columns) and number of rows.
fn legend_layout(entries: &[String], width: i32, font_px: f64) -> (i32, i32) {
    if entries.is_empty() {
        return (0, 1);
    }
    let longest = entries.iter().map(|e| e.chars().count()).max().unwrap_or(1) as f64;
    let col_w = longest * font_px * 0.55 + font_px * 2.0;
    let per_row = ((width as f64 - 16.0) / col_w).floor().max(1.0) as i32;
    let rows = (entries.len() as i32 + per_row - 1) / per_row;
    (rows, per_row)
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[String],
    per_row: i32,
    shown_rows: i32,
    rows: i32,
    font_px: f64,
) -> Result<(), ChartError> {
    let (w, _) = area.dim_in_pixel();
    let col_w = (w as i32 - 16) / per_row;
    let row_h = (font_px * 1.5) as i32;
    let style = (FONT, font_px * 0.85).into_font().color(&TEXT_COLOR);
    let capacity = (shown_rows * per_row) as usize;
    for (i, entry) in entries.iter().enumerate() {
        let last_slot = i + 1 == capacity && entries.len() > capacity;
        if i >= capacity {
            break;
        }
        let (row, col) = (i as i32 / per_row, i as i32 % per_row);
        let (x, y) = (8 + col * col_w, 2 + row * row_h);
        if last_slot {
            let more = format!("... and {} more", entries.len() - i);
            area.draw(&Text::new(more, (x + (font_px * 1.3) as i32, y), style.clone())).map_err(draw_err)?;
            break;
        }
        let color = PALETTE[i % PALETTE.len()];
        let sq = (font_px * 0.8) as i32;
        area.draw(&Rectangle::new([(x, y + 2), (x + sq, y + 2 + sq)], color.filled())).map_err(draw_err)?;
        let max_chars = ((col_w as f64 - font_px * 1.5) / (font_px * 0.5)).max(4.0) as usize;
        let shown: String = if entry.chars().count() > max_chars {
            entry.chars().take(max_chars.saturating_sub(3)).chain("...".chars()).collect()
        } else {
            entry.clone()
        };
        area.draw(&Text::new(shown, (x + (font_px * 1.3) as i32, y), style.clone())).map_err(draw_err)?;
    }
    let _ = rows;
    Ok(())
}

/// Keeps at most about `2 * buckets` points: the first, minimum, maximum and last of each bucket,
/// so a spike survives. Gaps (NaN) are kept as gaps.
fn decimate(points: &[(i64, f64)], buckets: usize) -> Vec<(i64, f64)> {
    let buckets = buckets.max(1);
    if points.len() <= buckets * 2 {
        return points.to_vec();
    }
    let per = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(buckets * 4);
    for chunk in points.chunks(per) {
        if chunk.iter().any(|p| !p.1.is_finite()) {
            // Keep the gap: first finite, a NaN, last finite.
            if let Some(p) = chunk.iter().find(|p| p.1.is_finite()) {
                out.push(*p);
            }
            out.push((chunk[chunk.len() / 2].0, f64::NAN));
            if let Some(p) = chunk.iter().rev().find(|p| p.1.is_finite()) {
                out.push(*p);
            }
            continue;
        }
        let min = chunk.iter().min_by(|a, b| a.1.total_cmp(&b.1)).copied();
        let max = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1)).copied();
        let mut keep = vec![chunk[0], chunk[chunk.len() - 1]];
        keep.extend(min);
        keep.extend(max);
        keep.sort_by_key(|p| p.0);
        keep.dedup_by_key(|p| p.0);
        out.extend(keep);
    }
    out
}

/// Runs of finite points, split at NaN/infinite values.
fn segments(points: &[(i64, f64)]) -> Vec<Vec<(i64, f64)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for p in points {
        if p.1.is_finite() {
            cur.push(*p);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn time_range(lines: &[Line], band: Option<&[(i64, f64, f64)]>) -> (i64, i64) {
    let ts = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .chain(band.into_iter().flatten().map(|b| b.0));
    let (lo, hi) = ts.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if lo > hi {
        return (0, 1);
    }
    if lo == hi {
        return (lo - 30_000, hi + 30_000);
    }
    (lo, hi)
}

fn value_range(lines: &[Line], threshold: Option<f64>, band: Option<&[(i64, f64, f64)]>) -> (f64, f64) {
    let vs = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(threshold)
        .chain(band.into_iter().flatten().flat_map(|b| [b.1, b.2]))
        .filter(|v| v.is_finite());
    let (lo, hi) = vs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    // Start at zero for non-negative data (usage charts).
    let lo = lo.min(0.0);
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    (lo, hi)
}

/// A value axis whose grid lines and labels sit at the given ticks.
struct TickedAxis {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let frac = if span > 0.0 { (v - self.range.start) / span } else { 0.0 };
        limit.0 + (frac * (limit.1 - limit.0) as f64).round() as i32
    }
    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

/// Rounds `lo..hi` out to round steps in the unit's scale (binary for bytes): the axis range and
/// its 3 to 6 tick values.
fn nice_ticks(lo: f64, hi: f64, unit: Unit) -> (f64, f64, Vec<f64>) {
    let mut scale = 1.0;
    if unit == Unit::Bytes {
        while hi.abs().max(lo.abs()) / scale >= 1024.0 {
            scale *= 1024.0;
        }
    }
    let raw = (hi - lo) / scale / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / scale / step).floor();
    let last = (hi / scale / step).ceil().max(first + 1.0);
    let ticks = (0..=((last - first) as i64)).map(|k| (first + k as f64) * step * scale).collect();
    (first * step * scale, last * step * scale, ticks)
}

/// Tick times on round UTC boundaries, at most about `max` of them.
fn time_ticks(t0: i64, t1: i64, max: i64) -> Vec<i64> {
    const STEPS_S: [i64; 19] = [
        1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
        172_800, 604_800,
    ];
    let span = (t1 - t0).max(1);
    let step = STEPS_S
        .iter()
        .map(|s| s * 1000)
        .find(|s| span / s <= max)
        .unwrap_or_else(|| (span / max.max(1)).max(1));
    let first = t0.div_euclid(step) * step + if t0.rem_euclid(step) == 0 { 0 } else { step };
    (0..).map(|k| first + k * step).take_while(|t| *t <= t1).collect()
}

fn format_time(t_ms: i64, span_ms: i64) -> String {
    let Some(dt) = chrono::DateTime::from_timestamp_millis(t_ms) else { return String::new() };
    if span_ms > 2 * 86_400_000 {
        dt.format("%m-%d %H:%M").to_string()
    } else if span_ms < 300_000 {
        dt.format("%H:%M:%S").to_string()
    } else {
        dt.format("%H:%M").to_string()
    }
}

/// A number with at most three significant digits, no trailing zeros.
fn trim(v: f64) -> String {
    let a = v.abs();
    let s = if a == 0.0 {
        "0".to_string()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn si(v: f64, suffix: &str) -> String {
    let a = v.abs();
    let (div, p) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    format!("{}{p}{suffix}", trim(v / div))
}

fn binary_bytes(v: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i + 1 < UNITS.len() {
        x /= 1024.0;
        i += 1;
    }
    format!("{} {}", trim(x), UNITS[i])
}

fn seconds(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0 s".into()
    } else if a < 1e-3 {
        format!("{} µs", trim(v * 1e6))
    } else if a < 1.0 {
        format!("{} ms", trim(v * 1e3))
    } else if a < 120.0 {
        format!("{} s", trim(v))
    } else if a < 7200.0 {
        format!("{} min", trim(v / 60.0))
    } else if a < 172_800.0 {
        format!("{} h", trim(v / 3600.0))
    } else {
        format!("{} d", trim(v / 86400.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_chart(width: u32, height: u32) -> Chart {
        let t0 = 1_700_000_000_000;
        Chart {
            title: "CPU usage".into(),
            unit: Unit::Cores,
            lines: vec![
                Line {
                    label: "node-1".into(),
                    points: (0..60).map(|i| (t0 + i * 60_000, 0.5 + (i as f64 / 10.0).sin() * 0.3)).collect(),
                },
                Line {
                    label: "node-2".into(),
                    points: (0..60)
                        .map(|i| (t0 + i * 60_000, if i == 30 { f64::NAN } else { 1.2 }))
                        .collect(),
                },
            ],
            threshold: Some(1.5),
            band: Some((0..60).map(|i| (t0 + i * 60_000, 0.3, 0.9)).collect()),
            width,
            height,
        }
    }

    #[test]
    fn png_has_the_asked_size_and_coloured_lines() {
        let png_bytes = render_png(&sample_chart(640, 320)).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (640, 320));
        let px: Vec<&[u8]> = buf[..info.buffer_size()].chunks(3).collect();
        let has = |c: RGBColor| px.iter().any(|p| p[0] == c.0 && p[1] == c.1 && p[2] == c.2);
        assert!(has(PALETTE[0]), "first line's colour drawn");
        assert!(has(PALETTE[1]), "second line's colour drawn");
        assert!(has(THRESHOLD_COLOR), "threshold drawn");
        // Text was drawn with the embedded font: dark pixels exist outside the lines.
        assert!(px.iter().any(|p| p[0] < 80 && p[1] < 80 && p[2] < 80));
    }

    #[test]
    fn svg_has_title_legend_and_one_path_per_segment() {
        let svg = render_svg(&sample_chart(800, 300)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("CPU usage"));
        assert!(svg.contains("node-1"));
        assert!(svg.contains("node-2  1.2"), "legend shows the last value");
        assert!(svg.contains("threshold 1.5"));
        // node-2 has a gap: two polylines in its colour.
        assert_eq!(svg.matches("stroke=\"#FF7F0E\"").count(), 2, "{svg}");
    }

    #[test]
    fn size_out_of_range_is_an_error() {
        for (w, h) in [(15, 100), (100, 4001), (0, 0)] {
            let err = render_png(&sample_chart(w, h)).unwrap_err();
            assert!(matches!(err, ChartError::Size { .. }), "{err}");
        }
        assert!(render_png(&sample_chart(16, 16)).is_ok());
        assert!(render_svg(&sample_chart(4000, 16)).is_ok());
    }

    #[test]
    fn too_many_lines_is_an_error() {
        let mut c = sample_chart(300, 200);
        c.lines = (0..=MAX_LINES).map(|i| Line { label: i.to_string(), points: vec![(0, 1.0)] }).collect();
        assert!(matches!(render_svg(&c), Err(ChartError::TooManyLines { lines: 101, max: 100 })));
    }

    #[test]
    fn empty_chart_says_no_data() {
        let c = Chart { title: "x".into(), width: 400, height: 200, ..Chart::default() };
        assert!(render_svg(&c).unwrap().contains("no data: the query returned no series"));
        let c = Chart {
            lines: vec![Line { label: "a".into(), points: vec![(0, f64::NAN)] }],
            width: 400,
            height: 200,
            ..Chart::default()
        };
        assert!(render_svg(&c).unwrap().contains("no data in this time range"));
    }

    #[test]
    fn many_points_are_bounded_and_keep_spikes() {
        let mut pts: Vec<(i64, f64)> = (0..100_000).map(|i| (i, 1.0)).collect();
        pts[54_321].1 = 99.0;
        let d = decimate(&pts, 500);
        assert!(d.len() <= 2000, "{}", d.len());
        assert!(d.iter().any(|p| p.1 == 99.0));
        let mut c = sample_chart(500, 200);
        c.lines = vec![Line { label: "big".into(), points: pts }];
        assert!(render_png(&c).is_ok());
    }

    #[test]
    fn axis_ticks_are_round_in_the_unit() {
        let mib = 1024.0 * 1024.0;
        let (lo, hi, ticks) = nice_ticks(0.0, 390.0 * mib, Unit::Bytes);
        assert_eq!((lo, hi), (0.0, 400.0 * mib));
        assert_eq!(ticks, vec![0.0, 100.0 * mib, 200.0 * mib, 300.0 * mib, 400.0 * mib]);
        let (_, hi, ticks) = nice_ticks(0.0, 0.7, Unit::Cores);
        assert_eq!(hi, 0.8);
        assert_eq!(ticks.len(), 5);
        let t0 = 1_700_000_100_000;
        let ticks = time_ticks(t0, t0 + 3_600_000, 6);
        assert_eq!(ticks.len(), 6, "{ticks:?}");
        assert!(ticks.iter().all(|t| t % 600_000 == 0));
    }

    #[test]
    fn values_are_written_in_their_unit() {
        assert_eq!(format_value(1536.0 * 1024.0 * 1024.0, Unit::Bytes), "1.5 GiB");
        assert_eq!(format_value(512.0, Unit::Bytes), "512 B");
        assert_eq!(format_value(0.25, Unit::Cores), "250m");
        assert_eq!(format_value(2.5, Unit::Cores), "2.5");
        assert_eq!(format_value(42.0, Unit::Percent), "42%");
        assert_eq!(format_value(0.0032, Unit::Seconds), "3.2 ms");
        assert_eq!(format_value(90.0, Unit::Seconds), "90 s");
        assert_eq!(format_value(12_345.0, Unit::None), "12.3k");
        assert_eq!("bytes".parse::<Unit>(), Ok(Unit::Bytes));
        assert!("furlongs".parse::<Unit>().unwrap_err().contains("furlongs"));
    }
}
