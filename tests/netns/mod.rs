//! Network namespaces standing for hosts, in two shapes. [`Net`]: `n` namespaces,
//! each with one veth whose other end is on a bridge in this (the root) namespace,
//! one subnet for all, the bridge holding the `.254` address (reachable from every
//! namespace, e.g. for a store served by the test process). [`Mesh`]: a full mesh of
//! veth pairs between N namespaces, so that `tc tbf` can limit one pair. Both are
//! removed on drop. Needs root and iproute2 (`ip netns`, `ip link`); a test that
//! cannot create them skips with the reason, or fails under `TUTTI_REQUIRE_NETNS=1`
//! ([`unavailable`], [`Net::create_or_skip`]).

#![allow(dead_code)]

use std::process::Command;

/// The namespaces, their devices and addresses, and the bridge joining them.
pub struct Net {
    /// Namespace names.
    pub ns: Vec<String>,
    /// Each namespace's veth device (inside the namespace).
    pub dev: Vec<String>,
    /// Each namespace's IPv4 address.
    pub addr: Vec<String>,
    /// The bridge in the root namespace.
    pub bridge: String,
    /// The bridge's IPv4 address.
    pub bridge_addr: String,
}

/// Runs `ip ARGS`, returning its stderr as the error.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// `n` namespaces (at most 200) on a fresh bridge.
    pub fn create(n: usize) -> Result<Net, String> {
        assert!((1..=200).contains(&n), "1..=200 namespaces");
        let id = std::process::id() % 100_000;
        let octet = 1 + id % 250;
        let mut net = Net {
            ns: Vec::new(),
            dev: Vec::new(),
            addr: Vec::new(),
            bridge: format!("tbr{id}"),
            bridge_addr: format!("10.213.{octet}.254"),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        // From here on, drop removes whatever was created.
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.bridge_addr),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("tutti-{id}-{i}");
            ip(&["netns", "add", &ns])?;
            net.ns.push(ns.clone());
            let (outer, inner) = (format!("tvh{id}x{i}"), format!("tvn{id}x{i}"));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &outer, "master", &net.bridge])?;
            ip(&["link", "set", &outer, "up"])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            let addr = format!("10.213.{octet}.{}", i + 1);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            net.dev.push(inner);
            net.addr.push(addr);
        }
        Ok(net)
    }

    /// [`create`](Self::create), or `None` after printing `SKIPPED: <reason>`
    /// (a panic with `TUTTI_REQUIRE_NETNS=1`).
    pub fn create_or_skip(n: usize) -> Option<Net> {
        match Net::create(n) {
            Ok(net) => Some(net),
            Err(reason) => {
                unavailable(format!("network namespaces unavailable: {reason}"));
                None
            }
        }
    }

    /// `ip netns exec NS` for namespace `i`, as a command prefix.
    pub fn exec(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.ns[i].clone(),
        ]
    }

    /// Adds a `tc netem` qdisc (`spec`, e.g. `delay 5ms loss 1%`) on every
    /// namespace's device.
    pub fn netem(&self, spec: &[&str]) -> Result<(), String> {
        for (ns, dev) in self.ns.iter().zip(&self.dev) {
            let mut args = vec!["netns", "exec", ns, "tc", "qdisc", "add", "dev", dev];
            args.extend_from_slice(&["root", "netem"]);
            args.extend_from_slice(spec);
            let out = Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "tc netem: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(())
    }

    /// The processes in namespace `i`.
    pub fn pids(&self, i: usize) -> Vec<i32> {
        ip(&["netns", "pids", &self.ns[i]])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// SIGKILLs every process in namespace `i` (the host is lost); returns them.
    pub fn kill_all(&self, i: usize) -> Vec<i32> {
        let pids = self.pids(i);
        for &p in &pids {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(p).expect("a positive pid"),
                rustix::process::Signal::KILL,
            );
        }
        pids
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.ns.len() {
            self.kill_all(i);
        }
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// N network namespaces ("nodes"), each pair joined by its own veth pair: node
/// `i` owns 10.<net>.0.<i+1> on each of its veths and routes to node `j` through
/// the veth to `j`, so a qdisc on one veth pair shapes exactly one pair of nodes.
pub struct Mesh {
    /// The namespaces, one per node.
    pub ns: Vec<String>,
    /// The second octet of the nodes' addresses.
    pub net: u32,
}

impl Mesh {
    /// Node `i`'s end of the veth pair to node `j`.
    pub fn dev(&self, i: usize, j: usize) -> String {
        format!("tv{}x{i}{j}", self.net)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.{}.0.{}", self.net, i + 1)
    }

    /// `n` namespaces and a veth pair between each two (removed on drop).
    pub fn create(n: usize) -> Result<Mesh, String> {
        let id = std::process::id();
        let mesh = Mesh {
            ns: (0..n).map(|i| format!("tutti-v{id}-{i}")).collect(),
            net: 100 + id % 150,
        };
        for ns in &mesh.ns {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (mesh.dev(i, j), mesh.dev(j, i));
                ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
                ip(&["link", "set", &a, "netns", &mesh.ns[i]])?;
                ip(&["link", "set", &b, "netns", &mesh.ns[j]])?;
            }
        }
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                let (ns, dev) = (&mesh.ns[i], mesh.dev(i, j));
                ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{}/32", mesh.addr(i)),
                    "dev",
                    &dev,
                ])?;
                ip(&["-n", ns, "link", "set", &dev, "up"])?;
            }
            for j in (0..n).filter(|&j| j != i) {
                let (ns, dev) = (&mesh.ns[i], mesh.dev(i, j));
                ip(&[
                    "-n",
                    ns,
                    "route",
                    "add",
                    &format!("{}/32", mesh.addr(j)),
                    "dev",
                    &dev,
                    "src",
                    &mesh.addr(i),
                ])?;
            }
        }
        Ok(mesh)
    }

    /// Rate-limits the veth pair between nodes `i` and `j`, both directions.
    pub fn limit(&self, i: usize, j: usize, rate: &str) -> Result<(), String> {
        for (a, b) in [(i, j), (j, i)] {
            let dev = self.dev(a, b);
            ip(&[
                "netns",
                "exec",
                &self.ns[a],
                "tc",
                "qdisc",
                "add",
                "dev",
                &dev,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "64kb",
                "latency",
                "100ms",
            ])
            .map_err(|e| format!("tc tbf: {e}"))?;
        }
        Ok(())
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Skips the calling test with `reason` (prints `SKIPPED: ...`), or fails it when
/// `TUTTI_REQUIRE_NETNS=1`.
pub fn unavailable(reason: String) {
    if std::env::var("TUTTI_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("network namespaces unavailable: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}
