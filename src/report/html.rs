//! The run report: one self-contained page, no scripts, no external files.
//!
//! The page is XHTML-style (every tag closed, only the five XML entities),
//! so it is both a browser page and well-formed XML that tools can parse.
//! Everything taken from the run (samples, vocabulary, paths) goes through
//! [`escape`]: a corpus with `<` or `&` in it must show, not inject.

use std::fmt::Write as _;

use crate::model::Checkpoint;
use crate::rundir::{EpochRow, RunHistory, escape, format_loss};

/// Like [`escape`], and whitespace made visible too, for one-line cells
/// (the vocabulary, where a newline or a space is a symbol of its own).
fn escape_visible(text: &str) -> String {
    let shown: String = text
        .chars()
        .map(|c| match c {
            '\n' => '\u{240a}',
            '\t' => '\u{2409}',
            ' ' => '\u{2420}',
            c => c,
        })
        .collect();
    escape(&shown)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;\
padding:0 1em;color:#222}table{border-collapse:collapse;margin:0.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}\
pre{white-space:pre-wrap;word-break:break-all;background:#f8f8f8;padding:0.6em;\
border-left:3px solid #1f77b4}.seed{color:#888}.gen{color:#1a7f37;font-weight:bold}\
details{margin:0.4em 0}summary{cursor:pointer}.note{color:#a15c00}";

/// The whole report page: summary, loss chart (`chart_svg`, inlined),
/// hyper-parameters (from `checkpoint`, when there is one), throughput per
/// epoch and every epoch's samples.
pub fn report_page(
    title: &str,
    history: &RunHistory,
    checkpoint: Option<&Checkpoint>,
    chart_svg: &str,
) -> String {
    let mut p = String::new();
    p.push_str("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n");
    let _ = writeln!(
        p,
        "<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(title)
    );
    let _ = writeln!(p, "<h1>{}</h1>", escape(title));
    summary(&mut p, history);
    p.push_str("<h2>Loss</h2>\n");
    // An XML declaration may only open a document, not sit inside one.
    let svg = match chart_svg.find("<svg") {
        Some(i) => &chart_svg[i..],
        None => chart_svg,
    };
    p.push_str(svg.trim_end());
    p.push('\n');
    hyper_table(&mut p, checkpoint);
    throughput_table(&mut p, &history.epochs);
    samples(&mut p, &history.epochs);
    if !history.skipped.is_empty() {
        p.push_str("<h2>Skipped lines</h2>\n<ul class=\"note\">\n");
        for s in &history.skipped {
            let _ = writeln!(
                p,
                "<li>{} line {}: {}</li>",
                escape(&s.path.display().to_string()),
                s.line,
                escape(&s.what)
            );
        }
        p.push_str("</ul>\n");
    }
    p.push_str("</body>\n</html>\n");
    p
}

fn summary(p: &mut String, history: &RunHistory) {
    let Some(last) = history.epochs.last() else {
        p.push_str("<p class=\"note\">No completed epoch yet.</p>\n");
        return;
    };
    let seconds: f64 = history.epochs.iter().map(|r| r.seconds).sum();
    let windows: f64 = history
        .epochs
        .iter()
        .map(|r| r.samples_per_s * r.seconds)
        .sum();
    p.push_str("<table>\n");
    row(p, "epochs", &format!("{} of {}", last.epoch, last.epochs));
    row(p, "final loss", &format_loss(last.loss));
    if let Some(best) = history.best() {
        let text = format!("{} (epoch {})", format_loss(best.loss), best.epoch);
        row(p, "best loss", &text);
    }
    if let Some(v) = last.val_loss {
        row(p, "final validation loss", &format_loss(v));
    }
    if let Some(best) = history.best_val()
        && let Some(v) = best.val_loss
    {
        let text = format!(
            "{} (epoch {}, in best.safetensors)",
            format_loss(v),
            best.epoch
        );
        row(p, "best validation loss", &text);
    }
    if last.early_stop {
        let waited = history.best_val().map_or(String::new(), |b| {
            format!(" for {} epochs", last.epoch - b.epoch)
        });
        let text = format!(
            "after epoch {}: no new best validation loss{waited} (patience)",
            last.epoch
        );
        row(p, "stopped early", &text);
    }
    row(p, "optimizer steps", &last.step.to_string());
    row(p, "training time", &format!("{seconds:.1} s"));
    row(
        p,
        "mean throughput",
        &format!("{:.0} samples/s", windows / seconds.max(1e-9)),
    );
    p.push_str("</table>\n");
}

/// One `<tr>` of a two-column key/value table; both sides are escaped.
fn row(p: &mut String, key: &str, value: &str) {
    let _ = writeln!(
        p,
        "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>",
        escape(key),
        escape(value)
    );
}

fn hyper_table(p: &mut String, checkpoint: Option<&Checkpoint>) {
    p.push_str("<h2>Hyper-parameters</h2>\n");
    let Some(c) = checkpoint else {
        p.push_str("<p class=\"note\">No last.safetensors in the run directory.</p>\n");
        return;
    };
    let h = &c.hyper;
    let vocab: String = c.vocab.iter().collect();
    p.push_str("<table class=\"hyper\">\n");
    // Debug keeps 1e-7 short where Display writes 0.0000001.
    row(p, "maxlen", &h.maxlen.to_string());
    row(p, "step", &h.step.to_string());
    row(p, "hidden", &h.hidden.to_string());
    row(p, "batch_size", &h.batch.to_string());
    row(p, "lr", &format!("{:?}", h.lr));
    row(p, "rho", &format!("{:?}", h.rho));
    row(p, "eps", &format!("{:?}", h.eps));
    row(p, "epochs", &h.epochs.to_string());
    row(p, "seed", &h.seed.to_string());
    row(p, "lowercase", &h.lowercase.to_string());
    row(p, "vocabulary size", &c.vocab.len().to_string());
    row(p, "parameters", &c.params.len().to_string());
    let _ = writeln!(
        p,
        "<tr><th class=\"l\">vocabulary</th><td class=\"l\"><code>{}</code></td></tr>",
        escape_visible(&vocab)
    );
    p.push_str("</table>\n");
}

fn throughput_table(p: &mut String, epochs: &[EpochRow]) {
    // A run without validation keeps the table it always had.
    let validated = epochs.iter().any(|r| r.val_loss.is_some());
    let _ = writeln!(
        p,
        "<h2>Epochs</h2>\n<table class=\"epochs\">\n<tr><th>epoch</th><th>loss</th>{}\
        <th>seconds</th><th>samples/s</th><th>batches</th><th>step</th>\
        <th class=\"l\">checkpoint</th></tr>",
        if validated { "<th>val_loss</th>" } else { "" }
    );
    for r in epochs {
        let ckpt = r
            .checkpoint
            .as_ref()
            .and_then(|c| c.file_name())
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        // The best epoch's value is marked, as the console marks it.
        let val = match r.val_loss {
            Some(v) if r.best_epoch == Some(r.epoch) => {
                format!("<td>{} (best)</td>", format_loss(v))
            }
            Some(v) => format!("<td>{}</td>", format_loss(v)),
            None if validated => "<td></td>".into(),
            None => String::new(),
        };
        let _ = writeln!(
            p,
            "<tr><td>{}</td><td>{}</td>{val}<td>{:.2}</td><td>{:.0}</td><td>{}</td><td>{}</td>\
             <td class=\"l\">{}</td></tr>",
            r.epoch,
            format_loss(r.loss),
            r.seconds,
            r.samples_per_s,
            r.batches,
            r.step,
            escape(&ckpt)
        );
    }
    p.push_str("</table>\n");
}

fn samples(p: &mut String, epochs: &[EpochRow]) {
    if epochs.iter().all(|r| r.samples.is_empty()) {
        return;
    }
    p.push_str("<h2>Samples</h2>\n");
    let last = epochs.len().saturating_sub(1);
    for (i, r) in epochs.iter().enumerate() {
        let Some(first) = r.samples.first() else {
            continue;
        };
        // Only the newest epoch starts unfolded: 60 epochs x 4 samples
        // would otherwise be a very long page.
        let open = if i == last { " open=\"open\"" } else { "" };
        let val = r
            .val_loss
            .map_or(String::new(), |v| format!(", val_loss {}", format_loss(v)));
        let _ = writeln!(
            p,
            "<details{open}><summary>epoch {}: loss {}{val}</summary>\n<p>seed: <code>{}</code></p>",
            r.epoch,
            format_loss(r.loss),
            escape(&first.seed)
        );
        for s in &r.samples {
            let _ = writeln!(
                p,
                "<h4>temperature {:?}</h4>\n<pre><span class=\"seed\">{}</span>\
                 <span class=\"gen\">{}</span></pre>",
                s.temperature,
                escape(&s.seed),
                escape(&s.text)
            );
        }
        p.push_str("</details>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_pictures_control_characters() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
        assert_eq!(escape("x\u{c}y\tz\n"), "x\u{240c}y\tz\n");
        assert_eq!(escape("\r\u{7f}"), "\u{240d}\u{2421}");
    }
}
