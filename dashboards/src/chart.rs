//! Charts drawn on the server (plotters): `/render`, alert e-mails, wiki and chat embeds.

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
    Percent,
    Seconds,
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
    #[error("drawing failed: {0}")]
    Draw(String),
}

/// Draws `chart` as PNG bytes.
pub fn render_png(chart: &Chart) -> Result<Vec<u8>, ChartError> {
    let _ = chart;
    unimplemented!("chart: being written")
}

/// Draws `chart` as an SVG document.
pub fn render_svg(chart: &Chart) -> Result<String, ChartError> {
    let _ = chart;
    unimplemented!("chart: being written")
}
