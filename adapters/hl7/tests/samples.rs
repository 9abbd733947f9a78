//! Every file under `shared/data/hl7v2` (see `shared/data/MANIFEST.tsv`), read the way a
//! feed would read it: bytes → `decode` → `split_messages` → `Message::parse` each. The
//! expected outcome of each file is written down by name, so any change in what the parser
//! accepts or refuses fails here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use care_hl7::{BatchWarning, Delimiters, Hl7Error, Message, decode, escape, split_messages};

fn data_dir() -> PathBuf {
    let dir = care_contract::shared_data().join("hl7v2");
    assert!(
        dir.is_dir(),
        "HL7 v2 sample data not found at {} (expected shared/data/hl7v2 beside the main checkout)",
        dir.display()
    );
    dir
}

fn read(relative: &str) -> Vec<u8> {
    let path = data_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// What reading a file gives, in one line: message types (or error kinds) with counts,
/// then the batch warnings.
fn outcome(bytes: &[u8]) -> String {
    let text = match decode(bytes) {
        Ok(text) => text,
        Err(e) => return format!("decode:{}", e.code()),
    };
    let batch = match split_messages(&text) {
        Ok(batch) => batch,
        Err(e) => return format!("split:{}", e.code()),
    };
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for parsed in batch.parse_messages() {
        let kind = match parsed {
            Ok(msg) => {
                let (code, trigger) = msg.message_type();
                format!("{code}^{trigger}")
            }
            Err(e) => format!("!{}", e.code()),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let mut line = format!("{} messages:", batch.messages().len());
    for (kind, count) in kinds {
        line.push_str(&format!(" {kind} x{count}"));
    }
    for warning in batch.warnings() {
        line.push_str(&format!("; {warning}"));
    }
    line
}

/// The outcome for each file, by its path under `hl7v2/`.
const EXPECTED: &[(&str, &str)] = &[
    // Comments (`/* */`, `//`) around messages. Those before the first MSH are skipped
    // with a warning; a comment after a message is taken as part of it (a message runs to
    // the next MSH) and makes it fail with "segment N: no segment id" rather than being
    // silently dropped — ten messages. The one with MSH-2 `^~}` (three encoding
    // characters) is refused. Seven parse.
    (
        "hapi-nhapi/hapi-messages.txt",
        "18 messages: !encoding_characters_invalid x1 !invalid_segment_id x10 BAR^P01 x3 ORM^O01 x3 QRY^Q01 x1; \
         3 line(s) outside any message skipped, from line 1",
    ),
    (
        "hapi-nhapi/segmentfinder_a24_custom_delimiters.hl7",
        "1 messages: ADT^A24 x1",
    ),
    (
        "microsoft-fhir-converter/ADT-A01-01.hl7",
        "1 messages: ADT^A01 x1",
    ),
    (
        "microsoft-fhir-converter/ADT-A03-01.hl7",
        "1 messages: ADT^A03 x1",
    ),
    (
        "microsoft-fhir-converter/ADT-A04-01.hl7",
        "1 messages: ADT^A04 x1",
    ),
    (
        "microsoft-fhir-converter/ADT-A08-01.hl7",
        "1 messages: ADT^A08 x1",
    ),
    (
        "microsoft-fhir-converter/ADT-A28-01.hl7",
        "1 messages: ADT^A28 x1",
    ),
    (
        "microsoft-fhir-converter/ADT-A31-01.hl7",
        "1 messages: ADT^A31 x1",
    ),
    (
        "microsoft-fhir-converter/ADT-A40-01.hl7",
        "1 messages: ADT^A40 x1",
    ),
    (
        "microsoft-fhir-converter/ADT-A40-02.hl7",
        "1 messages: ADT^A40 x1",
    ),
    (
        "microsoft-fhir-converter/ADT04-251.hl7",
        "1 messages: ADT^A04 x1",
    ),
    (
        "microsoft-fhir-converter/ORU-R01-01.hl7",
        "1 messages: ORU^R01 x1",
    ),
    (
        "microsoft-fhir-converter/REF-I12-01.hl7",
        "1 messages: REF^I12 x1",
    ),
    (
        "microsoft-fhir-converter/REF-I14-01.hl7",
        "1 messages: REF^I14 x1",
    ),
    // Fuzzer-found inputs: refused quickly. MSH-2 is `^` (hang1), `0000` (so) or `0~00`
    // (so5). The fourth (nHapi accepts it) has NUL and control bytes where segment ids
    // should be: refused as "segment 3: no segment id".
    (
        "nhapi-bad-inputs/LegacyPipeParser_HL7Exception_hang1.bin",
        "1 messages: !encoding_characters_invalid x1",
    ),
    (
        "nhapi-bad-inputs/PipeParser_HL7Exception_so.bin",
        "1 messages: !encoding_characters_invalid x1",
    ),
    (
        "nhapi-bad-inputs/PipeParser_HL7Exception_so5.bin",
        "1 messages: !encoding_characters_invalid x1",
    ),
    (
        "nhapi-bad-inputs/PipeParser_NoException_id_000146_sig_02_src_000682_002159_op_splice_rep_4.bin",
        "1 messages: !invalid_segment_id x1",
    ),
    // Not HL7: the escape vectors, tested below.
    ("python-hl7/escape_vectors.json", "split:no_message"),
    ("python-hl7/rep_sample_hl7.hl7", "1 messages: ORU^R01 x1"),
    (
        "python-hl7/sample_file1_FHS_BHS_batch.hl7",
        "3 messages: ADT^A04 x3",
    ),
    (
        "uk-nhs/il-hans_ADT_A01_invalid_nhs_number.hl7",
        "1 messages: ADT^A01 x1",
    ),
    (
        "uk-nhs/il-hans_ADT_A01_simhosp_nhsnbr.hl7",
        "1 messages: ADT^A01 x1",
    ),
    (
        "uk-nhs/il-hans_ADT_A03_pkb_nhs_nh.hl7",
        "1 messages: ADT^A03 x1",
    ),
    // Messages separated by a blank line.
    (
        "uk-nhs/simhospital-messages-excerpt.hl7",
        "121 messages: ADT^A01 x52 ADT^A34 x1 ORU^R01 x68",
    ),
];

/// Runs `outcome` on another thread and fails if it panics or takes more than 5 s.
fn outcome_within_time_limit(name: &str, bytes: Vec<u8>) -> String {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(outcome(&bytes));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(result) => {
            worker.join().unwrap();
            result
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name}: the parser panicked"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: the parser hung (over 5 s)"),
    }
}

#[test]
fn every_sample_file_has_its_expected_outcome() {
    let root = data_dir();
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut failures = Vec::new();
    let mut seen = 0;
    for path in &all {
        let name = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let got = outcome_within_time_limit(&name, std::fs::read(path).unwrap());
        match EXPECTED.iter().find(|(file, _)| *file == name) {
            Some((_, expected)) => {
                seen += 1;
                if got != *expected {
                    failures.push(format!("{name}\n  expected: {expected}\n  got:      {got}"));
                }
            }
            None => failures.push(format!(
                "{name}: a sample file with no expected outcome; add it to EXPECTED (got: {got})"
            )),
        }
    }
    assert_eq!(seen, EXPECTED.len(), "files listed in EXPECTED are missing");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn custom_delimiters_file_is_read_with_its_own_separators() {
    let bytes = read("hapi-nhapi/segmentfinder_a24_custom_delimiters.hl7");
    let text = decode(&bytes).unwrap();
    assert!(text.contains("\r\n"), "the fixture uses CRLF");
    let msg = Message::parse(&text).unwrap();
    let d = msg.delimiters();
    assert_eq!((d.field, d.component, d.repetition), ('^', '~', '|'));
    assert_eq!(msg.message_type(), ("ADT".into(), "A24".into()));
    assert_eq!(msg.control_id(), "2003582144");
    assert_eq!(msg.version(), "2.4");
    let pids: Vec<_> = msg.segments_named("PID").collect();
    assert_eq!(pids.len(), 2);
    assert_eq!(pids[1].field(3).component(1).value(), "22222");
    assert_eq!(
        pids[0].field(3).component(4).subcomponent(3).value(),
        "0363"
    );
    assert_eq!(
        pids[0].field(3).component(6).subcomponent(2).value(),
        "200M"
    );
    assert_eq!(pids[0].field(5).component(3).value(), "TEST");
}

#[test]
fn bom_file_parses_and_reads_like_any_other() {
    let bytes = read("microsoft-fhir-converter/ADT04-251.hl7");
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBF"),
        "the fixture starts with a BOM"
    );
    let text = decode(&bytes).unwrap();
    assert!(text.starts_with("MSH|"));
    // Message::parse also takes the BOM itself, for callers holding a String already.
    let raw = String::from_utf8(bytes).unwrap();
    let msg = Message::parse(&raw).unwrap();
    assert!(msg.raw().starts_with("MSH|"));
    assert_eq!(msg.version(), "2.3");
    let pid = msg.segment("PID").unwrap();
    assert_eq!(pid.field(3).component(1).value(), "MRN12345");
    assert_eq!(pid.field(5).component(1).value(), "Doe");
    assert_eq!(pid.field(7).value(), "19780101");
    let nk1 = msg.segment("NK1").unwrap();
    let phones: Vec<_> = nk1.field(5).repetitions().map(|r| r.value()).collect();
    assert_eq!(phones, ["(130) 724-0433", "(330) 274-8214"]);
}

#[test]
fn fhs_bhs_batch_file_gives_its_three_messages_and_headers() {
    let bytes = read("python-hl7/sample_file1_FHS_BHS_batch.hl7");
    let text = decode(&bytes).unwrap();
    let batch = split_messages(&text).unwrap();
    assert!(batch.is_batch());
    assert!(batch.warnings().is_empty(), "{:?}", batch.warnings());
    assert_eq!(
        batch.file_header().unwrap().field(10).value(),
        "abchs20070101123401.hl7"
    );
    assert_eq!(batch.batch_headers().len(), 2);
    assert_eq!(
        batch.batch_headers()[1].field(11).value(),
        "abchs20070101123401-2"
    );
    let counts: Vec<_> = batch
        .batch_trailers()
        .iter()
        .map(|t| t.field(1).value())
        .collect();
    assert_eq!(counts, ["2", "1"]);
    assert_eq!(batch.file_trailer().unwrap().field(1).value(), "2");
    let ids: Vec<_> = batch
        .parse_messages()
        .map(|m| m.unwrap().control_id().into_owned())
        .collect();
    assert_eq!(ids, ["12334456778890", "12334456778891", "12334456778890"]);
    for msg in batch.messages() {
        assert!(msg.starts_with("MSH|") && msg.ends_with("PV1|1|O||||^^^^^1"));
    }

    // The same file with its first BTS count wrong: reported, messages still all there.
    let tampered = text.replace("BTS|2", "BTS|3");
    let batch = split_messages(&tampered).unwrap();
    assert_eq!(batch.messages().len(), 3);
    assert_eq!(
        batch.warnings(),
        [BatchWarning::CountMismatch {
            trailer: "BTS",
            number: 1,
            stated: 3,
            found: 2
        }]
    );
    assert_eq!(
        batch.warnings()[0].to_string(),
        "batch trailer BTS says 3 messages, found 2 (batch 1)"
    );
}

#[test]
fn rep_sample_has_components_subcomponents_and_repetitions() {
    let bytes = read("python-hl7/rep_sample_hl7.hl7");
    let text = decode(&bytes).unwrap();
    let msg = Message::parse(&text).unwrap();
    let pid = msg.segment("PID").unwrap();
    assert_eq!(pid.field(1).value(), "Field1");
    assert_eq!(pid.field(2).component(2).value(), "Component2");
    assert_eq!(
        pid.field(3).component(2).subcomponent(2).value(),
        "Sub-Component2"
    );
    assert_eq!(pid.field(3).component(3).value(), "Component3");
    let reps: Vec<_> = pid.field(4).repetitions().map(|r| r.value()).collect();
    assert_eq!(reps, ["Repeat1", "Repeat2"]);
}

#[test]
fn uk_messages_carry_nhs_numbers_in_pid3_repetitions() {
    let bytes = read("uk-nhs/il-hans_ADT_A01_simhosp_nhsnbr.hl7");
    let text = decode(&bytes).unwrap();
    let msg = Message::parse(&text).unwrap();
    let pid = msg.segment("PID").unwrap();
    let nhs = pid
        .field(3)
        .repetitions()
        .find(|r| r.component(4).value() == "NHSNBR")
        .unwrap();
    assert_eq!(nhs.value(), "2478684691");
    assert_eq!(nhs.component(5).value(), "NHSNMBR");
    assert_eq!(pid.field(11).component(5).value(), "RW21 6KC");
}

#[test]
fn hapi_three_character_encoding_is_refused_with_a_clear_message() {
    let bytes = read("hapi-nhapi/hapi-messages.txt");
    let text = decode(&bytes).unwrap();
    let batch = split_messages(&text).unwrap();
    let bad = batch
        .messages()
        .iter()
        .find(|m| m.starts_with("MSH|^~}|"))
        .unwrap();
    assert_eq!(
        Message::parse(bad).unwrap_err().to_string(),
        "MSH-2 encoding characters invalid: fewer than four (component, repetition, escape, subcomponent)"
    );
    // The comment after a message is reported where it is.
    let commented = batch
        .messages()
        .iter()
        .find(|m| m.contains("1994050216163360|D|2.2"))
        .unwrap();
    assert_eq!(
        Message::parse(commented).unwrap_err(),
        Hl7Error::InvalidSegmentId { index: 8 }
    );
}

/// python-hl7's escape vectors, read as they are. Where our documented rule differs from
/// python-hl7's (formatting escapes kept; non-ASCII written as itself), the test says so.
#[test]
fn python_hl7_escape_vectors() {
    let bytes = read("python-hl7/escape_vectors.json");
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let d = Delimiters::default();
    // A one-field message so that unescaping goes through the public API.
    let unescape = |raw: &str| -> String {
        let text = format!("MSH|^~\\&\rNTE|{raw}");
        let msg = Message::parse(&text).unwrap();
        msg.segment("NTE").unwrap().field(1).text().into_owned()
    };
    let pairs = |key: &str| -> Vec<(String, String)> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v[0].as_str().unwrap().to_owned(),
                    v[1].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let unescapes = pairs("unescape");
    assert_eq!(unescapes.len(), 8);
    for (input, python) in &unescapes {
        let ours = unescape(input);
        if input.contains("\\H\\") {
            // python-hl7 renders highlighting as '_'; we keep formatting escapes as written.
            assert_eq!(python, "_text_");
            assert_eq!(ours, "\\H\\text\\N\\");
        } else {
            assert_eq!(&ours, python, "unescape {input:?}");
        }
    }
    let escapes = pairs("escape");
    assert_eq!(escapes.len(), 8);
    for (input, python) in &escapes {
        let ours = escape(input, &d);
        if input.is_ascii() {
            assert_eq!(&ours, python, "escape {input:?}");
        } else {
            // python-hl7 writes non-ASCII as Latin-1 \Xhh\; a UTF-8 message carries it as is.
            assert_eq!(ours, input.as_str());
            // ...and what python-hl7 wrote still reads back to the same text.
            assert_eq!(&unescape(python), input);
        }
    }
}
