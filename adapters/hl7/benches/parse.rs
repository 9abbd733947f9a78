//! HL7 v2 parse throughput on realistic ADT messages: care-hl7 and, in the same run, the
//! `hl7-parser` crate doing the same work on the same messages.
//!
//! Corpus: every ADT message in the shared samples (`microsoft-fhir-converter/ADT*`,
//! `uk-nhs/*`, the python-hl7 FHS/BHS batch): 68 messages, mean ~1.35 KB, median ~0.7 KB,
//! segments joined with `\r` (hl7-parser's strict mode wants `\r`).
//! `scripts/hl7_python_bench.py` builds the same corpus for the PyPI `hl7` package.
//!
//! "Parse" = parse, then read what a mapping reads: MSH-9.1/9.2, MSH-10, every PID-3
//! repetition's components 1, 4 and 5, PID-5.1/5.2, PID-7, PID-8, PID-11.1/11.3/11.5 and
//! PID-29, each unescaped — so a lazy parser is not flattered. Both parsers must produce
//! the same checksum over what they read, or the bench refuses to run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::borrow::Cow;
use std::hint::black_box;

use std::time::Duration;

use care_hl7::{Message, decode, split_messages};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The ADT messages of the shared samples, each normalised to `\r` segment ends.
fn corpus() -> Vec<String> {
    let root = care_contract::shared_data().join("hl7v2");
    assert!(root.is_dir(), "sample data missing at {}", root.display());
    let mut files: Vec<_> = Vec::new();
    for dir in ["microsoft-fhir-converter", "uk-nhs"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if dir == "uk-nhs" || name.starts_with("ADT") {
                files.push(path);
            }
        }
    }
    files.push(root.join("python-hl7/sample_file1_FHS_BHS_batch.hl7"));
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let text = decode(&bytes).unwrap();
        for raw in split_messages(&text).unwrap().messages() {
            let msg = Message::parse(raw).unwrap();
            if msg.message_type().0 == "ADT" {
                let segments: Vec<_> = msg.segments().map(|s| s.raw()).collect();
                out.push(segments.join("\r"));
            }
        }
    }
    out
}

fn read_care_hl7(text: &str) -> usize {
    let Ok(msg) = Message::parse(text) else {
        return 0;
    };
    let (code, event) = msg.message_type();
    let mut n = code.len() + event.len() + msg.control_id().len();
    if let Some(pid) = msg.segment("PID") {
        for rep in pid.field(3).repetitions() {
            n += rep.component(1).value().len()
                + rep.component(4).value().len()
                + rep.component(5).value().len();
        }
        let name = pid.field(5);
        n += name.component(1).value().len() + name.component(2).value().len();
        n += pid.field(7).value().len() + pid.field(8).value().len();
        let address = pid.field(11);
        n += address.component(1).value().len()
            + address.component(3).value().len()
            + address.component(5).value().len();
        n += pid.field(29).value().len();
    }
    n
}

fn read_hl7_parser(text: &str) -> usize {
    use hl7_parser::message::{Component, Field, Separators};
    let Ok(msg) = hl7_parser::Message::parse(text) else {
        return 0;
    };
    let seps = &msg.separators;
    // Unescape only when there is an escape character, as care-hl7's Cow does.
    fn value<'m>(seps: &Separators, raw: &'m str) -> Cow<'m, str> {
        if raw.contains(seps.escape) {
            Cow::Owned(seps.decode(raw).to_string())
        } else {
            Cow::Borrowed(raw)
        }
    }
    fn leaf<'m>(seps: &Separators, component: Option<&Component<'m>>) -> usize {
        component
            .and_then(|c| c.subcomponent(1))
            .map_or(0, |s| value(seps, s.raw_value()).len())
    }
    fn field_component(seps: &Separators, field: Option<&Field<'_>>, n: usize) -> usize {
        leaf(seps, field.and_then(|f| f.component(n)))
    }
    let mut n = 0;
    if let Some(msh) = msg.segment("MSH") {
        n += field_component(seps, msh.field(9), 1) + field_component(seps, msh.field(9), 2);
        n += field_component(seps, msh.field(10), 1);
    }
    if let Some(pid) = msg.segment("PID") {
        if let Some(ids) = pid.field(3) {
            for rep in ids.repeats() {
                n += leaf(seps, rep.component(1))
                    + leaf(seps, rep.component(4))
                    + leaf(seps, rep.component(5));
            }
        }
        n += field_component(seps, pid.field(5), 1) + field_component(seps, pid.field(5), 2);
        n += field_component(seps, pid.field(7), 1) + field_component(seps, pid.field(8), 1);
        n += field_component(seps, pid.field(11), 1)
            + field_component(seps, pid.field(11), 3)
            + field_component(seps, pid.field(11), 5);
        n += field_component(seps, pid.field(29), 1);
    }
    n
}

fn parse(c: &mut Criterion) {
    let corpus = corpus();
    let bytes: usize = corpus.iter().map(String::len).sum();
    let ours: usize = corpus.iter().map(|m| read_care_hl7(m)).sum();
    let theirs: usize = corpus.iter().map(|m| read_hl7_parser(m)).sum();
    println!(
        "corpus: {} ADT messages, {bytes} bytes (mean {} bytes); checksum care-hl7 {ours}, hl7-parser {theirs}",
        corpus.len(),
        bytes / corpus.len()
    );
    assert!(ours > 0);
    assert_eq!(ours, theirs, "the two parsers must read the same values");

    for (group_name, throughput) in [
        (
            "hl7_parse_messages",
            Throughput::Elements(corpus.len() as u64),
        ),
        ("hl7_parse_bytes", Throughput::Bytes(bytes as u64)),
    ] {
        let mut group = c.benchmark_group(group_name);
        group.throughput(throughput);
        group.measurement_time(Duration::from_secs(5));
        group.bench_function("care_hl7", |b| {
            b.iter(|| {
                corpus
                    .iter()
                    .map(|m| read_care_hl7(black_box(m)))
                    .sum::<usize>()
            });
        });
        group.bench_function("hl7_parser_0_3", |b| {
            b.iter(|| {
                corpus
                    .iter()
                    .map(|m| read_hl7_parser(black_box(m)))
                    .sum::<usize>()
            });
        });
        group.finish();
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
