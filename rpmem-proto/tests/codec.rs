//! Codec properties and hostile-input cases: round trips for every message, decode of arbitrary
//! or mutated bytes never panics and, when it succeeds, re-encodes to the same bytes; each class
//! of malformed input gives the typed error that names the field.

use std::io::Cursor;
use std::net::IpAddr;

use proptest::prelude::*;
use rpmem_proto::*;

fn attr() -> impl Strategy<Value = PoolAttr> {
    (
        any::<[u8; 8]>(),
        any::<[u32; 4]>(),
        any::<[[u8; 16]; 4]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(|(signature, n, u, user_flags)| PoolAttr {
            signature,
            major: n[0],
            compat_features: n[1],
            incompat_features: n[2],
            ro_compat_features: n[3],
            poolset_uuid: u[0],
            uuid: u[1],
            next_uuid: u[2],
            prev_uuid: u[3],
            user_flags,
        })
}

fn status() -> impl Strategy<Value = Status> {
    any::<u32>()
        .prop_flat_map(|v| prop_oneof![Just(v % 20), Just(v)])
        .prop_map(Status::from_wire)
}

fn provider() -> impl Strategy<Value = Provider> {
    prop_oneof![
        Just(Provider::Tcp),
        Just(Provider::Sockets),
        Just(Provider::Verbs)
    ]
}

fn method() -> impl Strategy<Value = PersistMethod> {
    prop_oneof![Just(PersistMethod::General), Just(PersistMethod::Appliance)]
}

/// Valid descriptors/texts: no NUL, bounded; includes non-ASCII characters.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\\x00]{{0,{max_chars}}}")).unwrap()
}

fn pool_request() -> impl Strategy<Value = PoolRequest> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        provider(),
        method(),
        text(64),
    )
        .prop_map(
            |(pool_size, nlanes, buff_size, provider, persist_method, descriptor)| PoolRequest {
                pool_size,
                nlanes,
                buff_size,
                provider,
                persist_method,
                descriptor,
            },
        )
}

fn pool_resp() -> impl Strategy<Value = PoolResp> {
    (
        status(),
        any::<u32>(),
        any::<IpAddr>(),
        any::<u16>(),
        method(),
        provider(),
        any::<[u64; 3]>(),
        any::<[u8; 32]>(),
    )
        .prop_map(
            |(status, nlanes, addr, port, persist_method, provider, n, secret)| PoolResp {
                status,
                nlanes,
                addr,
                port,
                persist_method,
                provider,
                rkey: n[0],
                raddr: n[1],
                pool_size: n[2],
                secret: Secret(secret),
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u64>()).prop_map(|(major, minor, c)| Message::Hello(
            Hello {
                major,
                minor,
                capabilities: Capabilities(c)
            }
        )),
        (status(), any::<u16>(), any::<u16>(), any::<u64>()).prop_map(
            |(status, major, minor, c)| Message::HelloResp(HelloResp {
                status,
                major,
                minor,
                capabilities: Capabilities(c)
            })
        ),
        (pool_request(), attr()).prop_map(|(pool, attr)| Message::Create { pool, attr }),
        pool_resp().prop_map(Message::CreateResp),
        pool_request().prop_map(Message::Open),
        (pool_resp(), attr()).prop_map(|(resp, attr)| Message::OpenResp { resp, attr }),
        attr().prop_map(Message::SetAttr),
        status().prop_map(Message::SetAttrResp),
        any::<bool>().prop_map(|remove| Message::Close { remove }),
        status().prop_map(Message::CloseResp),
        (text(64), any::<bool>(), any::<bool>()).prop_map(|(descriptor, force, pool_set)| {
            Message::Remove {
                descriptor,
                force,
                pool_set,
            }
        }),
        status().prop_map(Message::RemoveResp),
        (
            any::<u16>(),
            status().prop_filter("an ERROR is never Ok", |s| !s.is_ok()),
            text(64)
        )
            .prop_map(|(in_reply_to, status, message)| {
                Message::Error {
                    in_reply_to,
                    status,
                    message,
                }
            }),
        (
            any::<u32>(),
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(lane, relaxed, deep, offset, length)| Message::Persist {
                lane,
                relaxed,
                deep,
                offset,
                length
            }),
        (
            any::<u32>(),
            any::<bool>(),
            1..=u64::MAX,
            proptest::collection::vec(
                (any::<u64>(), proptest::collection::vec(any::<u8>(), 1..300)),
                1..8
            )
        )
            .prop_map(|(lane, relaxed, seq, recs)| Message::PersistInline {
                lane,
                relaxed,
                seq,
                records: recs
                    .into_iter()
                    .map(|(offset, data)| InlineRecord { offset, data })
                    .collect(),
            }),
        (any::<u32>(), status()).prop_map(|(lane, status)| Message::PersistResp { lane, status }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_round_trip(m in message()) {
        let bytes = encode(&m).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), m.clone());
        // The stream reader agrees and consumes exactly one frame.
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        let mut cur = Cursor::new(&two[..]);
        prop_assert_eq!(read_message(&mut cur).unwrap(), m.clone());
        prop_assert_eq!(cur.position() as usize, bytes.len());
        prop_assert_eq!(read_message(&mut cur).unwrap(), m);
        prop_assert!(matches!(read_message(&mut cur), Err(ReadError::Closed)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz_decode(&data);
    }

    /// Most arbitrary bytes fail at the magic; mutating valid frames reaches the body decoders
    /// and checks decode → encode identity wherever a mutant still decodes.
    #[test]
    fn mutated_frames_never_panic_and_reencode_identically(
        m in message(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = encode(&m).unwrap();
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        fuzz_decode(&bytes);
        if let Ok(again) = decode(&bytes) {
            prop_assert_eq!(encode(&again).unwrap(), bytes);
        }
    }

    #[test]
    fn lane_connect_round_trip(major in any::<u16>(), minor in any::<u16>(), lane in any::<u32>(), s in any::<[u8; 32]>()) {
        let c = LaneConnect { major, minor, lane, secret: Secret(s) };
        prop_assert_eq!(LaneConnect::decode(&c.encode()).unwrap(), c);
    }
}

fn persist() -> Message {
    Message::Persist {
        lane: 1,
        relaxed: false,
        deep: true,
        offset: 4096,
        length: 64,
    }
}

fn open() -> Message {
    Message::Open(PoolRequest {
        pool_size: 1 << 20,
        nlanes: 4,
        buff_size: 4096,
        provider: Provider::Tcp,
        persist_method: PersistMethod::General,
        descriptor: "pool.set".into(),
    })
}

/// Applies `edit` to the encoding of `m` and checks the decode error.
fn check(m: Message, edit: impl FnOnce(&mut Vec<u8>), expected: DecodeError) {
    let mut bytes = encode(&m).unwrap();
    edit(&mut bytes);
    assert_eq!(decode(&bytes), Err(expected));
}

fn set_body_len(b: &mut [u8], len: u32) {
    b[8..12].copy_from_slice(&len.to_le_bytes());
}

#[test]
fn bad_magic() {
    check(
        persist(),
        |b| b[0] = b'X',
        DecodeError::BadMagic {
            found: u32::from_le_bytes(*b"XPMF"),
        },
    );
}

#[test]
fn unknown_type() {
    check(
        persist(),
        |b| b[4..6].copy_from_slice(&0x7777u16.to_le_bytes()),
        DecodeError::UnknownType(0x7777),
    );
}

#[test]
fn header_reserved_fields() {
    check(
        persist(),
        |b| b[6] = 1,
        DecodeError::BadField {
            msg: "frame header",
            field: "flags",
            why: "reserved, must be 0 but is 0x1".into(),
        },
    );
    check(
        persist(),
        |b| b[15] = 1,
        DecodeError::BadField {
            msg: "frame header",
            field: "reserved",
            why: "reserved, must be 0 but is 0x1000000".into(),
        },
    );
}

#[test]
fn hostile_length_refused_before_reading_body() {
    // A header claiming 4 GiB: refused from the header alone, nothing allocated or read.
    let mut b = encode(&persist()).unwrap();
    set_body_len(&mut b, u32::MAX);
    let head: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
    assert_eq!(
        decode_header(&head),
        Err(DecodeError::BodyTooLarge {
            len: u32::MAX,
            max: MAX_BODY_LEN
        })
    );
    let mut cur = Cursor::new(&head[..]);
    assert!(matches!(
        read_message(&mut cur),
        Err(ReadError::Decode(DecodeError::BodyTooLarge { .. }))
    ));
}

#[test]
fn truncated_and_trailing() {
    check(
        persist(),
        |b| b.truncate(b.len() - 1),
        DecodeError::Truncated {
            msg: "PERSIST",
            field: "frame body",
        },
    );
    // Body length agrees with the bytes but is too short for the fixed part.
    check(
        persist(),
        |b| {
            b.truncate(b.len() - 8);
            set_body_len(b, 16);
        },
        DecodeError::Truncated {
            msg: "PERSIST",
            field: "lane..length",
        },
    );
    // A byte after the last field, counted in the body length.
    check(
        persist(),
        |b| {
            b.push(0);
            set_body_len(b, 25);
        },
        DecodeError::TrailingBytes {
            msg: "PERSIST",
            extra: 1,
        },
    );
    // A byte after the frame.
    check(
        persist(),
        |b| b.push(0),
        DecodeError::TrailingBytes {
            msg: "frame",
            extra: 1,
        },
    );
    assert_eq!(
        decode(&[0u8; 5]),
        Err(DecodeError::Truncated {
            msg: "frame header",
            field: "header"
        })
    );
}

#[test]
fn unknown_persist_flags() {
    check(
        persist(),
        |b| b[16 + 4] = 0x06,
        DecodeError::BadField {
            msg: "PERSIST",
            field: "flags",
            why: "unknown bits 0x4".into(),
        },
    );
}

#[test]
fn bad_enums_in_open() {
    check(
        open(),
        |b| b[16 + 16] = 9,
        DecodeError::BadField {
            msg: "OPEN",
            field: "provider",
            why: "unknown provider 9".into(),
        },
    );
    check(
        open(),
        |b| b[16 + 18] = 0,
        DecodeError::BadField {
            msg: "OPEN",
            field: "persist_method",
            why: "unknown method 0".into(),
        },
    );
    check(
        open(),
        |b| b[16 + 20] = 1,
        DecodeError::BadField {
            msg: "OPEN",
            field: "reserved",
            why: "reserved, must be 0 but is 0x1".into(),
        },
    );
}

#[test]
fn descriptor_strings() {
    // Offset of the descriptor bytes in an OPEN frame: header, 24-byte fixed part, u16 length.
    const AT: usize = 16 + 24 + 2;
    check(
        open(),
        |b| b[AT + 2] = 0,
        DecodeError::BadField {
            msg: "OPEN",
            field: "descriptor",
            why: "contains a NUL byte".into(),
        },
    );
    check(
        open(),
        |b| b[AT] = 0xff,
        DecodeError::BadField {
            msg: "OPEN",
            field: "descriptor",
            why: "not UTF-8: invalid utf-8 sequence of 1 bytes from index 0".into(),
        },
    );
    // A length prefix longer than the body.
    check(
        open(),
        |b| b[AT - 2] = 200,
        DecodeError::Truncated {
            msg: "OPEN",
            field: "descriptor",
        },
    );
    // A length prefix over the maximum is refused by value, whatever follows.
    check(
        open(),
        |b| b[AT - 2..AT].copy_from_slice(&5000u16.to_le_bytes()),
        DecodeError::BadField {
            msg: "OPEN",
            field: "descriptor",
            why: "length 5000 exceeds the maximum of 4095 bytes".into(),
        },
    );
}

#[test]
fn encode_refuses_what_decode_would_refuse() {
    let Message::Open(mut req) = open() else {
        unreachable!()
    };
    req.descriptor = "a\0b".into();
    let e = encode(&Message::Open(req.clone())).unwrap_err();
    assert_eq!((e.msg, e.field), ("OPEN", "descriptor"));
    req.descriptor = "x".repeat(MAX_DESCRIPTOR_LEN + 1);
    assert!(encode(&Message::Open(req.clone())).is_err());
    req.descriptor = "x".repeat(MAX_DESCRIPTOR_LEN);
    let longest = encode(&Message::Open(req)).unwrap();
    assert!(longest.len() < MAX_BODY_LEN as usize);
}

#[test]
fn error_constructor_always_encodes() {
    let text = format!("{}\0é", "é".repeat(MAX_ERROR_TEXT_LEN));
    let m = Message::error(MsgType::Open.to_wire(), Status::PathRefused, &text);
    let Message::Error { message, .. } = &m else {
        unreachable!()
    };
    assert!(message.len() <= MAX_ERROR_TEXT_LEN && !message.contains('\0'));
    assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
}

#[test]
fn error_with_status_ok_is_refused() {
    // PROTOCOL §4.12: an ERROR reports a failure, so its status is never Ok.
    check(
        Message::error(MsgType::Open.to_wire(), Status::Io, "x"),
        |b| b[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&0u32.to_le_bytes()),
        DecodeError::BadField {
            msg: "ERROR",
            field: "status",
            why: "an ERROR must carry a failure status, not Ok".into(),
        },
    );
    // Encoding refuses it too, so decode and encode agree on what is a message.
    let e = encode(&Message::Error {
        in_reply_to: 0,
        status: Status::Ok,
        message: String::new(),
    })
    .unwrap_err();
    assert_eq!((e.msg, e.field), ("ERROR", "status"));
    // The reporting constructor never produces one: Ok (a caller bug) becomes Internal.
    let m = Message::error(0, Status::Ok, "bug");
    assert!(matches!(
        m,
        Message::Error {
            status: Status::Internal,
            ..
        }
    ));
    assert!(encode(&m).is_ok());
}

#[test]
fn ipv4_address_padding_must_be_zero() {
    let resp = Message::CreateResp(PoolResp {
        status: Status::Ok,
        nlanes: 2,
        addr: "127.0.0.1".parse().unwrap(),
        port: 4242,
        persist_method: PersistMethod::General,
        provider: Provider::Tcp,
        rkey: 7,
        raddr: 0x7f00_0000_0000,
        pool_size: 1 << 20,
        secret: Secret([9; 32]),
    });
    check(
        resp.clone(),
        |b| b[16 + 16 + 5] = 1,
        DecodeError::BadField {
            msg: "CREATE_RESP",
            field: "addr",
            why: "IPv4 address with non-zero bytes after the first 4".into(),
        },
    );
    check(
        resp,
        |b| b[16 + 10] = 5,
        DecodeError::BadField {
            msg: "CREATE_RESP",
            field: "addr_family",
            why: "5, expected 4 or 6".into(),
        },
    );
}

#[test]
fn stream_ends() {
    let bytes = encode(&persist()).unwrap();
    assert!(matches!(
        read_message(&mut Cursor::new(&[][..])),
        Err(ReadError::Closed)
    ));
    assert!(matches!(
        read_message(&mut Cursor::new(&bytes[..7])),
        Err(ReadError::Truncated("frame header"))
    ));
    assert!(matches!(
        read_message(&mut Cursor::new(&bytes[..30])),
        Err(ReadError::Truncated("PERSIST"))
    ));
}

#[test]
fn lane_connect_refusals() {
    let c = LaneConnect {
        major: 1,
        minor: 0,
        lane: 2,
        secret: Secret([1; 32]),
    };
    let b = c.encode();
    assert_eq!(&b[..4], b"RPML");
    assert!(matches!(
        LaneConnect::decode(&b[..47]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut long = b.to_vec();
    long.push(0);
    assert_eq!(
        LaneConnect::decode(&long),
        Err(DecodeError::TrailingBytes {
            msg: "lane connect",
            extra: 1
        })
    );
    let mut bad = b;
    bad[0] = 0;
    assert!(matches!(
        LaneConnect::decode(&bad),
        Err(DecodeError::BadField { field: "magic", .. })
    ));
    let mut bad = b;
    bad[12] = 1;
    assert!(matches!(
        LaneConnect::decode(&bad),
        Err(DecodeError::BadField {
            field: "reserved",
            ..
        })
    ));
}

#[test]
fn secret_is_redacted_and_compared_fully() {
    let a = Secret([0xAB; 32]);
    assert_eq!(format!("{a:?}"), "Secret(<redacted>)");
    let mut other = [0xAB; 32];
    assert!(a.ct_eq(&Secret(other)));
    other[31] ^= 1;
    assert!(!a.ct_eq(&Secret(other)));
    assert_ne!(a, Secret(other));
}

#[test]
fn status_codes_are_stable() {
    // Wire values are part of the protocol: pin a few and check the mapping is a bijection.
    assert_eq!(Status::Ok.to_wire(), 0);
    assert_eq!(Status::PathRefused.to_wire(), 4);
    assert_eq!(Status::OutOfRange.to_wire(), 12);
    assert_eq!(Status::Internal.to_wire(), 18);
    for v in 0..40 {
        assert_eq!(Status::from_wire(v).to_wire(), v);
    }
    assert_eq!(
        Status::from_wire(19),
        Status::Unrecognized(UnknownStatus::new(19).unwrap())
    );
}

#[test]
fn unrecognized_status_cannot_hold_a_known_code() {
    // Unrecognized(0) would go on the wire as Ok: a failure reported as success.
    for v in 0..=18 {
        assert_eq!(UnknownStatus::new(v), None, "code {v} is known");
    }
    for v in [19, 1000, u32::MAX] {
        let s = Status::Unrecognized(UnknownStatus::new(v).unwrap());
        assert_eq!(s.to_wire(), v);
        assert_eq!(Status::from_wire(s.to_wire()), s);
        assert!(!s.is_ok());
        assert!(s.to_string().starts_with(&format!("status {v}:")), "{s}");
    }
}

#[test]
fn range_checks() {
    assert!(check_range(0, 100, 100).is_ok());
    assert!(check_range(100, 0, 100).is_ok());
    assert_eq!(
        check_range(1, 100, 100),
        Err(ProtocolError::OutOfRange {
            offset: 1,
            length: 100,
            pool_size: 100
        })
    );
    // Overflow of offset + length must not wrap into range.
    assert!(check_range(u64::MAX, 2, u64::MAX).is_err());
}

/// Every single-byte mutation of a few representative frames: none panics, and both outcomes
/// occur (so the identity check in `fuzz_decode` is really exercised, not vacuous).
#[test]
fn exhaustive_single_byte_mutations() {
    let samples = [
        persist(),
        open(),
        Message::error(3, Status::Io, "disk on fire"),
        Message::Close { remove: true },
    ];
    let (mut decoded, mut refused) = (0usize, 0usize);
    for m in samples {
        let good = encode(&m).unwrap();
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                fuzz_decode(&b);
                match decode(&b) {
                    Ok(again) => {
                        decoded += 1;
                        assert_eq!(encode(&again).unwrap(), b);
                    }
                    Err(_) => refused += 1,
                }
            }
        }
    }
    assert!(
        decoded > 100 && refused > 100,
        "decoded {decoded}, refused {refused}"
    );
}

/// A reader that hands out one byte per call and an `Interrupted` error before each byte, as a
/// pipe or SSH channel under signals may.
struct Trickle<'a> {
    data: &'a [u8],
    interrupt_next: bool,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.interrupt_next = !self.interrupt_next;
        if self.interrupt_next {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        match (self.data.split_first(), buf.first_mut()) {
            (Some((b, rest)), Some(slot)) => {
                *slot = *b;
                self.data = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn short_reads_and_interrupts() {
    let msgs = [open(), persist()];
    let mut bytes = Vec::new();
    for m in &msgs {
        write_message(&mut bytes, m).unwrap();
    }
    let mut r = Trickle {
        data: &bytes,
        interrupt_next: false,
    };
    assert_eq!(read_message(&mut r).unwrap(), msgs[0]);
    assert_eq!(read_message(&mut r).unwrap(), msgs[1]);
    assert!(matches!(read_message(&mut r), Err(ReadError::Closed)));
}

fn inline(records: Vec<(u64, Vec<u8>)>) -> Message {
    Message::PersistInline {
        lane: 2,
        relaxed: false,
        seq: 1,
        records: records
            .into_iter()
            .map(|(offset, data)| InlineRecord { offset, data })
            .collect(),
    }
}

/// PERSIST_INLINE: each way a body can be wrong is refused naming the field.
#[test]
fn persist_inline_refusals() {
    let is_bad = |e: &DecodeError, field: &str| matches!(e, DecodeError::BadField { field: f, .. } if *f == field);
    let m = inline(vec![(64, vec![7u8; 5]), (4096, vec![9u8; 16])]);
    let good = encode(&m).unwrap();
    assert_eq!(decode(&good).unwrap(), m);
    // Body: lane(4) flags(4) seq(8) | rec0: off(8) len(4) res(4) data(5) pad(3) | rec1 ...
    let body = HEADER_LEN;
    let cases = [
        (body + 4, 4, "flags"),
        (body + 8, 0, "seq"),
        (body + 16 + 12, 1, "record reserved"),
        (body + 16 + 16 + 6, 1, "record padding"),
        (body + 16 + 8, 0, "record length"),
    ];
    for (at, value, field) in cases {
        let mut b = good.clone();
        b[at] = value;
        let e = decode(&b).unwrap_err();
        assert!(is_bad(&e, field), "byte {at} = {value}: {e}");
    }
    // A record length running past the body is truncated data.
    let mut b = good.clone();
    b[body + 16 + 8] = 200;
    assert!(matches!(
        decode(&b).unwrap_err(),
        DecodeError::Truncated {
            field: "record data",
            ..
        }
    ));
    // No record at all.
    let mut b = good[..body + 16].to_vec();
    set_body_len(&mut b, 16);
    assert!(is_bad(&decode(&b).unwrap_err(), "records"));
    // Encode refuses what decode refuses: empty list, empty record, too much data.
    assert!(encode(&inline(vec![])).is_err());
    assert!(encode(&inline(vec![(0, vec![])])).is_err());
    assert!(encode(&inline(vec![(0, vec![1u8; 3000]), (0, vec![1u8; 3000])])).is_err());
}

/// InlineBatch builds exactly the frame `encode` gives for the same records, and stops
/// accepting records when the frame is full.
#[test]
fn inline_batch_matches_encode_and_fills_up() {
    let mut b = InlineBatch::new(2);
    assert!(b.is_empty());
    assert!(b.push_with(64, 5, |d| d.fill(7)));
    assert!(b.push_with(4096, 16, |d| d.fill(9)));
    assert_eq!(b.hull(), (64, 4096 + 16 - 64));
    b.set_seq(1);
    let m = inline(vec![(64, vec![7u8; 5]), (4096, vec![9u8; 16])]);
    assert_eq!(b.frame(), encode(&m).unwrap().as_slice());
    // Reserved records filled at the end give the same frame.
    let mut r = InlineBatch::new(2);
    assert!(r.reserve(64, 5) && r.reserve(4096, 16));
    r.set_seq(1);
    r.fill(|off, d| -> Result<(), ()> {
        d.fill(if off == 64 { 7 } else { 9 });
        Ok(())
    })
    .unwrap();
    assert_eq!(r.frame(), encode(&m).unwrap().as_slice());
    let mut b = InlineBatch::new(0);
    let mut n = 0;
    while b.push_with(n * 64, 64, |d| d.fill(1)) {
        n += 1;
    }
    // 4096-byte frame: 16 header + 16 fixed + n * (16 + 64).
    assert_eq!(n, (LANE_INLINE_FRAME_MAX as u64 - 16 - 16) / 80);
    assert!(!b.fits(0), "an empty record never fits");
    b.set_seq(7);
    let frame = b.frame().to_vec();
    assert_eq!(frame.len(), 16 + 16 + n as usize * 80);
    assert!(
        matches!(decode(&frame).unwrap(), Message::PersistInline { records, .. } if records.len() == n as usize)
    );
}
