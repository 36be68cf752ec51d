//! The point-to-point wire protocol on a ring (or a bridged link), one record per
//! message step:
//!
//! | kind | words | payload | meaning |
//! |---|---|---|---|
//! | `EAGER` | tag, length, message id | the data | a small message, sent without asking |
//! | `RTS` | tag, length, message id, buffer address | - | a large message is ready (request to send); with an address, the receiver may read it straight from the sender's memory |
//! | `CTS` | message id, status, receiver's length | - | the receiver matched it: send (or refuse) |
//! | `DATA` | message id, offset | a piece | a piece of a large message |
//! | `FIN` | message id, status | - | the receiver read the message itself (single copy): the send is done (or failed) |
//!
//! Small messages travel eagerly and wait in the receiver's unexpected queue if no
//! receive is posted yet; large ones wait in the sender's memory until a receive
//! matches, so a large message nobody receives costs nothing but its RTS. Between ranks
//! of one host that may read each other's memory (threads, or processes that allow
//! `process_vm_readv`), the receiver copies a large message once, straight from the
//! sender's buffer into its own, and answers FIN; else it answers CTS and the sender
//! streams DATA through the ring (two copies). Records of
//! one direction arrive in order, so messages between two ranks with equal tags are
//! received in the order they were sent.

pub(crate) const EAGER: u32 = 1;
pub(crate) const RTS: u32 = 2;
pub(crate) const CTS: u32 = 3;
pub(crate) const DATA: u32 = 4;
pub(crate) const FIN: u32 = 5;

/// CTS status: go ahead.
pub(crate) const CTS_GO: u64 = 0;
/// CTS status: the receive expects another length; the send fails.
pub(crate) const CTS_REFUSE: u64 = 1;
