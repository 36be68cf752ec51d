//! Network namespaces for tests that put ranks on separate "nodes": `ip` (iproute2),
//! a full mesh of veth pairs between N namespaces, and `tc tbf` rate limits on one
//! pair. Needs root; a test that cannot create them skips with the reason, or fails
//! under `TUTTI_REQUIRE_NETNS=1` ([`unavailable`]).

#![allow(dead_code)]

use std::process::Command;

/// N network namespaces ("nodes"), each pair joined by its own veth pair: node
/// `i` owns 10.<net>.0.<i+1> on each of its veths and routes to node `j` through
/// the veth to `j`, so a qdisc on one veth pair shapes exactly one pair of nodes.
pub struct Mesh {
    /// The namespaces, one per node.
    pub ns: Vec<String>,
    /// The second octet of the nodes' addresses.
    pub net: u32,
}

/// Runs `ip ARGS`; the error names the command and what it printed.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
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
