//! Listen addresses that would collide at start-up.

use std::net::SocketAddr;

use crate::decode::{Origins, Section};
use crate::id::ComponentId;
use crate::report::Report;
use crate::schema::*;
use crate::source::key_path;

use super::{line_of, uses, Role};

/// Two sockets cannot bind the same port where their addresses overlap (equal, or one is a wildcard).
/// Admin listeners come first, so a clash is reported at the receiver, the usual thing to move.
pub(super) fn listeners(config: &Config, origins: &Origins, r: &mut Report) {
    struct Listener {
        addr: SocketAddr,
        /// Where it is configured; `None` for the built-in default admin endpoint.
        path: Option<String>,
        admin: bool,
        /// UDP sockets share port numbers with TCP ones without clashing.
        udp: bool,
    }
    let mut all: Vec<Listener> = Vec::new();
    let mut extensions: Vec<&ComponentId> = config.service.extensions.iter().collect();
    extensions.sort();
    extensions.dedup();
    for id in extensions {
        if let Some(ExtensionConfig::HealthCheck(hc)) = config.extensions.get(id) {
            let path = key_path(&origins.path_of(Section::Extensions, id), "endpoint");
            all.push(Listener {
                addr: hc.endpoint,
                path: Some(path),
                admin: true,
                udp: false,
            });
        }
    }
    if let Some(addr) = config.service.telemetry.metrics.address {
        all.push(Listener {
            addr,
            path: Some("service.telemetry.metrics.address".into()),
            admin: true,
            udp: false,
        });
    }
    if all.is_empty() {
        all.extend(config.admin_endpoints().into_iter().map(|addr| Listener {
            addr,
            path: None,
            admin: true,
            udp: false,
        }));
    }
    let mut receivers: Vec<&ComponentId> = uses(config, origins, Role::Receivers)
        .map(|(_, id, _)| id)
        .collect();
    receivers.sort();
    receivers.dedup();
    for id in receivers {
        let base = origins.path_of(Section::Receivers, id);
        let otlp = match config.receivers.get(id) {
            Some(ReceiverConfig::Otlp(otlp)) => otlp,
            Some(ReceiverConfig::Syslog(syslog)) => {
                let tcp = syslog.tcp.as_ref().map(|t| (t.listen_address, "tcp"));
                let udp = syslog.udp.as_ref().map(|u| (u.listen_address, "udp"));
                for (addr, transport) in tcp.into_iter().chain(udp) {
                    all.push(Listener {
                        addr,
                        path: Some(key_path(&key_path(&base, transport), "listen_address")),
                        admin: false,
                        udp: transport == "udp",
                    });
                }
                continue;
            }
            Some(ReceiverConfig::PrometheusRemoteWrite(rw)) => {
                all.push(Listener {
                    addr: rw.endpoint,
                    path: Some(key_path(&base, "endpoint")),
                    admin: false,
                    udp: false,
                });
                continue;
            }
            _ => continue,
        };
        let grpc = otlp.protocols.grpc.as_ref().map(|g| (g.endpoint, "grpc"));
        let http = otlp.protocols.http.as_ref().map(|h| (h.endpoint, "http"));
        for (addr, protocol) in grpc.into_iter().chain(http) {
            let path = key_path(
                &key_path(&key_path(&base, "protocols"), protocol),
                "endpoint",
            );
            all.push(Listener {
                addr,
                path: Some(path),
                admin: false,
                udp: false,
            });
        }
    }
    for (i, later) in all.iter().enumerate() {
        let Some(later_path) = &later.path else {
            continue;
        };
        let clash = all[..i].iter().find(|earlier| {
            let (a, b) = (earlier.addr, later.addr);
            let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            // The admin endpoint is one server however many keys name its address.
            let same_admin = earlier.admin && later.admin && a == b;
            a.port() != 0
                && a.port() == b.port()
                && overlap
                && !same_admin
                && earlier.udp == later.udp
        });
        if let Some(earlier) = clash {
            let other = match &earlier.path {
                Some(path) => format!("{path} (line {})", line_of(r, path)),
                None => "the default admin endpoint (/healthz, /metrics; move it with an enabled \
                         health_check extension)"
                    .to_owned(),
            };
            r.error(
                later_path,
                format!(
                    "{} is also bound by {other}; give each listener its own port",
                    later.addr
                ),
            );
        }
    }
}
