//! Charts and reports end to end: `train` writes `loss.svg` every epoch,
//! `report` writes one self-contained HTML page, both well-formed XML, with
//! every epoch's loss, the hyper-parameters and the samples escaped (the
//! corpus is full of `<` and `&`).

mod common;
use common::cli::{ok, run};

use std::path::Path;

use charlstm_cuda::rundir::{EpochRow, RunHistory, format_loss};

/// Pseudo-text where markup characters are as common as letters, so the
/// seeds and samples hold them too.
fn markup_text() -> String {
    let words = [
        "a<b", "r&d", "x > y", "<i>", "&amp;", "\"q\"", "it's", "the", "will",
    ];
    let mut s = String::new();
    let mut x: u32 = 777;
    for i in 0..700 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s.push_str(words[(x >> 16) as usize % words.len()]);
        s.push(if i % 9 == 8 { '\n' } else { ' ' });
    }
    s
}

fn parse(text: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(text, options)
        .unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{text}"))
}

fn text_of(node: roxmltree::Node) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

/// Trains 3 small epochs into `out` and returns the epochs' metrics.
fn train_three(dir: &Path) -> Vec<EpochRow> {
    let corpus = dir.join("markup.txt");
    std::fs::write(&corpus, markup_text()).expect("write corpus");
    let out = dir.join("run");
    let o = ok(&[
        "train",
        "--corpus",
        corpus.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
        "--epochs",
        "3",
        "--maxlen",
        "10",
        "--step",
        "3",
        "--hidden",
        "16",
        "--batch-size",
        "32",
        "--steps-per-epoch",
        "8",
        "--gen-length",
        "40",
        "--temperatures",
        "0.5,1.0",
        "--device",
        "cpu",
        "--quiet",
    ]);
    let history = RunHistory::load(&out.join("metrics.jsonl")).expect("metrics.jsonl");
    assert!(history.skipped.is_empty(), "{:?}", history.skipped);
    assert_eq!(history.epochs.len(), 3);
    // The chart and report print losses as the CLI does: same digits.
    let stdout = String::from_utf8_lossy(&o.stdout);
    for r in &history.epochs {
        let line = format!("epoch {}/3: loss {}", r.epoch, format_loss(r.loss));
        assert!(stdout.contains(&line), "lacks {line:?}:\n{stdout}");
    }
    assert!(
        !history.batches.is_empty() && history.batches.iter().all(|b| b.running_loss > 0.0),
        "batches.jsonl: {:?}",
        history.batches
    );
    history.epochs
}

#[test]
fn train_writes_a_loss_chart_and_report_writes_an_escaped_page() {
    let dir = tempfile::tempdir().expect("temp dir");
    let epochs = train_three(dir.path());
    let out = dir.path().join("run");

    // loss.svg: well-formed, one titled point per epoch carrying its loss.
    let svg = std::fs::read_to_string(out.join("loss.svg")).expect("loss.svg");
    let doc = parse(&svg);
    assert!(doc.root_element().has_tag_name("svg"));
    let titles: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.attribute("data-loss").is_some())
        .map(|n| {
            let title = n
                .children()
                .find(|c| c.has_tag_name("title"))
                .expect("a <title> per point");
            text_of(title)
        })
        .collect();
    let want: Vec<String> = epochs
        .iter()
        .map(|r| format!("epoch {}: loss {}", r.epoch, format_loss(r.loss)))
        .collect();
    assert_eq!(titles, want, "{svg}");
    assert!(svg.contains("running loss"), "no per-batch series:\n{svg}");

    // report.html: well-formed XHTML with the same losses, the run's
    // hyper-parameters and every sample as text (escaped, not markup).
    ok(&["report", "--out", out.to_str().expect("utf-8 path")]);
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    let doc = parse(&html);
    assert!(doc.root_element().has_tag_name("html"));
    assert!(!html.contains("<script"), "the page needs no JS");
    assert!(
        doc.descendants().any(|n| n.has_tag_name("svg")),
        "chart not inlined"
    );

    let table = |class: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("table") && n.attribute("class") == Some(class))
            .unwrap_or_else(|| panic!("no table.{class}"))
    };
    let hyper: Vec<(String, String)> = table("hyper")
        .descendants()
        .filter(|n| n.has_tag_name("tr"))
        .map(|tr| {
            let cells: Vec<String> = tr
                .children()
                .filter(|c| c.is_element())
                .map(text_of)
                .collect();
            (cells[0].clone(), cells[1].clone())
        })
        .collect();
    for (key, value) in [
        ("maxlen", "10"),
        ("step", "3"),
        ("hidden", "16"),
        ("batch_size", "32"),
        ("lr", "0.01"),
        ("epochs", "3"),
        ("seed", "42"),
    ] {
        assert!(
            hyper.contains(&(key.to_string(), value.to_string())),
            "hyper-parameter {key} = {value} missing: {hyper:?}"
        );
    }
    let vocab = hyper
        .iter()
        .find(|(k, _)| k == "vocabulary")
        .expect("vocabulary row");
    assert!(vocab.1.contains('<') && vocab.1.contains('&'), "{vocab:?}");

    let epoch_cells: Vec<Vec<String>> = table("epochs")
        .descendants()
        .filter(|n| n.has_tag_name("tr"))
        .skip(1)
        .map(|tr| {
            tr.children()
                .filter(|c| c.is_element())
                .map(text_of)
                .collect()
        })
        .collect();
    assert_eq!(epoch_cells.len(), 3);
    for (cells, r) in epoch_cells.iter().zip(&epochs) {
        assert_eq!(cells[0], r.epoch.to_string());
        assert_eq!(cells[1], format_loss(r.loss));
        assert_eq!(cells[3], format!("{:.0}", r.samples_per_s), "throughput");
    }

    // Every sample, seed and generated text, reads back exactly.
    let shown: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("pre"))
        .map(text_of)
        .collect();
    let samples: Vec<String> = epochs
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| format!("{}{}", s.seed, s.text)))
        .collect();
    assert_eq!(samples.len(), 3 * 2);
    assert_eq!(shown, samples);
    assert!(
        samples.iter().any(|s| s.contains('<')) && samples.iter().any(|s| s.contains('&')),
        "the samples should exercise escaping: {samples:?}"
    );
    assert!(html.contains("&lt;") && html.contains("&amp;"));

    // -o elsewhere; and a directory without a run is a clear error.
    let other = dir.path().join("elsewhere.html");
    ok(&[
        "report",
        "--out",
        out.to_str().expect("utf-8 path"),
        "-o",
        other.to_str().expect("utf-8 path"),
    ]);
    parse(&std::fs::read_to_string(&other).expect("elsewhere.html"));
    let o = run(&["report", "--out", dir.path().to_str().expect("utf-8 path")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no metrics.jsonl") && err.contains("hint: "),
        "{err}"
    );
}

/// A torn last line (a crash mid-append) is skipped and named, not fatal,
/// and an epoch trained again after a rollback replaces the old one.
#[test]
fn history_skips_torn_lines_and_keeps_the_latest_epochs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = dir.path().join("metrics.jsonl");
    let line = |epoch: usize, loss: f64| {
        format!(
            r#"{{"epoch":{epoch},"epochs":5,"loss":{loss},"seconds":1.0,"samples_per_s":10.0,"batches":2,"step":{epoch},"checkpoint":null,"sample_seconds":0.0,"samples":[]}}"#
        )
    };
    let text = [
        line(1, 2.0),
        line(2, 1.5),
        line(3, 9.0),
        line(2, 1.4),
        line(3, 1.3),
        r#"{"epoch":4,"lo"#.to_string(),
    ]
    .join("\n");
    std::fs::write(&metrics, text).expect("write");
    let h = RunHistory::load(&metrics).expect("load");
    let losses: Vec<(usize, f64)> = h.epochs.iter().map(|r| (r.epoch, r.loss)).collect();
    assert_eq!(losses, [(1, 2.0), (2, 1.4), (3, 1.3)]);
    assert_eq!(h.skipped.len(), 1);
    assert_eq!(h.skipped[0].line, 6);
    let svg = charlstm_cuda::rundir::loss_chart(&h).expect("chart");
    parse(&svg);
    assert!(!svg.contains("9.0000"), "the rolled-back epoch is gone");
}
