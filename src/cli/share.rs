//! What a server bound to every interface (`--bind 0.0.0.0` or `::`) tells the person who
//! started it: the URL of each interface (loopback first) and, on a terminal, a QR code of the
//! first URL another machine can open, for a phone on the same network.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};

use crate::cli::output::say;

/// One address of an interface that is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceAddr {
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
}

/// The addresses a socket bound to `unspecified` (0.0.0.0 or ::) answers on: IPv4 for
/// 0.0.0.0; IPv4 and IPv6 for :: (dual stack); loopback first, then in the system's order.
/// IPv6 link-local addresses are left out: a URL needs their zone, which browsers refuse.
pub(crate) fn interface_addrs(unspecified: IpAddr) -> Vec<InterfaceAddr> {
    let Ok(found) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<InterfaceAddr> = Vec::new();
    for iface in found {
        if !iface.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
            continue;
        }
        let Some(address) = iface.address else {
            continue;
        };
        let ip = if let Some(v4) = address.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = address.as_sockaddr_in6() {
            if unspecified.is_ipv4() || v6.ip().is_unicast_link_local() {
                continue;
            }
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        let entry = InterfaceAddr {
            name: iface.interface_name,
            ip,
        };
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    // Stable: loopback first, IPv4 before IPv6, otherwise as the system listed them.
    out.sort_by_key(|a| (!a.ip.is_loopback(), a.ip.is_ipv6()));
    out
}

/// Prints `open URL (interface)` for each address of `local` (bound to every interface), and
/// a QR code of the first one that is not loopback when stderr is a terminal.
pub(crate) fn announce_urls(scheme: &str, local: SocketAddr) {
    let addrs = interface_addrs(local.ip());
    let url = |ip: IpAddr| format!("{scheme}://{}/", SocketAddr::new(ip, local.port()));
    if addrs.is_empty() {
        // No interface list (a sandbox without netlink): at least the local URL.
        let loopback = if local.is_ipv4() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        };
        say(format_args!("open {}", url(loopback)));
        return;
    }
    for addr in &addrs {
        say(format_args!("open {} ({})", url(addr.ip), addr.name));
    }
    let std_err = std::io::stderr();
    if !std_err.is_terminal() {
        return;
    }
    if let Some(shared) = addrs.iter().find(|a| !a.ip.is_loopback()) {
        if let Some(code) = qr_text(&url(shared.ip)) {
            say(format_args!("{code}"));
        }
    }
}

/// `text` as a QR code drawn with Unicode half blocks (two modules per character cell), light
/// on dark as a terminal shows it; `None` if it does not fit a QR code.
fn qr_text(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_comes_first_and_ipv6_only_for_a_dual_stack_bind() {
        let v4 = interface_addrs(IpAddr::from([0, 0, 0, 0]));
        assert!(v4.iter().all(|a| a.ip.is_ipv4()), "{v4:?}");
        assert!(v4.first().is_some_and(|a| a.ip.is_loopback()), "{v4:?}");
        let both = interface_addrs(IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED));
        assert!(both.iter().all(|a| match a.ip {
            IpAddr::V6(ip) => !ip.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        }));
    }

    #[test]
    fn a_qr_code_is_drawn_with_half_blocks() {
        let code = qr_text("http://192.0.2.7:8000/").expect("a short URL fits");
        assert!(code.contains('▀') || code.contains('▄'));
        let lines: Vec<&str> = code.lines().collect();
        // Version 2 (25 modules) with a quiet zone of 4 on each side: 33 wide, 17 lines.
        assert!(lines.len() >= 15, "{} lines", lines.len());
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
    }
}
