//! What one side of a link publishes through the rendezvous: its queue pairs, its
//! address on the fabric, and where the peer may write (ring and credit word).

const MAGIC: u32 = 0x4d44_5254; // "TRDM"
const VERSION: u16 = 1;
pub(super) const LEN: usize = 112;

/// One side's connection details for the link to one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Handshake {
    /// Rank of the side that published this.
    pub from: u64,
    /// Rank it is meant for.
    pub to: u64,
    /// Hash of the job/group prefix.
    pub tag: u64,
    /// Link layer (1 InfiniBand, 2 Ethernet).
    pub link_layer: u8,
    /// Active MTU as an `ibv_mtu` value.
    pub mtu: u8,
    /// Whether `gid` must be used (GRH); always for RoCE.
    pub use_gid: bool,
    pub lid: u16,
    pub gid: [u8; 16],
    /// The queue pair that sends (writes into the peer's ring) and its first PSN.
    pub tx_qpn: u32,
    pub tx_psn: u32,
    /// The queue pair that receives (and writes credits back) and its first PSN.
    pub rx_qpn: u32,
    pub rx_psn: u32,
    /// The receive ring the peer writes messages into.
    pub ring_addr: u64,
    pub ring_rkey: u32,
    pub slots: u32,
    pub slot_size: u32,
    /// The word the peer writes its count of consumed messages into.
    pub credit_addr: u64,
    pub credit_rkey: u32,
}

impl Handshake {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LEN);
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.push(self.link_layer);
        b.push(self.mtu);
        b.extend_from_slice(&self.from.to_le_bytes());
        b.extend_from_slice(&self.to.to_le_bytes());
        b.extend_from_slice(&self.tag.to_le_bytes());
        b.extend_from_slice(&self.lid.to_le_bytes());
        b.push(u8::from(self.use_gid));
        b.push(0);
        b.extend_from_slice(&self.gid);
        for v in [self.tx_qpn, self.tx_psn, self.rx_qpn, self.rx_psn] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.ring_addr.to_le_bytes());
        for v in [self.ring_rkey, self.slots, self.slot_size] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.credit_addr.to_le_bytes());
        b.extend_from_slice(&self.credit_rkey.to_le_bytes());
        b.resize(LEN, 0);
        b
    }

    /// Parses a published handshake; `Err` says what is wrong with it.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() != LEN {
            return Err(format!("{} bytes where {LEN} were expected", b.len()));
        }
        let mut r = Reader { b, at: 0 };
        let magic = r.u32();
        let version = r.u16();
        if magic != MAGIC {
            return Err("not an RDMA handshake (bad magic)".into());
        }
        if version != VERSION {
            return Err(format!(
                "handshake version {version}, this build speaks {VERSION} (mixed tutti versions?)"
            ));
        }
        let link_layer = r.u8();
        let mtu = r.u8();
        let from = r.u64();
        let to = r.u64();
        let tag = r.u64();
        let lid = r.u16();
        let use_gid = r.u8() != 0;
        r.u8();
        let mut gid = [0u8; 16];
        gid.copy_from_slice(r.take(16));
        Ok(Handshake {
            from,
            to,
            tag,
            link_layer,
            mtu,
            use_gid,
            lid,
            gid,
            tx_qpn: r.u32(),
            tx_psn: r.u32(),
            rx_qpn: r.u32(),
            rx_psn: r.u32(),
            ring_addr: r.u64(),
            ring_rkey: r.u32(),
            slots: r.u32(),
            slot_size: r.u32(),
            credit_addr: r.u64(),
            credit_rkey: r.u32(),
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        s
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        let s = self.take(4);
        u32::from_le_bytes([s[0], s[1], s[2], s[3]])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
}

/// A 64-bit tag of the job/group prefix (FNV-1a), so that a handshake left by
/// another job or group is refused.
pub(super) fn tag(prefix: &str) -> u64 {
    prefix.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handshake {
        Handshake {
            from: 3,
            to: 7,
            tag: tag("job/g0"),
            link_layer: 2,
            mtu: 3,
            use_gid: true,
            lid: 0x1234,
            gid: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 9],
            tx_qpn: 0x11,
            tx_psn: 0xabcdef,
            rx_qpn: 0x12,
            rx_psn: 0x123456,
            ring_addr: 0x7f00_dead_b000,
            ring_rkey: 0x99,
            slots: 8,
            slot_size: 512 << 10,
            credit_addr: 0x7f00_beef_0000,
            credit_rkey: 0x77,
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let b = h.encode();
        assert_eq!(b.len(), LEN);
        assert_eq!(Handshake::decode(&b).unwrap(), h);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Handshake::decode(b"127.0.0.1:5000").is_err());
        let mut b = sample().encode();
        b[0] ^= 1;
        assert!(Handshake::decode(&b).unwrap_err().contains("magic"));
        let mut b = sample().encode();
        b[4] = 9;
        assert!(Handshake::decode(&b).unwrap_err().contains("version"));
    }
}
