//! The point-to-point wire protocol on a ring (or a bridged link), one record per
//! message step:
//!
//! | kind | words | payload | meaning |
//! |---|---|---|---|
//! | `EAGER` | tag, length, message id | the data | a small message, sent without asking |
//! | `RTS` | tag, length, message id | - | a large message is ready (request to send) |
//! | `CTS` | message id, status, receiver's length | - | the receiver matched it: send (or refuse) |
//! | `DATA` | message id, offset | a piece | a piece of a large message |
//!
//! Small messages travel eagerly and wait in the receiver's unexpected queue if no
//! receive is posted yet; large ones wait in the sender's memory until a receive
//! matches, so a large message nobody receives costs nothing but its RTS. Records of
//! one direction arrive in order, so messages between two ranks with equal tags are
//! received in the order they were sent.

pub(crate) const EAGER: u32 = 1;
pub(crate) const RTS: u32 = 2;
pub(crate) const CTS: u32 = 3;
pub(crate) const DATA: u32 = 4;

/// CTS status: go ahead.
pub(crate) const CTS_GO: u64 = 0;
/// CTS status: the receive expects another length; the send fails.
pub(crate) const CTS_REFUSE: u64 = 1;
