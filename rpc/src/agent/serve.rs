//! Serving requests: running functions on the pool, answering RRef fetches, and
//! the reference-counting messages.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Agent, IN_HANDLER, STOPPED};
use crate::codec::{Arrivals, Target};
use crate::functions::{CallContext, HandlerError};
use crate::wire::{ForkData, Frame, RequestKind, WireError, encode_header};

/// Where a request came from, so the reply goes back there.
#[derive(Clone)]
pub(crate) enum Source {
    /// This worker called itself.
    Local,
    /// Over this connection.
    Remote(Arc<super::Conn>),
}

pub(crate) type Answer = Result<(Vec<u8>, Vec<ForkData>), WireError>;

impl Agent {
    /// A request arrived from `from` (or from this worker itself).
    pub(crate) fn on_request(
        self: &Arc<Self>,
        src: Source,
        from: usize,
        id: u64,
        kind: RequestKind,
        forks: Vec<ForkData>,
        body: Vec<u8>,
    ) {
        self.stats.active.fetch_add(1, Ordering::SeqCst);
        if self.state.load(Ordering::SeqCst) == STOPPED {
            self.reply(src, id, Err(WireError::ShuttingDown));
            return;
        }
        let arrivals = self.accept_forks(from, &forks, false);
        match kind {
            RequestKind::Call { func } => {
                let inline = self.functions.get(&func).is_some_and(|e| e.inline);
                let agent = self.clone();
                let job = move || {
                    let answer =
                        agent.run_function(from, &func, &body, arrivals, Target::Worker(from));
                    agent.reply(src, id, answer);
                };
                if inline {
                    job();
                } else {
                    self.run_on_pool(id, job);
                }
            }
            RequestKind::RemoteCall { func, rref, fork } => {
                self.owner_begin_create(rref, fork.map(|f| (f, from as u32)));
                let agent = self.clone();
                let job = move || {
                    let answer = agent.run_function(from, &func, &body, arrivals, Target::Value);
                    let value = match answer {
                        Ok((bytes, _)) => Ok(bytes),
                        Err(e) => Err(e),
                    };
                    let ack = agent.owner_finish_create(rref, &func, value);
                    agent.reply(src, id, ack);
                };
                self.run_on_pool(id, job);
            }
            RequestKind::Fetch { rref } => {
                if let Some(answer) = self.owner_fetch(rref, &src, id) {
                    let agent = self.clone();
                    self.run_on_pool(id, move || agent.reply(src, id, answer));
                }
            }
            RequestKind::ForkRequest { rref, fork } => {
                self.owner_add_fork(rref, fork, from as u32);
                self.reply(src, id, Ok((Vec::new(), Vec::new())));
            }
            RequestKind::ChildAccept { fork } => {
                self.child_accepted(fork);
                self.reply(src, id, Ok((Vec::new(), Vec::new())));
            }
            RequestKind::UserDelete { rref, fork } => {
                self.owner_delete_fork(rref, fork, from as u32);
                self.reply(src, id, Ok((Vec::new(), Vec::new())));
            }
            RequestKind::Cleanup => {
                self.peer_left(from);
                self.reply(src, id, Ok((Vec::new(), Vec::new())));
            }
        }
    }

    fn run_on_pool(self: &Arc<Self>, id: u64, job: impl FnOnce() + Send + 'static) {
        if !self.pool.spawn(Box::new(job)) {
            // Stopped: the job (and the reply it owed) is gone.
            let _ = id;
            self.stats.active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Runs function `func` for `from` on this thread.
    fn run_function(
        self: &Arc<Self>,
        from: usize,
        func: &str,
        body: &[u8],
        arrivals: Arrivals,
        target: Target,
    ) -> Answer {
        let Some(f) = self.functions.get(func).map(|e| e.f.clone()) else {
            return Err(WireError::UnknownFunction {
                func: func.to_string(),
                registered: self.functions.names().collect::<Vec<_>>().join(", "),
            });
        };
        let ctx = CallContext {
            agent: self,
            caller: from,
            func,
            arrivals: RefCell::new(Some(arrivals)),
            forks: RefCell::new(Vec::new()),
            target,
        };
        let was = IN_HANDLER.with(|h| h.replace(true));
        let r = catch_unwind(AssertUnwindSafe(|| f(&ctx, body)));
        IN_HANDLER.with(|h| h.set(was));
        let forks = ctx.forks.take();
        // Handles the function did not claim are released with the context.
        drop(ctx);
        match r {
            Ok(Ok(bytes)) => Ok((bytes, forks)),
            Ok(Err(HandlerError::BadArguments(message))) => Err(WireError::BadArguments {
                func: func.to_string(),
                message,
            }),
            Ok(Err(HandlerError::Failed(message))) => Err(WireError::Failed {
                func: func.to_string(),
                message,
            }),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic payload".to_string());
                Err(WireError::Failed {
                    func: func.to_string(),
                    message: format!("panicked: {message}"),
                })
            }
        }
    }

    /// Answers request `id` and marks it served.
    pub(crate) fn reply(self: &Arc<Self>, src: Source, id: u64, answer: Answer) {
        let answer = match answer {
            Ok((body, forks)) if body.len() > self.max_message => {
                let dest = match &src {
                    Source::Local => self.me,
                    Source::Remote(c) => c.peer,
                };
                self.rollback_forks(&forks, dest);
                Err(WireError::ReplyTooLarge {
                    size: body.len() as u64,
                    max: self.max_message as u64,
                })
            }
            other => other,
        };
        match src {
            Source::Local => {
                self.stats.sent.fetch_add(1, Ordering::SeqCst);
                self.stats.recv.fetch_add(1, Ordering::SeqCst);
                let (body, result) = match answer {
                    Ok((body, forks)) => (body, Ok(forks)),
                    Err(e) => (Vec::new(), Err(e)),
                };
                self.on_response(self.me, id, result, body);
            }
            Source::Remote(conn) => {
                let (body, result) = match answer {
                    Ok((body, forks)) => (body, Ok(forks)),
                    Err(e) => (Vec::new(), Err(e)),
                };
                let forks = result.as_ref().ok().cloned().unwrap_or_default();
                let header = encode_header(&Frame::Response { id, result });
                match conn.write(&header, &body) {
                    Ok(()) => {
                        self.stats.sent.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.label(conn.peer), "cannot send a reply: {e}");
                        self.rollback_forks(&forks, conn.peer);
                        conn.close();
                    }
                }
            }
        }
        self.stats.active.fetch_sub(1, Ordering::SeqCst);
    }
}
