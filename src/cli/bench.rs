//! `bench`: the backend comparison of `charlstm_cuda::bench` as JSON on
//! stdout (what scripts read) and as a table on stderr (what people read).

use std::process::ExitCode;

use charlstm_cuda::bench::{self, BenchConfig};
use charlstm_cuda::model::Hyper;
use charlstm_cuda::{Backend, Device};
use charlstm_cuda::{Error, Result};

use super::args::BenchArgs;

pub fn bench(a: BenchArgs) -> Result<ExitCode> {
    let hyper = Hyper {
        batch: a.batch_size,
        hidden: a.hidden,
        layers: a.layers,
        dropout: a.dropout,
        maxlen: a.maxlen,
        ..Hyper::default()
    };
    hyper.validate()?;
    let corpus = super::train::load_corpus(a.corpus.as_deref(), hyper.lowercase)?;
    let mut backends = Vec::new();
    for name in &a.device {
        match name.parse::<Device>()? {
            Device::Exact(b) => backends.push(b),
            Device::Auto => {
                return Err(Error::InvalidArgument {
                    name: "--device",
                    what: "auto (bench compares named backends: cpu, cuda, sim)".into(),
                });
            }
        }
    }
    if let Some(note) = super::train::idle_dropout(&hyper) {
        eprintln!("note: {note}");
    }
    if backends.contains(&Backend::Sim) {
        eprintln!(
            "note: the simulator interprets every thread; at the notebook's shapes a step takes minutes"
        );
    }
    let config = BenchConfig {
        steps: a.steps,
        slice_batches: a.slice_batches,
        gen_length: a.gen_length,
        temperatures: a.temperatures.clone(),
        full_epoch: a.full_epoch,
        recurrence: a.recurrence.parse()?,
    };
    // Read before the (long) measurement, so that a bad file fails at once;
    // whether it ran the same job needs the report, so that check runs after.
    let pytorch = match &a.pytorch {
        Some(file) => Some((bench::pytorch::read(file)?, file)),
        None => None,
    };
    let mut report = bench::run(&corpus, &hyper, &config, &backends)?;
    if let Some((numbers, file)) = pytorch {
        let reference = bench::pytorch::check(numbers, file, &report)?;
        report.add_pytorch(reference, file);
    }
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::InvalidArgument {
        name: "bench",
        what: format!("report does not serialise: {e}"),
    })?;
    println!("{json}");
    eprint!("{report}");
    Ok(ExitCode::SUCCESS)
}
