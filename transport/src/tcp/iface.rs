//! Picking the local address to listen on (`TUTTI_SOCKET_IFNAME`).

use std::net::IpAddr;

/// `(interface name, address)` for every up IPv4/IPv6 interface address.
pub fn interface_addresses() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return out;
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as u32 == 0 {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr is non-null and points to a sockaddr whose family says
        // which concrete struct it is.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let addr = match family {
            libc::AF_INET => {
                // SAFETY: family AF_INET means a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
            }
            libc::AF_INET6 => {
                // SAFETY: family AF_INET6 means a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::from(sin6.sin6_addr.s6_addr)
            }
            _ => continue,
        };
        out.push((name, addr));
    }
    // SAFETY: ifap came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    out
}

/// Whether interface `name` matches an NCCL-style filter: comma-separated
/// prefixes, a leading `^` excludes, a leading `=` (after `^`) means exact names.
fn matches(filter: &str, name: &str) -> bool {
    let (exclude, rest) = match filter.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, filter),
    };
    let (exact, rest) = match rest.strip_prefix('=') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let hit = rest
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|p| {
            if exact {
                name == p
            } else {
                name.starts_with(p)
            }
        });
    hit != exclude
}

/// The address to listen on and to publish: the first IPv4 address of an
/// interface matching `filter` (or `TUTTI_SOCKET_IFNAME`); without a filter, the
/// first non-loopback IPv4 address, else loopback.
pub fn select_address(filter: Option<&str>) -> Result<IpAddr, String> {
    let env = std::env::var("TUTTI_SOCKET_IFNAME").ok();
    let filter = filter
        .map(str::to_string)
        .or(env)
        .filter(|f| !f.trim().is_empty());
    let addrs = interface_addresses();
    let v4 = |(_, a): &&(String, IpAddr)| a.is_ipv4();
    match filter {
        Some(f) => addrs
            .iter()
            .filter(v4)
            .find(|(n, _)| matches(&f, n))
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                let names: Vec<_> = addrs.iter().map(|(n, a)| format!("{n}={a}")).collect();
                format!(
                    "no IPv4 interface matches TUTTI_SOCKET_IFNAME={f:?} (interfaces: {})",
                    names.join(", ")
                )
            }),
        None => Ok(addrs
            .iter()
            .filter(v4)
            .find(|(_, a)| !a.is_loopback())
            .map_or(IpAddr::from([127, 0, 0, 1]), |(_, a)| *a)),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn nccl_style_filters() {
        assert!(matches("eth", "eth0"));
        assert!(!matches("eth", "lo"));
        assert!(matches("^docker", "eth0"));
        assert!(!matches("^docker,lo", "lo"));
        assert!(matches("=lo", "lo"));
        assert!(!matches("=eth", "eth0"));
        assert!(matches("ib,eth", "eth1"));
    }
}
