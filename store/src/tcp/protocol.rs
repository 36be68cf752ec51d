//! The TCP store's wire protocol: length-prefixed binary frames.
//!
//! A frame is `len:u32 LE` followed by `len` bytes of body; the body starts with an
//! opcode byte. Integers are little-endian; byte strings and keys are `len:u32`
//! followed by the bytes (keys are UTF-8, at most [`WIRE_KEY_LEN`] bytes; values at
//! most [`MAX_VALUE_LEN`]); key lists are `count:u32` followed by the keys. Timeouts are
//! milliseconds, 0 meaning "wait forever".
//!
//! Every connection starts with the client's `Hello { magic "TUTS", version, token }`,
//! answered by `HelloOk` or by an `Error` after which the server closes. Then the
//! client sends one request at a time and reads its reply: one frame, except
//! `MultiGet`, answered by one `Value` frame per key (or a single `TimedOut`/`Error`).
//! The decoder never trusts a length: it checks each against the bytes present and the
//! limits before using it, so any byte stream yields a frame, "incomplete" or an error.

use std::fmt;

use crate::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// The first bytes of every `Hello`.
pub(crate) const MAGIC: [u8; 4] = *b"TUTS";
/// The protocol version this build speaks.
pub(crate) const VERSION: u16 = 1;
/// The longest job token accepted.
pub(crate) const MAX_TOKEN_LEN: usize = 1024;
/// The largest frame before the handshake (a `Hello`).
pub(crate) const MAX_HELLO_FRAME: usize = 1 + MAGIC.len() + 2 + 4 + MAX_TOKEN_LEN;
/// The largest frame after it (a `compare_set` of two maximal values, with slack).
pub(crate) const MAX_FRAME: usize = 2 * MAX_VALUE_LEN + 2 * WIRE_KEY_LEN + 64;
/// The longest key on the wire: a store key of at most [`MAX_KEY_LEN`] bytes behind
/// the `/` that [`TcpStore`](super::TcpStore) puts before every key (as c10d's
/// TCPStore client does, so that both reach the same keys).
pub(crate) const WIRE_KEY_LEN: usize = MAX_KEY_LEN + 1;
/// Bytes of the length prefix.
pub(crate) const LEN_PREFIX: usize = 4;

mod op {
    pub(super) const HELLO: u8 = 0x01;
    pub(super) const SET: u8 = 0x10;
    pub(super) const GET: u8 = 0x11;
    pub(super) const ADD: u8 = 0x12;
    pub(super) const COMPARE_SET: u8 = 0x13;
    pub(super) const CHECK: u8 = 0x14;
    pub(super) const WAIT: u8 = 0x15;
    pub(super) const MULTI_GET: u8 = 0x16;
    pub(super) const MULTI_SET: u8 = 0x17;
    pub(super) const APPEND: u8 = 0x18;
    pub(super) const DELETE_KEY: u8 = 0x19;
    pub(super) const NUM_KEYS: u8 = 0x1a;

    pub(super) const HELLO_OK: u8 = 0x81;
    pub(super) const OK: u8 = 0x82;
    pub(super) const VALUE: u8 = 0x83;
    pub(super) const INTEGER: u8 = 0x84;
    pub(super) const BOOL: u8 = 0x85;
    pub(super) const COUNT: u8 = 0x86;
    pub(super) const TIMED_OUT: u8 = 0x87;
    pub(super) const ERROR: u8 = 0x88;
}

/// A client-to-server frame, borrowing its strings from the decode buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    Hello {
        version: u16,
        token: &'a [u8],
    },
    Set {
        key: &'a str,
        value: &'a [u8],
    },
    Get {
        key: &'a str,
        timeout_ms: u64,
    },
    Add {
        key: &'a str,
        delta: i64,
    },
    CompareSet {
        key: &'a str,
        expected: &'a [u8],
        desired: &'a [u8],
    },
    Check {
        keys: Vec<&'a str>,
    },
    Wait {
        keys: Vec<&'a str>,
        timeout_ms: u64,
    },
    MultiGet {
        keys: Vec<&'a str>,
        timeout_ms: u64,
    },
    MultiSet {
        pairs: Vec<(&'a str, &'a [u8])>,
    },
    Append {
        key: &'a str,
        value: &'a [u8],
    },
    DeleteKey {
        key: &'a str,
    },
    NumKeys,
}

/// What an `Error` frame is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Wrong job token.
    Auth = 1,
    /// Unsupported protocol version.
    Version = 2,
    /// The request was refused (non-integer add, size limit...).
    Request = 3,
    /// The bytes broke the protocol.
    Protocol = 4,
}

impl ErrorKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Auth,
            2 => Self::Version,
            3 => Self::Request,
            4 => Self::Protocol,
            _ => return None,
        })
    }
}

/// A server-to-client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response<'a> {
    HelloOk,
    Ok,
    Value(&'a [u8]),
    Integer(i64),
    Bool(bool),
    Count(u64),
    TimedOut { missing: Vec<&'a str> },
    Error { kind: ErrorKind, message: &'a str },
}

/// Bytes that do not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtocolError(pub(crate) String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn perr(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

/// The body of the first complete frame in `buf`, and the bytes it spans with its
/// prefix; `Ok(None)` if `buf` holds only part of a frame.
pub(crate) fn split_frame(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let Some((len, rest)) = buf.split_first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > max_len {
        return Err(perr(format!(
            "frame of {len} bytes exceeds the limit of {max_len} bytes"
        )));
    }
    if len == 0 {
        return Err(perr("empty frame"));
    }
    Ok(rest.get(..len).map(|body| (body, LEN_PREFIX + len)))
}

/// Decodes the first request in `buf`: the request and the bytes it used, or
/// `Ok(None)` if the frame is incomplete.
pub(crate) fn decode_request(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(Request<'_>, usize)>, ProtocolError> {
    let Some((body, used)) = split_frame(buf, max_len)? else {
        return Ok(None);
    };
    Ok(Some((parse_request(body)?, used)))
}

/// Parses a request body.
pub(crate) fn parse_request(body: &[u8]) -> Result<Request<'_>, ProtocolError> {
    let mut r = Reader(body);
    let req = match r.u8()? {
        op::HELLO => {
            if r.take(MAGIC.len())? != MAGIC {
                return Err(perr("bad magic: not a tutti store client"));
            }
            let version = r.u16()?;
            let token = r.bytes(MAX_TOKEN_LEN, "token")?;
            Request::Hello { version, token }
        }
        op::SET => Request::Set {
            key: r.key()?,
            value: r.value()?,
        },
        op::GET => Request::Get {
            key: r.key()?,
            timeout_ms: r.u64()?,
        },
        op::ADD => Request::Add {
            key: r.key()?,
            delta: r.i64()?,
        },
        op::COMPARE_SET => Request::CompareSet {
            key: r.key()?,
            expected: r.value()?,
            desired: r.value()?,
        },
        op::CHECK => Request::Check { keys: r.keys()? },
        op::WAIT => Request::Wait {
            keys: r.keys()?,
            timeout_ms: r.u64()?,
        },
        op::MULTI_GET => Request::MultiGet {
            keys: r.keys()?,
            timeout_ms: r.u64()?,
        },
        op::MULTI_SET => {
            let n = r.count(8)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((r.key()?, r.value()?));
            }
            Request::MultiSet { pairs }
        }
        op::APPEND => Request::Append {
            key: r.key()?,
            value: r.value()?,
        },
        op::DELETE_KEY => Request::DeleteKey { key: r.key()? },
        op::NUM_KEYS => Request::NumKeys,
        other => return Err(perr(format!("unknown request opcode {other:#04x}"))),
    };
    r.finish()?;
    Ok(req)
}

/// Parses a response body.
pub(crate) fn parse_response(body: &[u8]) -> Result<Response<'_>, ProtocolError> {
    let mut r = Reader(body);
    let resp = match r.u8()? {
        op::HELLO_OK => Response::HelloOk,
        op::OK => Response::Ok,
        op::VALUE => Response::Value(r.value()?),
        op::INTEGER => Response::Integer(r.i64()?),
        op::BOOL => match r.u8()? {
            0 => Response::Bool(false),
            1 => Response::Bool(true),
            b => return Err(perr(format!("bad boolean {b}"))),
        },
        op::COUNT => Response::Count(r.u64()?),
        op::TIMED_OUT => Response::TimedOut { missing: r.keys()? },
        op::ERROR => {
            let kind = r.u8()?;
            let kind = ErrorKind::from_u8(kind)
                .ok_or_else(|| perr(format!("unknown error kind {kind}")))?;
            let message = r.bytes(MAX_VALUE_LEN, "error message")?;
            let message =
                std::str::from_utf8(message).map_err(|_| perr("error message is not UTF-8"))?;
            Response::Error { kind, message }
        }
        other => return Err(perr(format!("unknown response opcode {other:#04x}"))),
    };
    r.finish()?;
    Ok(resp)
}

/// A cursor over a frame body that checks every length before using it.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or_else(|| {
            perr(format!(
                "truncated frame: need {n} more bytes, have {}",
                self.0.len()
            ))
        })?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, ProtocolError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self, max: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(perr(format!(
                "{what} of {len} bytes exceeds the limit of {max} bytes"
            )));
        }
        self.take(len)
    }

    fn value(&mut self) -> Result<&'a [u8], ProtocolError> {
        self.bytes(MAX_VALUE_LEN, "value")
    }

    fn key(&mut self) -> Result<&'a str, ProtocolError> {
        let key = self.bytes(WIRE_KEY_LEN, "key")?;
        std::str::from_utf8(key).map_err(|_| perr("key is not UTF-8"))
    }

    /// A count of items, each at least `min_item` bytes: bounded by the bytes left, so
    /// a forged count cannot make the decoder allocate.
    fn count(&mut self, min_item: usize) -> Result<usize, ProtocolError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.0.len() {
            return Err(perr(format!(
                "count {n} does not fit in the {} bytes left",
                self.0.len()
            )));
        }
        Ok(n)
    }

    fn keys(&mut self) -> Result<Vec<&'a str>, ProtocolError> {
        let n = self.count(4)?;
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            keys.push(self.key()?);
        }
        Ok(keys)
    }

    fn finish(&self) -> Result<(), ProtocolError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(perr(format!(
                "{} trailing bytes after the frame's fields",
                self.0.len()
            )))
        }
    }
}

/// Appends frames to a buffer.
pub(crate) struct Encoder<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
}

impl<'b> Encoder<'b> {
    /// Starts a frame with opcode `op` at the end of `buf`.
    fn begin(buf: &'b mut Vec<u8>, op: u8) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&[0; LEN_PREFIX]);
        buf.push(op);
        Self { buf, start }
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn len32(&mut self, len: usize) -> &mut Self {
        // Callers check lengths against the limits (all far below u32::MAX) first.
        self.buf
            .extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        self
    }

    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.len32(v.len());
        self.buf.extend_from_slice(v);
        self
    }

    fn keys(&mut self, keys: &[&str]) -> &mut Self {
        self.len32(keys.len());
        for k in keys {
            self.bytes(k.as_bytes());
        }
        self
    }

    /// Writes the length prefix; returns the frame's size in bytes.
    fn finish(&mut self) -> usize {
        let total = self.buf.len() - self.start;
        let body = u32::try_from(total - LEN_PREFIX).unwrap_or(u32::MAX);
        self.buf[self.start..self.start + LEN_PREFIX].copy_from_slice(&body.to_le_bytes());
        total
    }
}

/// Appends `req` as a frame to `buf`; returns the frame's size.
pub(crate) fn encode_request(buf: &mut Vec<u8>, req: &Request<'_>) -> usize {
    match req {
        Request::Hello { version, token } => {
            let mut e = Encoder::begin(buf, op::HELLO);
            e.buf.extend_from_slice(&MAGIC);
            e.u16(*version).bytes(token).finish()
        }
        Request::Set { key, value } => Encoder::begin(buf, op::SET)
            .bytes(key.as_bytes())
            .bytes(value)
            .finish(),
        Request::Get { key, timeout_ms } => Encoder::begin(buf, op::GET)
            .bytes(key.as_bytes())
            .u64(*timeout_ms)
            .finish(),
        Request::Add { key, delta } => Encoder::begin(buf, op::ADD)
            .bytes(key.as_bytes())
            .i64(*delta)
            .finish(),
        Request::CompareSet {
            key,
            expected,
            desired,
        } => Encoder::begin(buf, op::COMPARE_SET)
            .bytes(key.as_bytes())
            .bytes(expected)
            .bytes(desired)
            .finish(),
        Request::Check { keys } => Encoder::begin(buf, op::CHECK).keys(keys).finish(),
        Request::Wait { keys, timeout_ms } => Encoder::begin(buf, op::WAIT)
            .keys(keys)
            .u64(*timeout_ms)
            .finish(),
        Request::MultiGet { keys, timeout_ms } => Encoder::begin(buf, op::MULTI_GET)
            .keys(keys)
            .u64(*timeout_ms)
            .finish(),
        Request::MultiSet { pairs } => {
            let mut e = Encoder::begin(buf, op::MULTI_SET);
            e.len32(pairs.len());
            for (k, v) in pairs {
                e.bytes(k.as_bytes()).bytes(v);
            }
            e.finish()
        }
        Request::Append { key, value } => Encoder::begin(buf, op::APPEND)
            .bytes(key.as_bytes())
            .bytes(value)
            .finish(),
        Request::DeleteKey { key } => Encoder::begin(buf, op::DELETE_KEY)
            .bytes(key.as_bytes())
            .finish(),
        Request::NumKeys => Encoder::begin(buf, op::NUM_KEYS).finish(),
    }
}

/// Appends `resp` as a frame to `buf`; returns the frame's size.
pub(crate) fn encode_response(buf: &mut Vec<u8>, resp: &Response<'_>) -> usize {
    match resp {
        Response::HelloOk => Encoder::begin(buf, op::HELLO_OK).finish(),
        Response::Ok => Encoder::begin(buf, op::OK).finish(),
        Response::Value(v) => Encoder::begin(buf, op::VALUE).bytes(v).finish(),
        Response::Integer(v) => Encoder::begin(buf, op::INTEGER).i64(*v).finish(),
        Response::Bool(b) => Encoder::begin(buf, op::BOOL).u8(u8::from(*b)).finish(),
        Response::Count(n) => Encoder::begin(buf, op::COUNT).u64(*n).finish(),
        Response::TimedOut { missing } => Encoder::begin(buf, op::TIMED_OUT).keys(missing).finish(),
        Response::Error { kind, message } => Encoder::begin(buf, op::ERROR)
            .u8(*kind as u8)
            .bytes(message.as_bytes())
            .finish(),
    }
}

/// The size of a frame carrying `len` bytes of strings plus `fixed` bytes of fields.
pub(crate) fn frame_size(fixed: usize, strings: impl IntoIterator<Item = usize>) -> usize {
    LEN_PREFIX + 1 + fixed + strings.into_iter().map(|l| 4 + l).sum::<usize>()
}

/// A timeout on the wire: milliseconds, rounded up so that a non-zero timeout never
/// becomes 0 ("forever").
pub(crate) fn timeout_to_ms(timeout: std::time::Duration) -> u64 {
    if timeout.is_zero() {
        return 0;
    }
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect())
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..48)
    }

    /// Owned requests (a `Request` borrows).
    #[derive(Debug, Clone)]
    enum Owned {
        Hello(u16, Vec<u8>),
        Set(String, Vec<u8>),
        Get(String, u64),
        Add(String, i64),
        CompareSet(String, Vec<u8>, Vec<u8>),
        Check(Vec<String>),
        Wait(Vec<String>, u64),
        MultiGet(Vec<String>, u64),
        MultiSet(Vec<(String, Vec<u8>)>),
        Append(String, Vec<u8>),
        DeleteKey(String),
        NumKeys,
    }

    fn owned() -> impl Strategy<Value = Owned> {
        let keys = || proptest::collection::vec(key(), 0..5);
        prop_oneof![
            (any::<u16>(), bytes()).prop_map(|(v, t)| Owned::Hello(v, t)),
            (key(), bytes()).prop_map(|(k, v)| Owned::Set(k, v)),
            (key(), any::<u64>()).prop_map(|(k, t)| Owned::Get(k, t)),
            (key(), any::<i64>()).prop_map(|(k, d)| Owned::Add(k, d)),
            (key(), bytes(), bytes()).prop_map(|(k, e, d)| Owned::CompareSet(k, e, d)),
            keys().prop_map(Owned::Check),
            (keys(), any::<u64>()).prop_map(|(k, t)| Owned::Wait(k, t)),
            (keys(), any::<u64>()).prop_map(|(k, t)| Owned::MultiGet(k, t)),
            proptest::collection::vec((key(), bytes()), 0..4).prop_map(Owned::MultiSet),
            (key(), bytes()).prop_map(|(k, v)| Owned::Append(k, v)),
            key().prop_map(Owned::DeleteKey),
            Just(Owned::NumKeys),
        ]
    }

    fn refs(keys: &[String]) -> Vec<&str> {
        keys.iter().map(String::as_str).collect()
    }

    fn borrow(o: &Owned) -> Request<'_> {
        match o {
            Owned::Hello(v, t) => Request::Hello {
                version: *v,
                token: t,
            },
            Owned::Set(k, v) => Request::Set { key: k, value: v },
            Owned::Get(k, t) => Request::Get {
                key: k,
                timeout_ms: *t,
            },
            Owned::Add(k, d) => Request::Add { key: k, delta: *d },
            Owned::CompareSet(k, e, d) => Request::CompareSet {
                key: k,
                expected: e,
                desired: d,
            },
            Owned::Check(k) => Request::Check { keys: refs(k) },
            Owned::Wait(k, t) => Request::Wait {
                keys: refs(k),
                timeout_ms: *t,
            },
            Owned::MultiGet(k, t) => Request::MultiGet {
                keys: refs(k),
                timeout_ms: *t,
            },
            Owned::MultiSet(p) => Request::MultiSet {
                pairs: p.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect(),
            },
            Owned::Append(k, v) => Request::Append { key: k, value: v },
            Owned::DeleteKey(k) => Request::DeleteKey { key: k },
            Owned::NumKeys => Request::NumKeys,
        }
    }

    /// Decodes every frame of a stream, checking the decoder's invariants.
    fn decode_all(mut stream: &[u8], max: usize) {
        loop {
            match decode_request(stream, max) {
                Ok(Some((_, used))) => {
                    assert!(used > LEN_PREFIX && used <= stream.len());
                    stream = &stream[used..];
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn requests_round_trip(o in owned()) {
            let req = borrow(&o);
            let mut buf = Vec::new();
            let n = encode_request(&mut buf, &req);
            prop_assert_eq!(n, buf.len());
            let (back, used) = decode_request(&buf, MAX_FRAME).unwrap().unwrap();
            prop_assert_eq!(used, buf.len());
            prop_assert_eq!(back, req);
            // Every strict prefix is incomplete, never an error or a frame.
            for cut in 0..buf.len() {
                prop_assert_eq!(decode_request(&buf[..cut], MAX_FRAME).unwrap(), None);
            }
        }

        #[test]
        fn random_streams_never_panic(stream in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(&stream, MAX_FRAME);
            decode_all(&stream, MAX_HELLO_FRAME);
            let _ = parse_response(&stream);
            let _ = parse_request(&stream);
        }

        #[test]
        fn corrupted_frames_never_panic(o in owned(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut buf = Vec::new();
            encode_request(&mut buf, &borrow(&o));
            let i = at.index(buf.len());
            buf[i] = byte;
            decode_all(&buf, MAX_FRAME);
        }

        #[test]
        fn random_bodies_after_valid_prefix(op in 0u8..=0x20, body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut frame = Vec::with_capacity(body.len() + 5);
            frame.extend_from_slice(&((body.len() + 1) as u32).to_le_bytes());
            frame.push(op);
            frame.extend_from_slice(&body);
            decode_all(&frame, MAX_FRAME);
        }
    }

    #[test]
    fn responses_round_trip() {
        let cases = [
            Response::HelloOk,
            Response::Ok,
            Response::Value(b"abc"),
            Response::Integer(-5),
            Response::Bool(true),
            Response::Count(7),
            Response::TimedOut {
                missing: vec!["a", "b"],
            },
            Response::Error {
                kind: ErrorKind::Auth,
                message: "nope",
            },
        ];
        for resp in cases {
            let mut buf = Vec::new();
            encode_response(&mut buf, &resp);
            let (body, used) = split_frame(&buf, MAX_FRAME).unwrap().unwrap();
            assert_eq!(used, buf.len());
            assert_eq!(parse_response(body).unwrap(), resp);
        }
    }

    #[test]
    fn oversized_and_forged_lengths_are_errors() {
        let mut frame = (MAX_HELLO_FRAME as u32 + 1).to_le_bytes().to_vec();
        frame.push(op::HELLO);
        assert!(decode_request(&frame, MAX_HELLO_FRAME).is_err());
        // A key list claiming 2^32-1 keys in a small frame.
        let body = [&[op::CHECK][..], &u32::MAX.to_le_bytes()].concat();
        assert!(parse_request(&body).unwrap_err().0.contains("does not fit"));
        let body = [&[op::SET][..], &(WIRE_KEY_LEN as u32 + 1).to_le_bytes()].concat();
        assert!(
            parse_request(&body)
                .unwrap_err()
                .0
                .contains("exceeds the limit")
        );
    }

    #[test]
    fn timeouts_round_up() {
        use std::time::Duration;
        assert_eq!(timeout_to_ms(Duration::ZERO), 0);
        assert_eq!(timeout_to_ms(Duration::from_nanos(1)), 1);
        assert_eq!(timeout_to_ms(Duration::from_micros(1500)), 2);
        assert_eq!(timeout_to_ms(Duration::from_secs(3)), 3000);
    }
}
