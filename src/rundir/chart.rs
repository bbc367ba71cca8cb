//! The loss chart as SVG: epoch loss against epoch, with the per-batch
//! running loss behind it and, with a validation split, the validation
//! loss as a second line (where it parts from the training loss is where
//! the model starts to overfit).
//!
//! `plotters` draws the axes, grid, lines and legend. The epoch points are
//! ours, added on top: a `<circle>` per epoch carrying `data-epoch` and
//! `data-loss` (or `data-val-loss`) attributes and a `<title>` tooltip with
//! the loss as the CLI prints it, so a reader (or a test) finds every value
//! without parsing path coordinates back into numbers.

use plotters::prelude::*;

use super::RunHistory;
use crate::error::{Error, Result};

/// Chart size in pixels.
pub const CHART_SIZE: (u32, u32) = (800, 450);

const EPOCH_COLOUR: RGBColor = RGBColor(31, 119, 180);
const BATCH_COLOUR: RGBColor = RGBColor(255, 127, 14);
const VAL_COLOUR: RGBColor = RGBColor(44, 160, 44);

/// A line with a point per epoch: the epoch loss, or the validation loss.
struct EpochLine {
    /// `(epoch, loss)`, finite losses only.
    points: Vec<(usize, f64)>,
    colour: RGBColor,
    /// In the legend.
    label: &'static str,
    /// The overlay group's class.
    class: &'static str,
    /// The attribute carrying a point's loss.
    attribute: &'static str,
    /// The loss's name in a point's tooltip, as the CLI prints it.
    name: &'static str,
}

/// The loss chart of `history` as a standalone SVG document.
pub fn loss_chart(history: &RunHistory) -> Result<String> {
    let line = |loss: fn(&super::EpochRow) -> Option<f64>| -> Vec<(usize, f64)> {
        history
            .epochs
            .iter()
            .filter_map(|r| Some((r.epoch, loss(r)?)))
            .filter(|p| p.1.is_finite())
            .collect()
    };
    let mut lines = vec![EpochLine {
        points: line(|r| Some(r.loss)),
        colour: EPOCH_COLOUR,
        label: "epoch loss",
        class: "epoch-losses",
        attribute: "data-loss",
        name: "loss",
    }];
    // Only a run with a validation split gets the second line.
    let val = line(|r| r.val_loss);
    if !val.is_empty() {
        lines.push(EpochLine {
            points: val,
            colour: VAL_COLOUR,
            label: "validation loss",
            class: "val-losses",
            attribute: "data-val-loss",
            name: "val_loss",
        });
    }
    let batches: Vec<(usize, f64, f64)> = history
        .batches
        .iter()
        .filter(|r| r.running_loss.is_finite())
        .map(|r| (r.epoch, r.x(), r.running_loss))
        .collect();
    let all = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|&(e, y)| (e as f64, y)))
            .chain(batches.iter().map(|&(_, x, y)| (x, y)))
    };
    let x_max = all().map(|p| p.0).fold(1.0f64, f64::max).ceil();
    let (y_min, y_max) = y_range(all());

    let mut svg = String::new();
    let mut points = String::new();
    // plotters' errors carry the backend's; with a String target drawing
    // cannot fail for I/O reasons, so any error is reported as "other".
    let draw = |svg: &mut String, points: &mut String| -> std::result::Result<(), String> {
        let root = SVGBackend::with_string(svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Loss per epoch", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, y_min..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .y_label_formatter(&|y| format!("{y:.2}"))
            // At most one label per epoch, rounded: no `1.9999999999999998`,
            // no labels run together.
            .x_labels((x_max.ceil() as usize + 1).clamp(2, 11))
            .x_label_formatter(&|x| {
                let r = (x * 10.0).round() / 10.0;
                if r.fract() == 0.0 {
                    format!("{r:.0}")
                } else {
                    format!("{r:.1}")
                }
            })
            .draw()
            .map_err(|e| e.to_string())?;
        // One line per epoch: the running mean restarts with each epoch,
        // and joining the epochs would draw a cliff that is not a loss.
        for (i, run) in batches.chunk_by(|a, b| a.0 == b.0).enumerate() {
            let series = chart
                .draw_series(LineSeries::new(
                    run.iter().map(|&(_, x, y)| (x, y)),
                    BATCH_COLOUR.mix(0.7).stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
            if i == 0 {
                series
                    .label("running loss (per batch)")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BATCH_COLOUR));
            }
        }
        for l in &lines {
            let colour = l.colour;
            chart
                .draw_series(LineSeries::new(
                    l.points.iter().map(|&(e, y)| (e as f64, y)),
                    colour.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(l.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        for l in &lines {
            let RGBColor(r, g, b) = l.colour;
            points.push_str(&format!("<g class=\"{}\">\n", l.class));
            for &(epoch, y) in &l.points {
                let (cx, cy) = chart.backend_coord(&(epoch as f64, y));
                let loss = format_loss(y);
                points.push_str(&format!(
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"4\" fill=\"#{r:02x}{g:02x}{b:02x}\" \
                     data-epoch=\"{epoch}\" {}=\"{loss}\"><title>{}</title></circle>\n",
                    l.attribute,
                    escape(&format!("epoch {epoch}: {} {loss}", l.name)),
                ));
            }
            points.push_str("</g>\n");
        }
        root.present().map_err(|e| e.to_string())
    };
    draw(&mut svg, &mut points)
        .map_err(|e| Error::io("loss.svg", std::io::Error::other(format!("plotting: {e}"))))?;
    with_overlay(svg, &points, "loss.svg")
}

/// The y axis of a chart of `points` (x, loss): their range padded by 5 %
/// (at least 0.01) and never below 0; 0..1 when there are none.
fn y_range(points: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    let (lo, hi) = points.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    if lo.is_finite() {
        let pad = ((hi - lo) * 0.05).max(0.01);
        ((lo - pad).max(0.0), hi + pad)
    } else {
        (0.0, 1.0)
    }
}

/// `svg` with `overlay` (the points, with their data attributes and
/// titles) inserted last, so the points sit above the lines.
fn with_overlay(mut svg: String, overlay: &str, what: &str) -> Result<String> {
    match svg.rfind("</svg>") {
        Some(end) => svg.insert_str(end, overlay),
        None => {
            return Err(Error::io(
                what,
                std::io::Error::other("plotting produced no closing </svg>"),
            ));
        }
    }
    Ok(svg)
}

/// Text made safe for an XML/HTML text node or a quoted attribute value.
///
/// Control characters other than tab and newline are not allowed in XML
/// 1.0 at all, even as references, so they show as their Unicode "control
/// picture" (U+2400 block), e.g. a form feed as `␌`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('?')),
            '\u{7f}' => out.push('\u{2421}'),
            c => out.push(c),
        }
    }
    out
}

/// A loss as the CLI prints it (`epoch 3/60: loss 1.4321`); the chart and
/// the report use the same digits so a value can be found in each.
pub fn format_loss(loss: f64) -> String {
    format!("{loss:.4}")
}

/// One named line of [`seconds_chart`]: `(seconds, loss)` points.
#[derive(Clone, Debug)]
pub struct TimedSeries {
    /// In the legend and the overlay's `data-series`.
    pub name: String,
    /// `(training seconds, loss)`, in time order; non-finite losses are left out.
    pub points: Vec<(f64, f64)>,
}

/// Loss against training seconds, one line per series (e.g. window and
/// stream mode's validation loss), as a standalone SVG document; each
/// point is also a `<circle>` carrying `data-series`, `data-seconds` and
/// `data-loss`, as [`loss_chart`]'s epoch points do.
pub fn seconds_chart(title: &str, y_desc: &str, series: &[TimedSeries]) -> Result<String> {
    const COLOURS: [RGBColor; 3] = [EPOCH_COLOUR, VAL_COLOUR, BATCH_COLOUR];
    let finite = |s: &TimedSeries| -> Vec<(f64, f64)> {
        let ok = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        s.points.iter().filter(ok).copied().collect()
    };
    let lines: Vec<Vec<(f64, f64)>> = series.iter().map(finite).collect();
    let all = || lines.iter().flatten();
    let x_max = all().map(|p| p.0).fold(1e-9f64, f64::max) * 1.02;
    let (y_min, y_max) = y_range(all().copied());
    let mut svg = String::new();
    let mut overlay = String::new();
    let draw = |svg: &mut String, overlay: &mut String| -> std::result::Result<(), String> {
        let root = SVGBackend::with_string(svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, y_min..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("training seconds")
            .y_desc(y_desc)
            .y_label_formatter(&|y| format!("{y:.2}"))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (s, points)) in series.iter().zip(&lines).enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (s, points)) in series.iter().zip(&lines).enumerate() {
            let RGBColor(r, g, b) = COLOURS[i % COLOURS.len()];
            let name = escape(&s.name);
            overlay.push_str(&format!("<g data-series=\"{name}\">\n"));
            for &(x, y) in points {
                let (cx, cy) = chart.backend_coord(&(x, y));
                let loss = format_loss(y);
                overlay.push_str(&format!(
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"#{r:02x}{g:02x}{b:02x}\" \
                     data-series=\"{name}\" data-seconds=\"{x:.1}\" data-loss=\"{loss}\">\
                     <title>{name}: {loss} at {x:.1} s</title></circle>\n"
                ));
            }
            overlay.push_str("</g>\n");
        }
        root.present().map_err(|e| e.to_string())
    };
    draw(&mut svg, &mut overlay)
        .map_err(|e| Error::io("chart", std::io::Error::other(format!("plotting: {e}"))))?;
    with_overlay(svg, &overlay, "chart")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seconds_chart_has_every_point_of_both_lines() {
        let series = [
            TimedSeries {
                name: "window".into(),
                points: vec![(0.0, 4.0), (10.0, 2.5), (20.0, 2.1)],
            },
            TimedSeries {
                name: "stream".into(),
                points: vec![(0.0, 4.0), (9.0, 1.9), (f64::NAN, 1.0)],
            },
        ];
        let svg = seconds_chart("validation loss", "loss", &series).unwrap();
        assert_eq!(
            svg.matches("data-series=\"window\" data-seconds").count(),
            3
        );
        assert_eq!(
            svg.matches("data-series=\"stream\" data-seconds").count(),
            2
        );
        assert!(svg.contains("data-seconds=\"9.0\" data-loss=\"1.9000\""));
        assert!(svg.contains("training seconds"));
    }
}
