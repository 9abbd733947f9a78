//! Behaviour of the parser, one rule per test, plus properties over arbitrary input.
//! The shared sample files are exercised in `tests/samples.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;

use proptest::prelude::*;

use crate::*;

const ADT: &str = "MSH|^~\\&|HIS|RBH|CARE|LA|20240101120000||ADT^A01^ADT_A01|MSG42|P|2.5\r\
EVN|A01|20240101120000\r\
PID|1||1234^^^RBH^MR~9434765919^^^NHS^NH||SMITH^JOHN^^^MR||19800101|M|||1 HIGH ST^^LEEDS^^LS1 1AA||||||||||||||||||Y\r\
PV1|1|I";

#[test]
fn header_fields_follow_the_standard_numbering() {
    let msg = Message::parse(ADT).unwrap();
    let msh = msg.header();
    assert_eq!(msh.id(), "MSH");
    assert_eq!(msh.field(0).raw(), "MSH");
    assert_eq!(msh.field(1).raw(), "|");
    assert_eq!(msh.field(2).raw(), "^~\\&");
    // MSH-2 is read literally: not split on ^ or ~, not unescaped.
    assert_eq!(msh.field(2).value(), "^~\\&");
    assert_eq!(msh.field(2).repetitions().count(), 1);
    assert_eq!(msh.field(3).value(), "HIS");
    assert_eq!(msh.field(7).value(), "20240101120000");
    assert_eq!(msh.field(12).value(), "2.5");
    assert_eq!(msh.field_count(), 12);
    assert_eq!(msg.message_type(), ("ADT".into(), "A01".into()));
    assert_eq!(msg.control_id(), "MSG42");
    assert_eq!(msg.version(), "2.5");
    let fields: Vec<_> = msh.fields().map(|f| f.raw()).collect();
    assert_eq!(fields.len(), 12);
    assert_eq!(&fields[..4], ["|", "^~\\&", "HIS", "RBH"]);
}

#[test]
fn other_segments_number_fields_from_one_after_the_id() {
    let msg = Message::parse(ADT).unwrap();
    let pid = msg.segment("PID").unwrap();
    assert_eq!(pid.field(1).value(), "1");
    assert_eq!(pid.field(7).value(), "19800101");
    assert_eq!(pid.field(8).value(), "M");
    assert_eq!(pid.field(29).value(), "Y");
    assert_eq!(pid.field_count(), 29);
    assert_eq!(pid.fields().count(), 29);
    assert_eq!(pid.fields().nth(6).unwrap().raw(), "19800101");
    assert_eq!(msg.segment_count(), 4);
    let ids: Vec<_> = msg.segments().map(|s| s.id()).collect();
    assert_eq!(ids, ["MSH", "EVN", "PID", "PV1"]);
}

#[test]
fn absent_parts_read_as_empty() {
    let msg = Message::parse(ADT).unwrap();
    let pid = msg.segment("PID").unwrap();
    assert!(pid.field(2).is_empty());
    assert!(pid.field(99).is_empty());
    assert_eq!(pid.field(99).value(), "");
    assert_eq!(pid.field(5).component(9).value(), "");
    assert_eq!(pid.field(5).component(0).value(), "");
    assert_eq!(
        pid.field(3)
            .repetition(7)
            .component(1)
            .subcomponent(3)
            .value(),
        ""
    );
    assert_eq!(pid.field(2).repetitions().count(), 0);
    assert!(msg.segment("ZZZ").is_none());
    assert!(msg.segment("PI").is_none());
}

#[test]
fn repetitions_components_and_subcomponents() {
    let msg = Message::parse(
        "MSH|^~\\&|A\rPID|Field1|Component1^Component2|Component1^Sub-Component1&Sub-Component2^Component3|Repeat1~Repeat2||~~",
    )
    .unwrap();
    let pid = msg.segment("PID").unwrap();
    assert_eq!(pid.field(2).component(2).value(), "Component2");
    let f3 = pid.field(3);
    assert_eq!(f3.component(2).subcomponent(1).value(), "Sub-Component1");
    assert_eq!(f3.component(2).subcomponent(2).value(), "Sub-Component2");
    assert_eq!(f3.component(2).value(), "Sub-Component1");
    assert_eq!(f3.component(2).text(), "Sub-Component1&Sub-Component2");
    assert_eq!(f3.component(2).subcomponents().count(), 2);
    assert_eq!(f3.repetition(0).components().count(), 3);
    let reps: Vec<_> = pid.field(4).repetitions().map(|r| r.value()).collect();
    assert_eq!(reps, ["Repeat1", "Repeat2"]);
    assert_eq!(pid.field(4).repetition(1).value(), "Repeat2");
    assert_eq!(pid.field(4).text(), "Repeat1");
    assert_eq!(pid.field(6).repetitions().count(), 3);
    assert!(pid.field(6).repetitions().all(|r| r.is_empty()));
}

#[test]
fn explicit_null_is_not_empty_and_reads_as_empty_text() {
    let msg = Message::parse("MSH|^~\\&|A\rPID|\"\"|a^\"\"^b").unwrap();
    let pid = msg.segment("PID").unwrap();
    assert!(pid.field(1).is_null());
    assert!(!pid.field(1).is_empty());
    assert_eq!(pid.field(1).value(), "");
    assert!(pid.field(2).component(2).is_null());
    assert_eq!(pid.field(2).component(2).value(), "");
    assert!(!pid.field(2).is_null());
}

#[test]
fn escapes_unescape_in_values_and_are_borrowed_when_absent() {
    let msg = Message::parse(
        "MSH|^~\\&|A\rNTE|1|L|a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X41C3A1\\ \\Xe9\\\\.br\\\\H\\x\\N\\",
    )
    .unwrap();
    let nte = msg.segment("NTE").unwrap();
    assert_eq!(nte.field(3).value(), "a|b^c&d~e\\fAá é\n\\H\\x\\N\\");
    assert!(matches!(nte.field(2).value(), Cow::Borrowed("L")));
}

#[test]
fn an_unterminated_escape_is_kept_and_does_not_fail_the_message() {
    let msg = Message::parse("MSH|^~\\&|A\rNTE|1||ends in \\F").unwrap();
    assert_eq!(msg.segment("NTE").unwrap().field(3).value(), "ends in \\F");
}

#[test]
fn custom_delimiters_are_read_from_msh() {
    // As nHapi's segmentfinder_a24: field '^', component '~', repetition '|'.
    let msg = Message::parse(
        "MSH^~|\\&^SENDING^200M^RECEIVING^200^20120918173931-0500^^ADT~A24^2003582144^T^2.4^^^AL^AL^^\r\n\
         PID^1^^11111~~~FOO&&0363~NI~FACILITY ID&200M&L^^SMITH~JOHN~TEST^\r\n",
    )
    .unwrap();
    let d = msg.delimiters();
    assert_eq!(
        (d.field, d.component, d.repetition, d.escape, d.subcomponent),
        ('^', '~', '|', Some('\\'), '&')
    );
    assert_eq!(msg.message_type(), ("ADT".into(), "A24".into()));
    assert_eq!(msg.control_id(), "2003582144");
    let pid = msg.segment("PID").unwrap();
    assert_eq!(pid.field(3).component(4).subcomponent(3).value(), "0363");
    assert_eq!(pid.field(5).component(2).value(), "JOHN");
}

#[test]
fn the_v27_truncation_character_is_read() {
    let msg = Message::parse("MSH|^~\\&#|A|B|C|D|2024||ADT^A01|1|P|2.7\rNTE|1||x\\P\\").unwrap();
    assert_eq!(msg.delimiters().truncation, Some('#'));
    assert_eq!(msg.header().field(2).raw(), "^~\\&#");
    assert_eq!(msg.segment("NTE").unwrap().field(3).value(), "x#");
}

#[test]
fn cr_lf_and_crlf_all_end_segments_and_blank_lines_are_skipped() {
    for end in ["\r", "\n", "\r\n", "\r\n\r\n", "\n \n"] {
        let text = format!("MSH|^~\\&|A{end}EVN|A01{end}PID|1{end}");
        let msg = Message::parse(&text).unwrap();
        let ids: Vec<_> = msg.segments().map(|s| s.id()).collect();
        assert_eq!(ids, ["MSH", "EVN", "PID"], "segment end {end:?}");
        assert!(msg.raw().ends_with("PID|1"));
    }
}

#[test]
fn a_leading_bom_and_blank_lines_are_skipped() {
    let msg = Message::parse("\u{FEFF}\r\nMSH|^~\\&|A\rPID|1").unwrap();
    assert!(msg.raw().starts_with("MSH|"));
}

#[test]
fn errors_name_what_and_where() {
    let cases: [(&str, Hl7Error, &str); 10] = [
        ("", Hl7Error::Empty, "input is empty"),
        ("\r\n \r", Hl7Error::Empty, "input is empty"),
        ("PID|1", Hl7Error::NotMsh, "input does not start with MSH"),
        (
            "MSH",
            Hl7Error::FieldSeparatorMissing { header: "MSH" },
            "MSH-1 field separator missing",
        ),
        (
            "MSHA^~\\&",
            Hl7Error::FieldSeparatorInvalid { header: "MSH" },
            "MSH-1 field separator invalid: it must be printable ASCII punctuation (like '|')",
        ),
        (
            "MSH||A",
            Hl7Error::EncodingCharactersMissing { header: "MSH" },
            "MSH-2 encoding characters missing",
        ),
        (
            "MSH|^~}|A",
            Hl7Error::EncodingCharactersInvalid {
                header: "MSH",
                reason: "fewer than four (component, repetition, escape, subcomponent)",
            },
            "MSH-2 encoding characters invalid: fewer than four (component, repetition, escape, subcomponent)",
        ),
        (
            "MSH|^~|&|A",
            Hl7Error::EncodingCharactersInvalid {
                header: "MSH",
                reason: "fewer than four (component, repetition, escape, subcomponent)",
            },
            "MSH-2 encoding characters invalid: fewer than four (component, repetition, escape, subcomponent)",
        ),
        (
            "MSH|^~\\&\rEVN|A01\r// a comment",
            Hl7Error::InvalidSegmentId { index: 3 },
            "segment 3: no segment id (expected three capital letters or digits, then the field separator)",
        ),
        (
            "MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B",
            Hl7Error::UnexpectedSegment {
                index: 3,
                id: "MSH",
            },
            "segment 3 (MSH): MSH cannot appear inside a message; split the input with split_messages",
        ),
    ];
    for (input, error, text) in cases {
        let got = Message::parse(input).unwrap_err();
        assert_eq!(got, error, "{input:?}");
        assert_eq!(got.to_string(), text);
    }
}

#[test]
fn repeated_or_alphanumeric_encoding_characters_are_refused() {
    for input in [
        "MSH|0000|",
        "MSH|^^\\&|",
        "MSH|^~\\||",
        "MSH|^~\\A|",
        "MSH|^~\\&##|",
    ] {
        let error = Message::parse(input).unwrap_err();
        assert_eq!(error.code(), "encoding_characters_invalid", "{input:?}");
    }
}

#[test]
fn segment_ids_must_be_capitals_or_digits_followed_by_the_separator() {
    assert!(Message::parse("MSH|^~\\&\rZP1|x\rOBX").is_ok());
    for bad in ["pid|1", "PI|1", "PIDX|1", "1AB|x", "\u{0}\u{10}|x", "PÏD|1"] {
        let input = format!("MSH|^~\\&\r{bad}");
        assert_eq!(
            Message::parse(&input).unwrap_err(),
            Hl7Error::InvalidSegmentId { index: 2 },
            "{bad:?}"
        );
    }
}

#[test]
fn parse_header_reads_a_message_whose_body_is_broken() {
    let input = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|CTRL9|P|2.5\rthis is not a segment";
    assert!(Message::parse(input).is_err());
    let header = Message::parse_header(input).unwrap();
    assert_eq!(header.control_id(), "CTRL9");
    assert_eq!(header.segment_count(), 1);
    assert_eq!(best_effort_control_id(input), Some("CTRL9"));
    assert_eq!(
        best_effort_control_id("MSH|^^|x|x|x|x|x|x|x|ID7"),
        Some("ID7")
    );
    assert_eq!(best_effort_control_id("PID|1"), None);
    assert_eq!(best_effort_control_id("MSH|^~\\&|A"), None);
}

#[test]
fn ack_swaps_sender_and_receiver_and_uses_the_message_delimiters() {
    let msg = Message::parse(ADT).unwrap();
    let ack_text = ack(&msg, AckCode::AA, None, "ACK1", "20240101120001");
    assert_eq!(
        ack_text,
        "MSH|^~\\&|CARE|LA|HIS|RBH|20240101120001||ACK^A01^ACK|ACK1|P|2.5\rMSA|AA|MSG42\r"
    );
    let reply = Message::parse(&ack_text).unwrap();
    assert_eq!(reply.message_type(), ("ACK".into(), "A01".into()));

    let error = ack(
        &msg,
        AckCode::AE,
        Some("PID-3 has no NHS number | ^"),
        "ACK2",
        "20240101120002",
    );
    let reply = Message::parse(&error).unwrap();
    let msa = reply.segment("MSA").unwrap();
    assert_eq!(msa.field(1).value(), "AE");
    assert_eq!(msa.field(2).value(), "MSG42");
    assert_eq!(msa.field(3).text(), "PID-3 has no NHS number | ^");
    let err = reply.segment("ERR").unwrap();
    assert_eq!(err.field(3).component(1).value(), "207");
    assert_eq!(err.field(4).value(), "E");
    assert_eq!(err.field(8).text(), "PID-3 has no NHS number | ^");
    assert!(error.ends_with('\r'));
}

#[test]
fn ack_follows_custom_delimiters_and_old_versions() {
    let msg = Message::parse("MSH^~|\\&^SEND^SF^RECV^RF^2012^^ADT~A24^C1^T^2.3").unwrap();
    let text = ack(&msg, AckCode::AR, Some("bad^thing"), "A9", "20240101");
    assert_eq!(
        text,
        "MSH^~|\\&^RECV^RF^SEND^SF^20240101^^ACK~A24^A9^T^2.3\rMSA^AR^C1^bad\\F\\thing\rERR^~~~207&Application internal error&HL70357\r"
    );
}

#[test]
fn ack_unreadable_answers_even_garbage() {
    let text = ack_unreadable(
        "MSH|0000|||||||x|CTL5|",
        AckCode::AR,
        Some("MSH-2 invalid"),
        "A1",
        "2024",
    );
    let reply = Message::parse(&text).unwrap();
    assert_eq!(reply.segment("MSA").unwrap().field(2).value(), "CTL5");
    assert_eq!(reply.segment("MSA").unwrap().field(1).value(), "AR");
    let text = ack_unreadable("\u{0}", AckCode::AR, None, "A1", "2024");
    assert!(Message::parse(&text).is_ok());
}

#[test]
fn split_reads_messages_one_after_another_with_blank_lines_between() {
    let input =
        "MSH|^~\\&|A||||||ADT^A01|1|P|2.5\rPID|1\r\n\nMSH|^~\\&|A||||||ADT^A03|2|P|2.5\rPID|2\r";
    let batch = split_messages(input).unwrap();
    assert_eq!(batch.messages().len(), 2);
    assert!(!batch.is_batch());
    assert!(batch.warnings().is_empty());
    assert_eq!(
        batch.messages()[1],
        "MSH|^~\\&|A||||||ADT^A03|2|P|2.5\rPID|2"
    );
    let types: Vec<_> = batch
        .parse_messages()
        .map(|m| m.unwrap().message_type().1.into_owned())
        .collect();
    assert_eq!(types, ["A01", "A03"]);
}

#[test]
fn split_checks_batch_trailer_counts_without_dropping_messages() {
    let input = "FHS|^~\\&|X\rBHS|^~\\&|X\rMSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\rBTS|3\rFTS|2";
    let batch = split_messages(input).unwrap();
    assert_eq!(batch.messages().len(), 2);
    assert!(batch.is_batch());
    let warnings: Vec<_> = batch.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "batch trailer BTS says 3 messages, found 2 (batch 1)",
            "file trailer FTS says 2 batches, found 1"
        ]
    );
    assert_eq!(batch.file_header().unwrap().field(3).value(), "X");
    assert_eq!(batch.batch_trailers()[0].field(1).value(), "3");
    assert_eq!(batch.file_trailer().unwrap().field(1).value(), "2");
}

#[test]
fn split_skips_and_reports_lines_outside_messages() {
    let input = "/* comment\r * more */\rMSH|^~\\&|A\rPID|1\rFTS|0\rtrailing junk";
    let batch = split_messages(input).unwrap();
    assert_eq!(batch.messages(), ["MSH|^~\\&|A\rPID|1"]);
    assert_eq!(
        batch.warnings(),
        [
            BatchWarning::SkippedLines {
                first_line: 1,
                count: 2
            },
            BatchWarning::SkippedLines {
                first_line: 6,
                count: 1
            }
        ]
    );
}

#[test]
fn split_refuses_input_without_any_message() {
    assert_eq!(split_messages("").unwrap_err(), Hl7Error::Empty);
    assert_eq!(
        split_messages("hello\rworld").unwrap_err(),
        Hl7Error::NoMessage
    );
    // An empty batch is a batch.
    let empty = split_messages("BHS|^~\\&\rBTS|0").unwrap();
    assert!(empty.messages().is_empty());
    assert!(empty.warnings().is_empty());
}

#[test]
fn debug_output_never_shows_the_payload() {
    let msg = Message::parse(ADT).unwrap();
    let shown = format!(
        "{msg:?} {:?} {:?}",
        msg.segment("PID").unwrap(),
        msg.segment("PID").unwrap().field(5)
    );
    assert!(!shown.contains("SMITH"), "{shown}");
    assert!(shown.contains("PID"));
    let batch = split_messages(ADT).unwrap();
    assert!(!format!("{batch:?}").contains("SMITH"));
}

/// Reads every part of every segment, the way a careless caller might.
fn touch_everything(msg: &Message<'_>) -> usize {
    let mut total = msg.message_type().0.len() + msg.control_id().len() + msg.version().len();
    for segment in msg.segments() {
        for n in 0..segment.field_count() + 2 {
            let field = segment.field(n);
            total += field.value().len() + field.text().len() + usize::from(field.is_null());
            for rep in field.repetitions() {
                for comp in rep.components() {
                    total += comp.text().len();
                    for sub in comp.subcomponents() {
                        total += sub.value().len();
                    }
                }
                total += rep.component(3).subcomponent(2).value().len();
            }
        }
        total += segment.fields().count();
    }
    total
}

fn exercise(text: &str) {
    if let Ok(msg) = Message::parse(text) {
        touch_everything(&msg);
        let _ = ack(&msg, AckCode::AE, Some(text), "X", "2024");
    }
    if let Ok(batch) = split_messages(text) {
        for msg in batch.parse_messages().flatten() {
            touch_everything(&msg);
        }
    }
    let _ = Message::parse_header(text);
    let _ = best_effort_control_id(text);
    let _ = escape(text, &Delimiters::default());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(text) = decode(&bytes) {
            exercise(&text);
        }
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn msh_prefixed_text_never_panics(
        header in "MSH[|^~\\\\&#!0 ]{0,7}",
        body in "[|^~\\\\&#\"XF.br0-9a-fA-Z \r\n\u{e9}]{0,300}",
    ) {
        exercise(&format!("{header}{body}"));
    }

    #[test]
    fn well_formed_messages_parse_and_fields_round_trip_through_escape(
        values in proptest::collection::vec("[ -~\u{e9}\r\n]{0,12}", 1..8),
    ) {
        let d = Delimiters::default();
        let escaped: Vec<_> = values.iter().map(|v| escape(v, &d).into_owned()).collect();
        let text = format!("MSH|^~\\&|A\rNTE|{}", escaped.join("|"));
        let msg = Message::parse(&text).unwrap();
        let nte = msg.segment("NTE").unwrap();
        for (i, value) in values.iter().enumerate() {
            prop_assert_eq!(nte.field(i + 1).text(), if value == "\"\"" { "" } else { value.as_str() });
        }
    }
}
