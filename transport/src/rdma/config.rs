//! [`RdmaConfig`]: settings of RDMA links, from the environment.

use crate::wait::{AbortHandle, WaitPolicy};

/// Settings of RDMA links.
#[derive(Clone, Debug)]
pub struct RdmaConfig {
    /// Device filter (`TUTTI_IB_HCA`, NCCL's `NCCL_IB_HCA` syntax), `None` for the
    /// first device with an active port.
    pub hca: Option<String>,
    /// GID index (`TUTTI_IB_GID_INDEX`); `None` picks one: none (LID routing) on
    /// InfiniBand, a RoCE v2 IPv4 GID if any, else the first valid one, on Ethernet.
    pub gid_index: Option<u32>,
    /// Slots in each receive ring (`TUTTI_IB_SLOTS`, default 8, 2 to 1024).
    pub slots: u32,
    /// Bytes per slot, the largest message (`TUTTI_IB_CHUNK_BYTES`, default
    /// 512 KiB, a multiple of 4096, at most 64 MiB).
    pub slot_size: usize,
    /// Local ACK timeout exponent (`TUTTI_IB_TIMEOUT`, default 16: 4.096 us x 2^16,
    /// about 0.27 s per attempt); with `retry_cnt` it bounds how long a dead peer
    /// goes unnoticed.
    pub timeout: u8,
    /// Transport retries before a work request fails (`TUTTI_IB_RETRY_CNT`,
    /// default 7, at most 7).
    pub retry_cnt: u8,
    /// Service level (`TUTTI_IB_SL`, default 0).
    pub service_level: u8,
    /// Traffic class of RoCE / GRH packets (`TUTTI_IB_TC`, default 0).
    pub traffic_class: u8,
    /// How a waiting half spins and yields before it sleeps.
    pub policy: WaitPolicy,
    /// Aborts every wait of links made with this config.
    pub abort: AbortHandle,
}

impl RdmaConfig {
    /// Defaults, overridden by the environment variables named on each field.
    /// `local_ranks` is the number of ranks sharing this host (for the wait policy).
    pub fn from_env(local_ranks: usize) -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let num = |n: &str| var(n).and_then(|v| v.trim().parse::<u64>().ok());
        RdmaConfig {
            hca: var("TUTTI_IB_HCA"),
            gid_index: num("TUTTI_IB_GID_INDEX").and_then(|v| u32::try_from(v).ok()),
            slots: num("TUTTI_IB_SLOTS").map_or(8, |v| v.clamp(2, 1024) as u32),
            slot_size: num("TUTTI_IB_CHUNK_BYTES").map_or(512 << 10, |v| {
                (v.clamp(4096, 64 << 20) as usize).next_multiple_of(4096)
            }),
            timeout: num("TUTTI_IB_TIMEOUT").map_or(16, |v| v.clamp(1, 31) as u8),
            retry_cnt: num("TUTTI_IB_RETRY_CNT").map_or(7, |v| v.min(7) as u8),
            service_level: num("TUTTI_IB_SL").map_or(0, |v| v.min(15) as u8),
            traffic_class: num("TUTTI_IB_TC").map_or(0, |v| v.min(255) as u8),
            policy: WaitPolicy::for_local_ranks(local_ranks.max(1)),
            abort: AbortHandle::new(),
        }
    }
}
