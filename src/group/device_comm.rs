//! The group's device state ([`DeviceComm`]): created at a rank's first device
//! collective (collectively, every rank calls the same collectives in the same order),
//! bound to that rank's CUDA device, with one of two paths, the same on every rank:
//!
//! - **window**: every rank shares this host: a CUDA IPC [`DeviceWindow`] and the
//!   `tutti-intra` algorithms run by a [`DeviceExec`] (copies, fold kernels and
//!   stream-ordered flags, all enqueued on the caller's stream);
//! - **staged**: ranks on several hosts (or a link algorithm forced, or
//!   `TUTTI_DEVICE_PATH=staged`, or no device window possible here): device buffers
//!   are copied through pinned host memory, double-buffered, and the host collective
//!   runs on the group's worker thread ([`staging`](crate::gpu::staging)).
//!
//! A watchdog thread follows every enqueued operation through its CUDA event: it
//! retires finished ones, and fails the group when a peer died, the deadline passed,
//! the group was aborted or the stream reported an error; failing releases this rank's
//! stream (host stores into its flags), so that nothing waits forever.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaEvent, CudaStream};
use tutti_intra as intra;
use tutti_transport::window::{Window, WindowConfig, WindowHub};
use tutti_transport::{AbortHandle, Deadline, TransportError};

use super::check::{self, Desc};
use super::links::StoreRendezvous;
use super::options::Algo;
use super::paths::Route;
use super::raw::with_element;
use super::{Inner, ProcessGroup};
use crate::gpu::exec::{DeviceExec, Rounds};
use crate::gpu::staging::{self, Pinned, Pipeline, StageFlags};
use crate::gpu::window::{DeviceWindow, FLAG_BLOCK_BYTES};
use crate::gpu::{self, GpuKernels};
use crate::{DataType, Error, ReduceOp, Result};

use super::device_work::{DeviceWork, WorkState};

/// Default bytes of each of the two device window buffers (`TUTTI_DEVICE_WINDOW_BYTES`).
pub const DEFAULT_DEVICE_WINDOW_BYTES: usize = 32 << 20;
/// Default bytes per chunk of a staged collective (`TUTTI_DEVICE_STAGE_BYTES`).
pub const DEFAULT_STAGE_BYTES: usize = 4 << 20;
/// All-reduces up to this size take the one-shot algorithm on device windows of more
/// than two ranks (two ranks: always one-shot, which moves no more bytes).
const ONE_SHOT_MAX: usize = 256 << 10;
/// How long a dropped group waits for its device operations before giving them up.
const DROP_GRACE: Duration = Duration::from_secs(10);
/// How long a failing rank keeps releasing its stream before it gives up on it.
const RELEASE_LIMIT: Duration = Duration::from_secs(30);

/// A collective on device memory: addresses are device pointers of the comm's
/// context, lengths in elements.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Call {
    AllReduce {
        input: u64,
        output: u64,
        count: usize,
        op: ReduceOp,
    },
    Broadcast {
        buf: u64,
        count: usize,
        root: usize,
    },
    Reduce {
        input: u64,
        output: u64,
        count: usize,
        op: ReduceOp,
        root: usize,
    },
    AllGather {
        input: u64,
        output: u64,
        count: usize,
    },
    ReduceScatter {
        input: u64,
        output: u64,
        count: usize,
        op: ReduceOp,
    },
    AllToAll {
        input: u64,
        output: u64,
        count: usize,
    },
    Gather {
        input: u64,
        output: u64,
        count: usize,
        root: usize,
    },
    Scatter {
        input: u64,
        output: u64,
        count: usize,
        root: usize,
    },
    Barrier,
}

impl Call {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Call::AllReduce { .. } => "all_reduce",
            Call::Broadcast { .. } => "broadcast",
            Call::Reduce { .. } => "reduce",
            Call::AllGather { .. } => "all_gather",
            Call::ReduceScatter { .. } => "reduce_scatter",
            Call::AllToAll { .. } => "all_to_all",
            Call::Gather { .. } => "gather",
            Call::Scatter { .. } => "scatter",
            Call::Barrier => "barrier",
        }
    }

    fn op(&self) -> Option<ReduceOp> {
        match *self {
            Call::AllReduce { op, .. }
            | Call::Reduce { op, .. }
            | Call::ReduceScatter { op, .. } => Some(op),
            _ => None,
        }
    }

    fn desc(&self, dtype: DataType) -> Desc {
        let (count, root) = match *self {
            Call::AllReduce { count, .. }
            | Call::AllGather { count, .. }
            | Call::ReduceScatter { count, .. }
            | Call::AllToAll { count, .. } => (count, None),
            Call::Broadcast { count, root, .. }
            | Call::Reduce { count, root, .. }
            | Call::Gather { count, root, .. }
            | Call::Scatter { count, root, .. } => (count, Some(root)),
            Call::Barrier => (0, None),
        };
        let dtype = (!matches!(self, Call::Barrier)).then_some(dtype);
        Desc::new(dtype, count, root, self.op())
    }
}

/// Whether an all-reduce of `bytes` over `n` device-window ranks takes two-shot.
pub(crate) fn device_two_shot(bytes: usize, n: usize, forced: Option<Algo>) -> bool {
    match forced {
        Some(Algo::TwoShot) => true,
        Some(Algo::OneShot) => false,
        _ => n > 2 && bytes > ONE_SHOT_MAX,
    }
}

/// Which path device collectives take (`TUTTI_DEVICE_PATH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathChoice {
    Auto,
    Window,
    Staged,
}

fn env_bytes(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) if v.trim().is_empty() => Ok(default),
        Ok(v) => {
            let n: usize = v.trim().parse().map_err(|_| {
                Error::InvalidArgument(format!("{name}={v:?}: expected a number of bytes"))
            })?;
            if n == 0 || !n.is_multiple_of(4096) || n > 1 << 30 {
                return Err(Error::InvalidArgument(format!(
                    "{name}={n}: expected a positive multiple of 4096 up to 1 GiB"
                )));
            }
            Ok(n)
        }
    }
}

fn path_choice() -> Result<PathChoice> {
    match std::env::var("TUTTI_DEVICE_PATH")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "auto" => Ok(PathChoice::Auto),
        "window" => Ok(PathChoice::Window),
        "staged" => Ok(PathChoice::Staged),
        other => Err(Error::InvalidArgument(format!(
            "TUTTI_DEVICE_PATH={other:?}: expected auto, window or staged"
        ))),
    }
}

/// How this rank's device collectives run.
pub(crate) enum Path {
    /// Every rank on this host, on device windows.
    Window(Arc<DeviceWindow>),
    /// Through pinned host memory and the host collectives; the reason.
    Staged(String),
}

/// Per rank: the device state, created at the first device collective.
#[derive(Default)]
pub(crate) struct DeviceSlot {
    comm: Mutex<Option<Arc<DeviceComm>>>,
    /// Set-up attempts so far (store keys are unique per attempt).
    attempts: AtomicU64,
}

impl DeviceSlot {
    /// The device state, if a device collective created it.
    pub(crate) fn comm_if_created(&self) -> Option<Arc<DeviceComm>> {
        self.comm.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One pending operation, followed by the watchdog.
struct Pending {
    seq: u64,
    op: &'static str,
    event: Arc<CudaEvent>,
    deadline: Option<Instant>,
    /// The value every peer must post for the operation to finish (window path).
    target: u64,
    work: Arc<WorkState>,
    /// Pinned buffers the operation uses (freed once it retired).
    _keep: Vec<Pinned>,
}

/// What the enqueueing side and the watchdog share.
struct Shared {
    pending: Mutex<VecDeque<Pending>>,
    cv: Condvar,
    failed: Mutex<Option<Arc<Error>>>,
    has_failed: AtomicBool,
    stop: AtomicBool,
    window: Option<Arc<DeviceWindow>>,
    stage_flags: Mutex<Option<Arc<StageFlags>>>,
    /// The largest value this rank's streams wait for on the window.
    max_target: AtomicU64,
    /// The largest staging value enqueued.
    stage_end: AtomicU64,
    abort: AbortHandle,
    group: Weak<Inner>,
    rank: usize,
}

/// State of the enqueueing side.
#[derive(Default)]
struct State {
    rounds: Rounds,
    /// The stream and event of the last operation (ordering across streams).
    last: Option<(usize, Arc<CudaEvent>)>,
    stage_next: u64,
    chunk_bufs: Option<[Pinned; 2]>,
    whole_bufs: Option<[Pinned; 2]>,
}

/// A rank's device collectives state (see the module docs).
pub(crate) struct DeviceComm {
    pub ctx: Arc<CudaContext>,
    pub kernels: Arc<GpuKernels>,
    pub path: Path,
    stage_bytes: usize,
    state: Mutex<State>,
    shared: Arc<Shared>,
    watchdog: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Hubs of flag windows between thread ranks of this process, by group name.
fn flag_hub(name: &str) -> Arc<WindowHub> {
    static HUBS: Mutex<Option<HashMap<String, Arc<WindowHub>>>> = Mutex::new(None);
    let mut g = HUBS.lock().unwrap_or_else(|p| p.into_inner());
    g.get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_default()
        .clone()
}

impl ProcessGroup {
    /// This rank's device state on CUDA device `device`, created collectively at the
    /// first device collective.
    pub(crate) fn device_comm(&self, device: usize) -> Result<Arc<DeviceComm>> {
        let slot = &self.inner.device;
        let mut g = slot.comm.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = g.as_ref() {
            if c.ctx.ordinal() != device {
                return Err(Error::InvalidArgument(format!(
                    "this rank's device collectives in group {} run on CUDA device {}, got memory of device {device} (one device per rank and group, like an NCCL communicator)",
                    self.name(),
                    c.ctx.ordinal()
                )));
            }
            return Ok(c.clone());
        }
        let attempt = slot.attempts.fetch_add(1, Ordering::Relaxed);
        let comm = Arc::new(DeviceComm::create(self, device, attempt)?);
        *g = Some(comm.clone());
        Ok(comm)
    }

    /// The flag window among this host's ranks of the group (shared memory between
    /// processes, heap between threads).
    fn flag_window(&self, prefix: &str, deadline: Deadline) -> Result<Window> {
        let local = &self.inner.local;
        let mut cfg = WindowConfig::from_env(self.inner.local_ranks);
        cfg.data_bytes = FLAG_BLOCK_BYTES;
        cfg.ring_bytes = 16 << 10;
        cfg.abort = self.inner.abort.clone();
        let names: Vec<String> = local
            .members
            .iter()
            .map(|&r| format!("rank {r} of group {}", self.name()))
            .collect();
        let index = local.member_of(self.rank()).unwrap_or(0);
        let setup = |source| Error::Setup {
            rank: self.rank(),
            source,
        };
        match (&self.inner.threads, local.members.len()) {
            (Some(_), n) if n > 1 => flag_hub(self.name())
                .join(prefix, index, &names, &cfg, deadline)
                .map_err(setup),
            (_, 1) => WindowHub::new()
                .join("self", 0, &names, &cfg, deadline)
                .map_err(setup),
            _ => Window::connect(
                &StoreRendezvous(&**self.store()),
                prefix,
                index,
                &names,
                &cfg,
                deadline,
            )
            .map_err(setup),
        }
    }
}

impl DeviceComm {
    fn create(pg: &ProcessGroup, device: usize, attempt: u64) -> Result<DeviceComm> {
        let ctx = gpu::open_device(device)?;
        let kernels = GpuKernels::load(&ctx)?;
        let choice = path_choice()?;
        let data_bytes = env_bytes("TUTTI_DEVICE_WINDOW_BYTES", DEFAULT_DEVICE_WINDOW_BYTES)?;
        let stage_bytes = env_bytes("TUTTI_DEVICE_STAGE_BYTES", DEFAULT_STAGE_BYTES)?;
        let route = {
            let paths = pg.inner.paths.lock().unwrap_or_else(|p| p.into_inner());
            paths.route(pg.size(), pg.inner.opts.algo)
        };
        let deadline = Deadline::after(pg.inner.opts.connect_timeout);
        // Per host (its lowest rank): several hosts' flag windows must not share keys.
        let host = pg.inner.local.members.first().copied().unwrap_or(0);
        let prefix = format!("{}/cuda/{attempt}/host{host}", pg.name());
        let path = match (choice, route) {
            (PathChoice::Staged, _) => Path::Staged("TUTTI_DEVICE_PATH=staged".into()),
            (PathChoice::Window, Route::Links) => {
                return Err(Error::GpuUnavailable(
                    "TUTTI_DEVICE_PATH=window, but the group's ranks are not all on this host (or a link algorithm is forced)".into(),
                ));
            }
            (_, Route::Links) => Path::Staged(
                "ranks on several hosts, or a link algorithm forced (TUTTI_ALGO)".into(),
            ),
            (_, Route::Window) => {
                let flags = Arc::new(pg.flag_window(&format!("{prefix}/flags"), deadline)?);
                match DeviceWindow::connect(
                    &ctx,
                    flags,
                    &StoreRendezvous(&**pg.store()),
                    &prefix,
                    data_bytes,
                    deadline,
                )? {
                    Ok(w) => Path::Window(Arc::new(w)),
                    Err(why) if choice == PathChoice::Window => {
                        return Err(Error::GpuUnavailable(format!(
                            "TUTTI_DEVICE_PATH=window, but no device window: {why}"
                        )));
                    }
                    Err(why) => {
                        tracing::warn!(
                            group = pg.name(),
                            rank = pg.rank(),
                            reason = %why,
                            "no device window between this host's ranks; device collectives stage through host memory"
                        );
                        Path::Staged(format!("no device window: {why}"))
                    }
                }
            }
        };
        tracing::info!(
            group = pg.name(),
            rank = pg.rank(),
            device,
            path = match &path {
                Path::Window(_) => "window".to_string(),
                Path::Staged(why) => format!("staged ({why})"),
            },
            "device collectives ready"
        );
        let shared = Arc::new(Shared {
            pending: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            window: match &path {
                Path::Window(w) => Some(w.clone()),
                Path::Staged(_) => None,
            },
            stage_flags: Mutex::new(None),
            max_target: AtomicU64::new(0),
            stage_end: AtomicU64::new(0),
            abort: pg.inner.abort.clone(),
            group: Arc::downgrade(&pg.inner),
            rank: pg.rank(),
        });
        let watched = shared.clone();
        let watchdog = std::thread::Builder::new()
            .name(format!("tutti-gpu-watch-{}", pg.rank()))
            .spawn(move || watchdog(&watched))
            .map_err(|e| Error::InvalidArgument(format!("starting the device watchdog: {e}")))?;
        Ok(DeviceComm {
            ctx,
            kernels,
            path,
            stage_bytes,
            state: Mutex::new(State::default()),
            shared,
            watchdog: Mutex::new(Some(watchdog)),
        })
    }

    /// `Some(reason)` when device collectives stage through host memory.
    pub(crate) fn staged_reason(&self) -> Option<&str> {
        match &self.path {
            Path::Staged(why) => Some(why),
            Path::Window(_) => None,
        }
    }

    fn check_failed(&self) -> Result<()> {
        if self.shared.has_failed.load(Ordering::Acquire)
            && let Some(e) = self
                .shared
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        {
            return Err(Error::GroupFailed {
                reason: format!("an earlier device collective failed: {e}"),
            });
        }
        Ok(())
    }

    /// Enqueues `call` on `stream` (of this comm's context) and returns its handle.
    /// The arguments were validated by the caller.
    pub(crate) fn submit(
        &self,
        pg: &ProcessGroup,
        call: Call,
        dtype: DataType,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        if stream.context().cu_ctx() != self.ctx.cu_ctx() {
            return Err(Error::InvalidArgument(format!(
                "{}: the stream belongs to another CUDA context than this rank's device collectives (device {}'s primary context); use a stream of that context",
                call.name(),
                self.ctx.ordinal()
            )));
        }
        if let Some(op) = call.op() {
            op.check(dtype)?;
        }
        pg.inner.check_usable()?;
        self.check_failed()?;
        let what = call.name();
        let seq = pg.inner.seq.fetch_add(1, Ordering::Relaxed);
        if pg.inner.opts.check {
            check::verify(&pg.inner, what, seq, &call.desc(dtype), pg.timeout())?;
        }
        let timeout = pg.timeout();
        let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        gpu::driver::bind(&self.ctx)?;
        // The window buffers (or staging buffers) are shared by every stream of this
        // rank: an operation on another stream than the previous one waits for it.
        let key = stream.cu_stream() as usize;
        if let Some((s, ev)) = &st.last
            && *s != key
        {
            stream.wait(ev).map_err(|e| Error::Cuda {
                context: format!("{what}: ordering after the previous device collective"),
                message: e.to_string(),
            })?;
        }
        let mut keep = Vec::new();
        let enqueued = match &self.path {
            Path::Window(win) => self.enqueue_window(pg, win, &mut st, call, dtype, stream, seq),
            Path::Staged(_) => {
                self.enqueue_staged(pg, &mut st, call, dtype, stream, seq, deadline, &mut keep)
            }
        };
        let work = Arc::new(WorkState::default());
        // Values posted so far (also by a partly enqueued collective): the release
        // after a failure must go past them.
        self.shared
            .max_target
            .fetch_max(st.rounds.posted, Ordering::AcqRel);
        if let Err(e) = enqueued {
            // Part of the collective may be enqueued: the peers would wait for posts
            // that never come. Fail the group (which releases this rank's stream and
            // tells the peers), then report the cause.
            let reason = format!("{what} #{seq}: enqueueing on the device failed: {e}");
            self.shared.fail(Arc::new(Error::GroupFailed { reason }));
            return Err(e);
        }
        let event = stream
            .record_event(None)
            .map(Arc::new)
            .map_err(|e| Error::Cuda {
                context: format!("{what}: recording the completion event"),
                message: e.to_string(),
            })?;
        st.last = Some((key, event.clone()));
        let target = st.rounds.posted;
        drop(st);
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pending.push_back(Pending {
            seq,
            op: what,
            event: event.clone(),
            deadline,
            target,
            work: work.clone(),
            _keep: keep,
        });
        drop(pending);
        self.shared.cv.notify_all();
        tracing::trace!(
            group = pg.name(),
            rank = pg.rank(),
            op = what,
            seq,
            "device op enqueued"
        );
        Ok(DeviceWork {
            event,
            state: work,
            limit: (!timeout.is_zero()).then(|| timeout + RELEASE_LIMIT),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue_window(
        &self,
        pg: &ProcessGroup,
        win: &DeviceWindow,
        st: &mut State,
        call: Call,
        dtype: DataType,
        stream: &CudaStream,
        seq: u64,
    ) -> Result<()> {
        let size = dtype.size();
        let what = call.name();
        let mut e = DeviceExec::new(
            win,
            &mut st.rounds,
            &self.kernels,
            stream,
            dtype,
            call.op(),
            pg.size(),
            what,
        );
        let n = pg.size();
        let r = match call {
            Call::AllReduce {
                input,
                output,
                count,
                ..
            } => {
                let bytes = count * size;
                if device_two_shot(bytes, n, pg.inner.opts.algo) {
                    intra::all_reduce_two_shot(&mut e, input as usize, output as usize, bytes)
                } else {
                    intra::all_reduce_one_shot(&mut e, input as usize, output as usize, bytes)
                }
            }
            Call::Broadcast { buf, count, root } => {
                intra::broadcast(&mut e, root, buf as usize, count * size)
            }
            Call::Reduce {
                input,
                output,
                count,
                root,
                ..
            } => intra::reduce(&mut e, root, input as usize, output as usize, count * size),
            Call::AllGather {
                input,
                output,
                count,
            } => intra::all_gather(&mut e, input as usize, output as usize, count * size),
            Call::ReduceScatter {
                input,
                output,
                count,
                ..
            } => intra::reduce_scatter(&mut e, input as usize, output as usize, count * size),
            Call::AllToAll {
                input,
                output,
                count,
            } => intra::all_to_all(&mut e, input as usize, output as usize, count * size),
            Call::Gather {
                input,
                output,
                count,
                root,
            } => {
                let lens = vec![count * size; n];
                let displs: Vec<usize> = (0..n).map(|m| m * count * size).collect();
                intra::gather_v(
                    &mut e,
                    root,
                    input as usize,
                    output as usize,
                    &lens,
                    &displs,
                )
            }
            Call::Scatter {
                input,
                output,
                count,
                root,
            } => {
                let lens = vec![count * size; n];
                let displs: Vec<usize> = (0..n).map(|m| m * count * size).collect();
                intra::scatter_v(
                    &mut e,
                    root,
                    input as usize,
                    &lens,
                    &displs,
                    output as usize,
                )
            }
            Call::Barrier => intra::barrier(&mut e),
        };
        r.map_err(|source| {
            e.take_cuda_error().unwrap_or(Error::Collective {
                op: what,
                seq,
                rank: pg.rank(),
                source,
                missing_ranks: Vec::new(),
            })
        })
    }

    /// Pinned buffers of at least `bytes` each: the chunk pair, or the whole pair
    /// (grown when too small; operations in flight keep the old ones alive).
    fn bufs(&self, slot: &mut Option<[Pinned; 2]>, bytes: usize) -> Result<[Pinned; 2]> {
        if let Some(b) = slot.as_ref()
            && b[0].bytes() >= bytes
            && b[1].bytes() >= bytes
        {
            return Ok(b.clone());
        }
        let b = [
            staging::pinned(&self.ctx, bytes)?,
            staging::pinned(&self.ctx, bytes)?,
        ];
        *slot = Some(b.clone());
        Ok(b)
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue_staged(
        &self,
        pg: &ProcessGroup,
        st: &mut State,
        call: Call,
        dtype: DataType,
        stream: &CudaStream,
        seq: u64,
        deadline: Option<Instant>,
        keep: &mut Vec<Pinned>,
    ) -> Result<()> {
        let flags = {
            let mut f = self
                .shared
                .stage_flags
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match f.as_ref() {
                Some(f) => f.clone(),
                None => {
                    let new = Arc::new(StageFlags::new(&self.ctx)?);
                    *f = Some(new.clone());
                    new
                }
            }
        };
        let size = dtype.size();
        let (n, me) = (pg.size(), pg.rank());
        let base = st.stage_next;
        let chunk = (self.stage_bytes / size).max(1) * size;
        let (pipeline, bufs) = match call {
            Call::AllReduce {
                input,
                output,
                count,
                ..
            } => {
                let p = Pipeline::chunked(base, input, output, count * size, chunk, true, true);
                (p, self.bufs(&mut st.chunk_bufs, chunk)?)
            }
            Call::Broadcast { buf, count, root } => {
                let p =
                    Pipeline::chunked(base, buf, buf, count * size, chunk, me == root, me != root);
                (p, self.bufs(&mut st.chunk_bufs, chunk)?)
            }
            Call::Reduce {
                input,
                output,
                count,
                root,
                ..
            } => {
                let p =
                    Pipeline::chunked(base, input, output, count * size, chunk, true, me == root);
                (p, self.bufs(&mut st.chunk_bufs, chunk)?)
            }
            _ => {
                let (in_len, out_len, input, output) = match call {
                    Call::AllGather {
                        input,
                        output,
                        count,
                    } => (count * size, n * count * size, input, output),
                    Call::ReduceScatter {
                        input,
                        output,
                        count,
                        ..
                    } => (n * count * size, count * size, input, output),
                    Call::AllToAll {
                        input,
                        output,
                        count,
                    } => (n * count * size, n * count * size, input, output),
                    Call::Gather {
                        input,
                        output,
                        count,
                        root,
                    } => (
                        count * size,
                        if me == root { n * count * size } else { 0 },
                        input,
                        output,
                    ),
                    Call::Scatter {
                        input,
                        output,
                        count,
                        root,
                    } => (
                        if me == root { n * count * size } else { 0 },
                        count * size,
                        input,
                        output,
                    ),
                    _ => (0, 0, 0, 0),
                };
                let p = Pipeline::whole(base, input, in_len, output, out_len);
                (p, self.bufs(&mut st.whole_bufs, in_len.max(out_len))?)
            }
        };
        // An empty element-wise collective still synchronises nobody: nothing to do.
        if pipeline.chunks.is_empty() {
            return Ok(());
        }
        keep.extend(bufs.iter().cloned());
        self.shared
            .stage_end
            .fetch_max(pipeline.end(), Ordering::AcqRel);
        // SAFETY: the stream belongs to this comm's context (checked in `submit`) and
        // the context is current; the device ranges are the caller's buffers (valid
        // until the stream ran the collective: the callers' contract) sized for the
        // call; each pinned buffer holds `chunk` (chunked) or the whole input/output
        // (whole) bytes and is kept alive by the pending record until the operation
        // retired; the host side runs below on the worker (or the flags are released
        // when it fails).
        unsafe { pipeline.enqueue(stream.cu_stream(), &flags, &bufs)? };
        st.stage_next = pipeline.end();
        // The host side, in order with the group's other asynchronous operations.
        let g = pg.clone();
        let shared = self.shared.clone();
        let op_name = call.name();
        pg.inner.worker.submit(Box::new(move || {
            let alive = || -> Result<()> {
                if shared.abort.is_aborted() {
                    return Err(Error::GroupFailed {
                        reason: "aborted by abort()".into(),
                    });
                }
                if shared.has_failed.load(Ordering::Acquire) {
                    return Err(Error::GroupFailed {
                        reason: "an earlier device collective failed".into(),
                    });
                }
                Ok(())
            };
            let mut step = |_: usize, a: &mut [u8], b: &mut [u8]| -> Result<()> {
                host_step(&g, call, dtype, a, b)
            };
            // SAFETY: `bufs` are the pipeline's buffers (the stream side above uses the
            // same ones) and nothing else on the host touches them: later staged
            // operations run after this job on this worker thread.
            let r = unsafe { pipeline.host(&flags, &bufs, deadline, &alive, &mut step) };
            if let Err(e) = r {
                let e = Arc::new(e);
                tracing::warn!(op = op_name, seq, error = %e, "staged device collective failed");
                shared.fail(e);
            }
        }));
        Ok(())
    }
}

/// The host collective of one staged chunk: `a` is the chunk buffer (in place) for the
/// element-wise collectives, else `a` the input and `b` the output.
fn host_step(
    g: &ProcessGroup,
    call: Call,
    dtype: DataType,
    a: &mut [u8],
    b: &mut [u8],
) -> Result<()> {
    match call {
        Call::AllReduce { op, .. } => g.all_reduce_bytes(dtype, op, None, a),
        Call::Broadcast { root, .. } => g.broadcast_bytes(dtype, a, root),
        Call::Reduce { op, root, .. } => with_element!(dtype, T, {
            g.reduce::<T>(bytemuck::cast_slice_mut(a), op, root)
        }),
        Call::AllGather { .. } => with_element!(dtype, T, {
            g.all_gather::<T>(bytemuck::cast_slice(a), bytemuck::cast_slice_mut(b))
        }),
        Call::ReduceScatter { op, .. } => with_element!(dtype, T, {
            g.reduce_scatter::<T>(bytemuck::cast_slice(a), bytemuck::cast_slice_mut(b), op)
        }),
        Call::AllToAll { .. } => with_element!(dtype, T, {
            g.all_to_all::<T>(bytemuck::cast_slice(a), bytemuck::cast_slice_mut(b))
        }),
        Call::Gather { root, .. } => with_element!(dtype, T, {
            g.gather::<T>(bytemuck::cast_slice(a), bytemuck::cast_slice_mut(b), root)
        }),
        Call::Scatter { root, .. } => with_element!(dtype, T, {
            g.scatter::<T>(bytemuck::cast_slice(a), bytemuck::cast_slice_mut(b), root)
        }),
        Call::Barrier => g.barrier(),
    }
}

impl Shared {
    /// Fails every pending and future operation with `err`, tells the peers and the
    /// group, and releases this rank's stream until the pending operations drained.
    fn fail(&self, err: Arc<Error>) {
        {
            let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            if f.is_none() {
                tracing::warn!(rank = self.rank, error = %err, "device collectives failed");
                *f = Some(err.clone());
                self.has_failed.store(true, Ordering::Release);
            }
        }
        let err = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or(err);
        for p in self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            p.work.set_error(err.clone());
        }
        if let Some(w) = &self.window {
            w.mark_broken();
            w.flags().close();
        }
        if let Some(g) = self.group.upgrade() {
            g.fail(err.to_string());
        }
        self.release();
        self.cv.notify_all();
    }

    /// Host stores that release every stream wait of this rank (window flags and
    /// staging flags): the values keep growing past anything enqueued.
    fn release(&self) {
        if let Some(w) = &self.window {
            w.unblock(self.max_target.load(Ordering::Acquire));
        }
        if let Some(f) = self
            .stage_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            f.release(self.stage_end.load(Ordering::Acquire));
        }
    }

    fn name_of(&self, r: usize) -> String {
        match self.group.upgrade() {
            Some(g) => format!("rank {r} of group {}", g.name),
            None => format!("rank {r}"),
        }
    }

    /// The group ranks that did not post `target` yet (window path).
    fn missing(&self, target: u64) -> Vec<usize> {
        let Some(w) = &self.window else {
            return Vec::new();
        };
        (0..w.members())
            .filter(|&k| k != w.index())
            .filter(|&k| (w.own_slot(k).load(Ordering::Acquire).wrapping_sub(target) as i64) < 0)
            .collect()
    }
}

/// The watchdog thread's loop (see the module docs).
fn watchdog(s: &Shared) {
    let mut last_liveness = Instant::now();
    let mut drop_deadline: Option<Instant> = None;
    loop {
        let front = {
            let mut q = s.pending.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(p) = q.front() {
                    break Some((p.seq, p.op, p.event.clone(), p.deadline, p.target));
                }
                if s.stop.load(Ordering::Acquire) {
                    break None;
                }
                q =
                    s.cv.wait_timeout(q, Duration::from_millis(50))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
            }
        };
        let Some((seq, op, event, deadline, target)) = front else {
            return;
        };
        let failed = s.has_failed.load(Ordering::Acquire);
        match event.try_is_complete() {
            Ok(true) => {
                let mut q = s.pending.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(p) = q.pop_front()
                    && failed
                {
                    // Released after the failure (or completed unseen just before it):
                    // its result cannot be trusted.
                    if let Some(e) = s.failed.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                        p.work.set_error(e);
                    }
                }
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                s.fail(Arc::new(Error::Cuda {
                    context: format!("device {op} #{seq} (or earlier work on its stream)"),
                    message: e.to_string(),
                }));
                // The event will not complete normally: drop it (its work already
                // carries the error).
                s.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                continue;
            }
        }
        if failed {
            // Keep releasing until the stream drained; give up after a while.
            s.release();
            let limit = drop_deadline.get_or_insert_with(|| Instant::now() + RELEASE_LIMIT);
            if Instant::now() > *limit {
                tracing::error!(
                    rank = s.rank,
                    op,
                    seq,
                    "a failed device collective's stream did not drain; abandoning it"
                );
                s.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
                continue;
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let fail_with = |source: TransportError, missing: Vec<usize>| {
            s.fail(Arc::new(Error::Collective {
                op,
                seq,
                rank: s.rank,
                source,
                missing_ranks: missing,
            }));
        };
        if s.abort.is_aborted() {
            fail_with(
                TransportError::Aborted {
                    peer: "(all)".into(),
                    op: "device collective (abort() was called)",
                },
                Vec::new(),
            );
            continue;
        }
        if last_liveness.elapsed() > Duration::from_millis(20) {
            last_liveness = Instant::now();
            if let Some(w) = &s.window {
                let missing = s.missing(target);
                if let Some(err) = missing
                    .iter()
                    .find_map(|&k| w.flags().check_member(k, "device collective").err())
                {
                    fail_with(err, missing);
                    continue;
                }
            }
        }
        let now = Instant::now();
        if s.stop.load(Ordering::Acquire) && drop_deadline.is_none() {
            drop_deadline = Some(now + DROP_GRACE);
        }
        let expired = deadline.is_some_and(|d| now > d)
            || (s.stop.load(Ordering::Acquire) && drop_deadline.is_some_and(|d| now > d));
        if expired {
            let missing = s.missing(target);
            let peer = missing
                .first()
                .map_or_else(|| "(the stream)".to_string(), |&r| s.name_of(r));
            fail_with(
                TransportError::Timeout {
                    peer,
                    op: "device collective",
                    waited: deadline.map_or(DROP_GRACE, |d| now.saturating_duration_since(d)),
                },
                missing,
            );
            continue;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

impl Drop for DeviceComm {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.cv.notify_all();
        if let Some(h) = self
            .watchdog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
        // Every operation retired: the window (last reference once `path` drops)
        // tears down after the stream stopped using it.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_shot_only_for_large_buffers_on_more_than_two_ranks() {
        assert!(!device_two_shot(1 << 30, 2, None));
        assert!(!device_two_shot(ONE_SHOT_MAX, 4, None));
        assert!(device_two_shot(ONE_SHOT_MAX + 1, 3, None));
        assert!(device_two_shot(8, 2, Some(Algo::TwoShot)));
        assert!(!device_two_shot(1 << 30, 8, Some(Algo::OneShot)));
    }

    #[test]
    fn device_byte_settings_are_checked() {
        assert_eq!(env_bytes("TUTTI_TEST_UNSET_VARIABLE", 4096).unwrap(), 4096);
    }

    #[test]
    fn calls_describe_themselves_for_the_cross_rank_check() {
        let c = Call::Reduce {
            input: 1,
            output: 2,
            count: 10,
            op: ReduceOp::Max,
            root: 1,
        };
        assert_eq!(c.name(), "reduce");
        assert_eq!(
            c.desc(DataType::F32),
            Desc::new(Some(DataType::F32), 10, Some(1), Some(ReduceOp::Max))
        );
        assert_eq!(
            Call::Barrier.desc(DataType::U8),
            Desc::new(None, 0, None, None)
        );
    }
}
