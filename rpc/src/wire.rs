//! The RPC wire protocol: frames over TCP.
//!
//! A frame is `[u32 header length][u64 body length][header][body]` (little endian).
//! The header is a postcard-encoded [`Frame`]; the body is raw bytes (encoded
//! arguments, results or RRef values) that are never re-encoded. A connection
//! starts with `Hello` (the connecting worker's rank and the secret the listening
//! worker published in the store) answered by `HelloOk` or `HelloReject`; then the
//! connecting side sends requests and the listening side answers each with a
//! response carrying the request's id. Malformed input closes that connection only.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};

use serde::{Deserialize, Serialize};

use crate::MessageType;

/// Protocol version, checked at `Hello`.
pub(crate) const VERSION: u32 = 1;

/// The largest header accepted (function names and fork lists are small).
pub(crate) const MAX_HEADER: usize = 1 << 20;

/// An id unique in the job: the worker that made it and a counter of that worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Id {
    pub worker: u32,
    pub seq: u64,
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.worker, self.seq)
    }
}

/// What a worker needs to use an RRef it receives: sent in the header of the
/// message that carries the RRef (the body holds only the fork id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ForkData {
    /// The owner's rank.
    pub owner: u32,
    /// The RRef.
    pub rref: Id,
    /// The new fork (the receiver's reference).
    pub fork: Id,
    /// The rank that sent it (and holds its own reference until the child accepts).
    pub parent: u32,
}

/// A request's kind and parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum RequestKind {
    /// Run `func` on the body (the arguments), reply with the result.
    Call { func: String },
    /// Run `func` and keep the result as RRef `rref` on this worker; `fork` is the
    /// creator's reference (none when the creator is the owner).
    RemoteCall {
        func: String,
        rref: Id,
        fork: Option<Id>,
    },
    /// Reply with the value of RRef `rref`.
    Fetch { rref: Id },
    /// The sender holds fork `fork` of RRef `rref` (it got it from a non-owner).
    ForkRequest { rref: Id, fork: Id },
    /// The owner knows fork `fork`, which this worker (its parent) sent.
    ChildAccept { fork: Id },
    /// The sender released fork `fork` of RRef `rref`.
    UserDelete { rref: Id, fork: Id },
    /// The sender leaves (graceful shutdown) and holds no reference any more.
    Cleanup,
}

impl RequestKind {
    pub(crate) fn message_type(&self) -> MessageType {
        match self {
            RequestKind::Call { .. } => MessageType::Call,
            RequestKind::RemoteCall { .. } => MessageType::RemoteCall,
            RequestKind::Fetch { .. } => MessageType::RRefFetch,
            RequestKind::ForkRequest { .. } => MessageType::RRefForkRequest,
            RequestKind::ChildAccept { .. } => MessageType::RRefChildAccept,
            RequestKind::UserDelete { .. } => MessageType::RRefUserDelete,
            RequestKind::Cleanup => MessageType::Cleanup,
        }
    }

    /// How error messages name the request.
    pub(crate) fn describe(&self) -> String {
        match self {
            RequestKind::Call { func } => format!("call {func:?}"),
            RequestKind::RemoteCall { func, rref, .. } => {
                format!("remote call {func:?} (creating RRef {rref})")
            }
            RequestKind::Fetch { rref } => format!("rref fetch of RRef {rref}"),
            RequestKind::ForkRequest { rref, fork } => {
                format!("rref fork request (RRef {rref}, fork {fork})")
            }
            RequestKind::ChildAccept { fork } => format!("rref child accept (fork {fork})"),
            RequestKind::UserDelete { rref, fork } => {
                format!("rref user delete (RRef {rref}, fork {fork})")
            }
            RequestKind::Cleanup => "cleanup".to_string(),
        }
    }
}

/// An error a worker sends back instead of a result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum WireError {
    UnknownFunction {
        func: String,
        registered: String,
    },
    BadArguments {
        func: String,
        message: String,
    },
    Failed {
        func: String,
        message: String,
    },
    UnknownRRef {
        rref: Id,
    },
    /// The RRef's creation failed on the owner: function `func` failed with
    /// `message`.
    CreationFailed {
        rref: Id,
        func: String,
        message: String,
    },
    ShuttingDown,
    /// The reply would exceed the callee's message size limit.
    ReplyTooLarge {
        size: u64,
        max: u64,
    },
    Other(String),
}

/// A frame's header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    Hello {
        version: u32,
        from: u32,
        secret: [u64; 2],
    },
    HelloOk,
    HelloReject {
        reason: String,
    },
    Request {
        id: u64,
        kind: RequestKind,
        forks: Vec<ForkData>,
    },
    Response {
        id: u64,
        result: Result<Vec<ForkData>, WireError>,
    },
}

/// Encodes a header.
pub(crate) fn encode_header(frame: &Frame) -> Vec<u8> {
    // Encoding plain enums, strings and integers into a Vec cannot fail.
    postcard::to_stdvec(frame).unwrap_or_default()
}

/// Writes one frame (header and body) with as few syscalls as the kernel allows.
pub(crate) fn write_frame(w: &mut impl Write, header: &[u8], body: &[u8]) -> io::Result<()> {
    let mut prefix = [0u8; 12];
    prefix[..4].copy_from_slice(&(header.len() as u32).to_le_bytes());
    prefix[4..].copy_from_slice(&(body.len() as u64).to_le_bytes());
    let mut bufs = [
        IoSlice::new(&prefix),
        IoSlice::new(header),
        IoSlice::new(body),
    ];
    let mut slices: &mut [IoSlice<'_>] = &mut bufs;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "socket closed")),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Why reading a frame failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection between frames.
    Closed,
    Io(io::Error),
    /// The peer sent something this protocol does not allow.
    Malformed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => f.write_str("closed by the peer"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Malformed(m) => write!(f, "malformed frame: {m}"),
        }
    }
}

/// Reads one frame; `max_body` bounds the body.
pub(crate) fn read_frame(
    r: &mut impl Read,
    max_body: usize,
) -> Result<(Frame, Vec<u8>), ReadError> {
    let mut prefix = [0u8; 12];
    // A clean close is EOF before the first byte of a frame.
    let mut got = 0;
    while got < prefix.len() {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Err(ReadError::Closed),
            Ok(0) => {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a frame",
                )));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let hlen = u32::from_le_bytes(prefix[..4].try_into().unwrap_or_default()) as usize;
    let blen = u64::from_le_bytes(prefix[4..].try_into().unwrap_or_default());
    if hlen == 0 || hlen > MAX_HEADER {
        return Err(ReadError::Malformed(format!(
            "header of {hlen} bytes (at most {MAX_HEADER})"
        )));
    }
    if blen > max_body as u64 {
        return Err(ReadError::Malformed(format!(
            "body of {blen} bytes exceeds the limit of {max_body}"
        )));
    }
    let mut header = vec![0u8; hlen];
    r.read_exact(&mut header).map_err(ReadError::Io)?;
    let mut body = vec![0u8; blen as usize];
    r.read_exact(&mut body).map_err(ReadError::Io)?;
    let frame = match postcard::take_from_bytes::<Frame>(&header) {
        Ok((f, [])) => f,
        Ok((_, rest)) => {
            return Err(ReadError::Malformed(format!(
                "{} trailing bytes after the header",
                rest.len()
            )));
        }
        Err(e) => return Err(ReadError::Malformed(format!("undecodable header: {e}"))),
    };
    Ok((frame, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frame = Frame::Request {
            id: 7,
            kind: RequestKind::RemoteCall {
                func: "f".into(),
                rref: Id { worker: 1, seq: 2 },
                fork: Some(Id { worker: 1, seq: 3 }),
            },
            forks: vec![ForkData {
                owner: 2,
                rref: Id { worker: 0, seq: 9 },
                fork: Id { worker: 1, seq: 4 },
                parent: 1,
            }],
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &encode_header(&frame), b"body").unwrap();
        let (back, body) = read_frame(&mut buf.as_slice(), 1 << 20).unwrap();
        assert_eq!(body, b"body");
        assert!(matches!(back, Frame::Request { id: 7, .. }));
    }

    #[test]
    fn bad_frames_are_refused_with_reasons() {
        assert!(matches!(
            read_frame(&mut [].as_slice(), 10),
            Err(ReadError::Closed)
        ));
        let mut big = Vec::new();
        write_frame(&mut big, &encode_header(&Frame::HelloOk), &[0u8; 100]).unwrap();
        let e = read_frame(&mut big.as_slice(), 99).unwrap_err();
        assert!(
            e.to_string()
                .contains("body of 100 bytes exceeds the limit of 99"),
            "{e}"
        );
        let mut junk = Vec::new();
        write_frame(&mut junk, &[0xff; 8], b"").unwrap();
        let e = read_frame(&mut junk.as_slice(), 99).unwrap_err();
        assert!(e.to_string().contains("undecodable header"), "{e}");
        let e = read_frame(&mut [5u8, 0, 0].as_slice(), 99).unwrap_err();
        assert!(e.to_string().contains("middle of a frame"), "{e}");
    }
}
