//! Encoding of arguments, results and RRef values (postcard), with the context
//! RRefs need while they are encoded (the destination, to fork them) and decoded
//! (the forks the message brought).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::Agent;
use crate::rref::Handle;
use crate::wire::{ForkData, Id};
use crate::{Error, Result};

thread_local! {
    /// The message of the last custom serde error raised by this crate (postcard
    /// keeps only "custom error"; this keeps the words).
    static LAST_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
    static ENCODERS: RefCell<Vec<EncodeCtx>> = const { RefCell::new(Vec::new()) };
    static DECODERS: RefCell<Vec<Arrivals>> = const { RefCell::new(Vec::new()) };
}

/// A deserialization error carrying `msg` (kept for the decoder's error).
pub(crate) fn de_error<E: serde::de::Error>(msg: impl Display) -> E {
    let m = msg.to_string();
    LAST_MESSAGE.with(|l| *l.borrow_mut() = Some(m.clone()));
    E::custom(m)
}

/// A serialization error carrying `msg`.
pub(crate) fn ser_error<E: serde::ser::Error>(msg: impl Display) -> E {
    let m = msg.to_string();
    LAST_MESSAGE.with(|l| *l.borrow_mut() = Some(m.clone()));
    E::custom(m)
}

fn take_message(e: &postcard::Error) -> String {
    LAST_MESSAGE
        .with(|l| l.borrow_mut().take())
        .unwrap_or_else(|| e.to_string())
}

/// Where an encoded value goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// In a message to this rank: RRefs in it are forked to that rank.
    Worker(usize),
    /// Into an RRef's value on its owner: RRefs are not allowed.
    Value,
}

/// The RRef context of an encoding in progress.
pub(crate) struct EncodeCtx {
    pub agent: Arc<Agent>,
    pub target: Target,
    pub forks: Vec<ForkData>,
    pub error: Option<Error>,
}

/// The RRefs a message brought, by fork id, waiting to be claimed by decoding.
#[derive(Default)]
pub(crate) struct Arrivals(pub HashMap<Id, Arc<Handle>>);

/// An encoded value and the RRef forks it carries.
pub(crate) struct Encoded {
    pub bytes: Vec<u8>,
    pub forks: Vec<ForkData>,
}

/// Runs `f` on the innermost encoding context, if an encoding is in progress.
pub(crate) fn with_encoder<R>(f: impl FnOnce(&mut EncodeCtx) -> R) -> Option<R> {
    ENCODERS.with(|e| e.borrow_mut().last_mut().map(f))
}

/// Takes the RRef handle of fork `fork` from the innermost decoding context.
pub(crate) fn take_arrival(fork: Id) -> std::result::Result<Arc<Handle>, String> {
    DECODERS.with(|d| match d.borrow_mut().last_mut() {
        None => Err("an RRef can only be decoded from an RPC message".to_string()),
        Some(a) => {
            a.0.remove(&fork)
                .ok_or_else(|| format!("fork {fork} is not among the RRefs this message carries"))
        }
    })
}

/// Encodes `value` for `target`. RRefs inside are forked; on failure the forks are
/// rolled back and the error names `what`.
pub(crate) fn encode<A: Serialize + ?Sized>(
    agent: &Arc<Agent>,
    target: Target,
    value: &A,
    what: &dyn Fn() -> String,
) -> Result<Encoded> {
    ENCODERS.with(|e| {
        e.borrow_mut().push(EncodeCtx {
            agent: agent.clone(),
            target,
            forks: Vec::new(),
            error: None,
        })
    });
    LAST_MESSAGE.with(|l| l.borrow_mut().take());
    let r = postcard::to_stdvec(value);
    let ctx = ENCODERS.with(|e| e.borrow_mut().pop());
    let Some(ctx) = ctx else {
        return Err(Error::Protocol("encoding context lost".into()));
    };
    match r {
        Ok(bytes) => Ok(Encoded {
            bytes,
            forks: ctx.forks,
        }),
        Err(e) => {
            let message = take_message(&e);
            if let Target::Worker(dest) = target {
                agent.rollback_forks(&ctx.forks, dest);
            }
            Err(ctx.error.unwrap_or_else(|| Error::Encode {
                what: what(),
                message,
            }))
        }
    }
}

/// Decodes a `T` from `bytes`, letting RRefs claim the handles in `arrivals`; the
/// whole input must be used. Handles nobody claimed are released when this returns.
pub(crate) fn decode<T: DeserializeOwned>(
    arrivals: Arrivals,
    bytes: &[u8],
) -> std::result::Result<T, String> {
    DECODERS.with(|d| d.borrow_mut().push(arrivals));
    LAST_MESSAGE.with(|l| l.borrow_mut().take());
    let r = postcard::take_from_bytes::<T>(bytes);
    let leftover = DECODERS.with(|d| d.borrow_mut().pop());
    drop(leftover);
    match r {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(format!(
            "{} bytes left over after decoding a {}: the value was encoded from another type",
            rest.len(),
            std::any::type_name::<T>()
        )),
        Err(e) => Err(format!(
            "as {}: {}",
            std::any::type_name::<T>(),
            take_message(&e)
        )),
    }
}
