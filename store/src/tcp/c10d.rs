//! c10d's TCPStore wire protocol (torch.distributed), as torch 2.x clients and
//! servers speak it (`TCPStore.cpp`, `TCPStoreBackend.hpp`, `TCPStoreLibUvBackend.cpp`).
//!
//! There are no frames: a request is a query-type byte followed by its fields, all
//! integers in the host's byte order (little-endian on every platform tutti runs on),
//! strings and byte vectors as `len:u64` followed by the bytes, key lists as
//! `count:u64` (`count:i64` for `MULTI_SET`) followed by the keys. A connection starts
//! with `VALIDATE magic:u32` (no reply) and then, from torch 2.4 on, `PING nonce:u32`
//! (answered by the nonce). Replies carry no type either: each request has a fixed
//! reply shape (see [`Request`]), and `SET`, `APPEND`, `MULTI_SET`, `QUEUE_PUSH` and
//! `VALIDATE` have none. `WAIT` and `BARRIER` are answered by `STOP_WAITING` once their
//! keys exist (or the barrier is full); a client whose own timeout expires sends
//! `CANCEL_WAIT`, answered by `WAIT_CANCELED` (possibly after a `STOP_WAITING` that
//! crossed it).
//!
//! The decoder never trusts a length: it checks each against the limits below and the
//! bytes present, so any byte stream yields a request, "incomplete (need at least N
//! bytes)" or an error. The limits are c10d's own (its libuv server refuses the
//! same), plus a bound on one request's total size since this server buffers a
//! request whole before serving it.

use super::protocol::ProtocolError;

/// The magic number of `VALIDATE` (c10d's `validationMagicNumber`).
pub(crate) const VALIDATE_MAGIC: u32 = 0x3C85_F7CE;
/// The longest key accepted from a c10d client (c10d's `MAX_STRING_LEN`).
pub(crate) const MAX_KEY_LEN: usize = 8 * 1024;
/// The largest value accepted from a c10d client (c10d's `MAX_PAYLOAD_LEN`).
pub(crate) const MAX_VALUE_LEN: usize = 8 * 1024 * 1024;
/// The most keys in one request (c10d's `MAX_KEY_COUNT`).
pub(crate) const MAX_KEY_COUNT: u64 = 128 * 1024;
/// The largest request this server buffers (a `MULTI_SET` of many values).
pub(crate) const MAX_REQUEST: usize = 64 << 20;

/// c10d's `QueryType`, in its order.
pub(crate) mod query {
    pub(crate) const VALIDATE: u8 = 0;
    pub(crate) const SET: u8 = 1;
    pub(crate) const COMPARE_SET: u8 = 2;
    pub(crate) const GET: u8 = 3;
    pub(crate) const ADD: u8 = 4;
    pub(crate) const CHECK: u8 = 5;
    pub(crate) const WAIT: u8 = 6;
    pub(crate) const GETNUMKEYS: u8 = 7;
    pub(crate) const DELETE_KEY: u8 = 8;
    pub(crate) const APPEND: u8 = 9;
    pub(crate) const MULTI_GET: u8 = 10;
    pub(crate) const MULTI_SET: u8 = 11;
    pub(crate) const CANCEL_WAIT: u8 = 12;
    pub(crate) const PING: u8 = 13;
    pub(crate) const QUEUE_PUSH: u8 = 14;
    pub(crate) const QUEUE_POP: u8 = 15;
    pub(crate) const QUEUE_LEN: u8 = 16;
    pub(crate) const LIST_KEYS: u8 = 17;
    pub(crate) const BARRIER: u8 = 18;
}

/// c10d's `CheckResponseType::READY`.
pub(crate) const CHECK_READY: u8 = 0;
/// c10d's `CheckResponseType::NOT_READY`.
pub(crate) const CHECK_NOT_READY: u8 = 1;
/// c10d's `WaitResponseType::STOP_WAITING`.
pub(crate) const STOP_WAITING: u8 = 0;
/// c10d's `WaitResponseType::WAIT_CANCELED`.
pub(crate) const WAIT_CANCELED: u8 = 1;

/// A c10d request, borrowing from the read buffer. The comment on each variant is
/// its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// None.
    Validate { magic: u32 },
    /// `nonce:u32`.
    Ping { nonce: u32 },
    /// None.
    Set { key: &'a str, value: &'a [u8] },
    /// The resulting value (`len:u64` + bytes).
    CompareSet {
        key: &'a str,
        expected: &'a [u8],
        desired: &'a [u8],
    },
    /// The value, empty when missing (clients `WAIT` first).
    Get { key: &'a str },
    /// The new value, `i64`.
    Add { key: &'a str, delta: i64 },
    /// `READY` or `NOT_READY`, one byte.
    Check { keys: Vec<&'a str> },
    /// `STOP_WAITING` once every key exists.
    Wait { keys: Vec<&'a str> },
    /// The number of keys, `i64`.
    GetNumKeys,
    /// The number of keys deleted (0 or 1), `i64`.
    DeleteKey { key: &'a str },
    /// None.
    Append { key: &'a str, value: &'a [u8] },
    /// One value per key (empty when missing).
    MultiGet { keys: Vec<&'a str> },
    /// None.
    MultiSet { pairs: Vec<(&'a str, &'a [u8])> },
    /// `WAIT_CANCELED`.
    CancelWait,
    /// None.
    QueuePush { key: &'a str, value: &'a [u8] },
    /// The queue's length before the pop (`i64`), then the value if it was not 0.
    QueuePop { key: &'a str },
    /// The queue's length, `i64`.
    QueueLen { key: &'a str },
    /// `count:i64`, then each key as a string.
    ListKeys,
    /// `STOP_WAITING` once `world_size` clients arrived.
    Barrier { key: &'a str, world_size: i64 },
}

/// The outcome of decoding the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A request and the bytes it spans.
    Request(Request<'a>, usize),
    /// The buffer holds part of a request; it needs at least this many bytes.
    Incomplete(usize),
}

/// Why a cursor stopped.
enum Stop {
    Incomplete(usize),
    Bad(ProtocolError),
}

impl From<ProtocolError> for Stop {
    fn from(e: ProtocolError) -> Self {
        Stop::Bad(e)
    }
}

fn bad(msg: impl Into<String>) -> Stop {
    Stop::Bad(ProtocolError(msg.into()))
}

/// A cursor that reports how many bytes a request needs when the buffer is short.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let end = self.pos.saturating_add(n);
        if end > MAX_REQUEST {
            return Err(bad(format!(
                "request of at least {end} bytes exceeds the limit of {MAX_REQUEST} bytes"
            )));
        }
        let Some(bytes) = self.buf.get(self.pos..end) else {
            return Err(Stop::Incomplete(end));
        };
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, Stop> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self, max: usize, what: &str) -> Result<&'a [u8], Stop> {
        let len = self.u64()?;
        if len > max as u64 {
            return Err(bad(format!(
                "{what} of {len} bytes exceeds the limit of {max} bytes"
            )));
        }
        self.take(len as usize)
    }

    fn key(&mut self) -> Result<&'a str, Stop> {
        let key = self.bytes(MAX_KEY_LEN, "key")?;
        std::str::from_utf8(key).map_err(|_| bad("key is not UTF-8"))
    }

    fn value(&mut self) -> Result<&'a [u8], Stop> {
        self.bytes(MAX_VALUE_LEN, "value")
    }

    fn count(&mut self, what: &str) -> Result<u64, Stop> {
        let n = self.u64()?;
        if n > MAX_KEY_COUNT {
            return Err(bad(format!(
                "{what} of {n} keys exceeds the limit of {MAX_KEY_COUNT} keys"
            )));
        }
        Ok(n)
    }

    fn keys(&mut self, what: &str) -> Result<Vec<&'a str>, Stop> {
        let n = self.count(what)?;
        // No capacity from the count: the bytes present bound the allocation.
        let mut keys = Vec::new();
        for _ in 0..n {
            keys.push(self.key()?);
        }
        Ok(keys)
    }
}

/// Decodes the first request in `buf`.
pub(crate) fn decode_request(buf: &[u8]) -> Result<Decoded<'_>, ProtocolError> {
    let mut c = Cursor { buf, pos: 0 };
    match parse(&mut c) {
        Ok(req) => Ok(Decoded::Request(req, c.pos)),
        Err(Stop::Incomplete(need)) => Ok(Decoded::Incomplete(need)),
        Err(Stop::Bad(e)) => Err(e),
    }
}

fn parse<'a>(c: &mut Cursor<'a>) -> Result<Request<'a>, Stop> {
    let op = c.take(1)?[0];
    Ok(match op {
        query::VALIDATE => Request::Validate { magic: c.u32()? },
        query::PING => Request::Ping { nonce: c.u32()? },
        query::SET => Request::Set {
            key: c.key()?,
            value: c.value()?,
        },
        query::COMPARE_SET => Request::CompareSet {
            key: c.key()?,
            expected: c.value()?,
            desired: c.value()?,
        },
        query::GET => Request::Get { key: c.key()? },
        query::ADD => Request::Add {
            key: c.key()?,
            delta: c.i64()?,
        },
        query::CHECK => Request::Check {
            keys: c.keys("CHECK")?,
        },
        query::WAIT => Request::Wait {
            keys: c.keys("WAIT")?,
        },
        query::GETNUMKEYS => Request::GetNumKeys,
        query::DELETE_KEY => Request::DeleteKey { key: c.key()? },
        query::APPEND => Request::Append {
            key: c.key()?,
            value: c.value()?,
        },
        query::MULTI_GET => Request::MultiGet {
            keys: c.keys("MULTI_GET")?,
        },
        query::MULTI_SET => {
            // c10d sends this count as an i64; a negative one reads as huge here.
            let n = c.count("MULTI_SET")?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                pairs.push((c.key()?, c.value()?));
            }
            Request::MultiSet { pairs }
        }
        query::CANCEL_WAIT => Request::CancelWait,
        query::QUEUE_PUSH => Request::QueuePush {
            key: c.key()?,
            value: c.value()?,
        },
        query::QUEUE_POP => Request::QueuePop { key: c.key()? },
        query::QUEUE_LEN => Request::QueueLen { key: c.key()? },
        query::LIST_KEYS => Request::ListKeys,
        query::BARRIER => Request::Barrier {
            key: c.key()?,
            world_size: c.i64()?,
        },
        other => return Err(bad(format!("unknown c10d query type {other}"))),
    })
}

/// Appends c10d fields to a buffer (requests on the client, replies on the server).
pub(crate) struct Writer<'b>(pub(crate) &'b mut Vec<u8>);

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// `len:u64` and the bytes (c10d's strings and byte vectors alike).
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    /// `count:u64` and the keys.
    pub(crate) fn keys<K: AsRef<str>>(&mut self, keys: &[K]) -> &mut Self {
        self.u64(keys.len() as u64);
        for k in keys {
            self.bytes(k.as_ref().as_bytes());
        }
        self
    }
}

/// What the first bytes of a connection say about its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detected {
    /// Not enough bytes yet.
    Unknown,
    /// tutti's protocol: a frame length no larger than a hello.
    Tutti,
    /// c10d's: `VALIDATE` with the right magic.
    C10d,
    /// c10d's `VALIDATE` with a wrong magic (when all of it arrived).
    C10dBadMagic(Option<u32>),
    /// Neither.
    Garbage,
}

/// Tells the two protocols apart from a connection's first bytes: c10d's
/// `VALIDATE` is `0x00` followed by the magic `0x3C85F7CE`; tutti's hello frame
/// starts with its length (little-endian u32), at most `max_hello` bytes. Decides as
/// soon as the bytes present rule one out (five bytes always decide).
pub(crate) fn detect(buf: &[u8], max_hello: usize) -> Detected {
    let mut validate = [query::VALIDATE, 0, 0, 0, 0];
    validate[1..].copy_from_slice(&VALIDATE_MAGIC.to_le_bytes());
    let n = buf.len().min(5);
    if n == 0 {
        return Detected::Unknown;
    }
    let c10d_possible = buf[..n] == validate[..n];
    // A hello is shorter than 64 KiB: its length's two high bytes are zero, and the
    // two low ones (once both arrived) must give 1..=max_hello.
    debug_assert!(max_hello < 1 << 16);
    let tutti_possible = n == 1
        || ((1..=max_hello).contains(&(usize::from(buf[0]) | usize::from(buf[1]) << 8))
            && buf[2..n.min(4)].iter().all(|&b| b == 0));
    match (c10d_possible, tutti_possible) {
        (true, _) if n == 5 => Detected::C10d,
        (false, true) if n >= 4 => Detected::Tutti,
        (true, _) | (false, true) => Detected::Unknown,
        (false, false) if buf[0] == query::VALIDATE => Detected::C10dBadMagic(
            buf.get(1..5)
                .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]])),
        ),
        (false, false) => Detected::Garbage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate(magic: u32) -> Vec<u8> {
        let mut b = Vec::new();
        Writer(&mut b).u8(query::VALIDATE).u32(magic);
        b
    }

    #[test]
    fn detects_protocols() {
        assert_eq!(detect(&validate(VALIDATE_MAGIC), 1035), Detected::C10d);
        assert_eq!(
            detect(&validate(0xdead_beef), 1035),
            Detected::C10dBadMagic(Some(0xdead_beef))
        );
        // Decided before five bytes when they rule both out.
        assert_eq!(detect(&[0, 0, 0, 0], 1035), Detected::C10dBadMagic(None));
        assert_eq!(detect(&[0x99, 0x99], 1035), Detected::Garbage);
        assert_eq!(detect(&[0, 0xce], 1035), Detected::Unknown);
        assert_eq!(detect(&[11, 0, 0], 1035), Detected::Unknown);
        // A tutti hello frame of 256 bytes also starts with a zero byte.
        assert_eq!(detect(&[0, 1, 0, 0, 1], 1035), Detected::Tutti);
        assert_eq!(detect(&[11, 0, 0, 0, 1], 1035), Detected::Tutti);
        assert_eq!(detect(&[11, 0, 0, 0], 1035), Detected::Tutti);
        assert_eq!(detect(&[0xff; 5], 1035), Detected::Garbage);
    }

    #[test]
    fn decodes_every_request_and_reports_what_is_missing() {
        let mut b = Vec::new();
        Writer(&mut b)
            .u8(query::COMPARE_SET)
            .bytes(b"/k")
            .bytes(b"old")
            .bytes(b"new");
        for cut in 0..b.len() {
            match decode_request(&b[..cut]).unwrap() {
                Decoded::Incomplete(need) => assert!(need > cut && need <= b.len()),
                other => panic!("{cut}: {other:?}"),
            }
        }
        assert_eq!(
            decode_request(&b).unwrap(),
            Decoded::Request(
                Request::CompareSet {
                    key: "/k",
                    expected: b"old",
                    desired: b"new"
                },
                b.len()
            )
        );
        let mut b = Vec::new();
        Writer(&mut b).u8(query::MULTI_SET).u64(2);
        Writer(&mut b)
            .bytes(b"a")
            .bytes(b"1")
            .bytes(b"b")
            .bytes(b"");
        let Decoded::Request(Request::MultiSet { pairs }, used) = decode_request(&b).unwrap()
        else {
            panic!()
        };
        assert_eq!(used, b.len());
        assert_eq!(pairs, vec![("a", &b"1"[..]), ("b", &b""[..])]);
    }

    #[test]
    fn refuses_oversized_fields() {
        let mut b = Vec::new();
        Writer(&mut b).u8(query::GET).u64(MAX_KEY_LEN as u64 + 1);
        assert!(decode_request(&b).unwrap_err().0.contains("key of"));
        let mut b = Vec::new();
        Writer(&mut b)
            .u8(query::SET)
            .bytes(b"k")
            .u64(MAX_VALUE_LEN as u64 + 1);
        assert!(decode_request(&b).unwrap_err().0.contains("value of"));
        let mut b = Vec::new();
        Writer(&mut b).u8(query::WAIT).u64(MAX_KEY_COUNT + 1);
        assert!(decode_request(&b).unwrap_err().0.contains("keys exceeds"));
        // Many maximal values: refused once the request passes the total bound.
        let mut b = Vec::new();
        Writer(&mut b).u8(query::MULTI_SET).u64(100);
        for _ in 0..9 {
            Writer(&mut b).bytes(b"k").u64(MAX_VALUE_LEN as u64);
            b.resize(b.len() + MAX_VALUE_LEN, 0);
        }
        assert!(decode_request(&b).unwrap_err().0.contains("request of"));
        assert!(
            decode_request(&[99])
                .unwrap_err()
                .0
                .contains("unknown c10d query type 99")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut rest = &bytes[..];
            while let Ok(Decoded::Request(_, used)) = decode_request(rest) {
                prop_assert!(used >= 1 && used <= rest.len());
                rest = &rest[used..];
            }
            let _ = detect(&bytes, 1035);
        }

        #[test]
        fn valid_prefix_then_random_fields(op in 0u8..=20, body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut b = vec![op];
            b.extend_from_slice(&body);
            if let Ok(Decoded::Incomplete(need)) = decode_request(&b) {
                prop_assert!(need > b.len());
            }
        }
    }
}
