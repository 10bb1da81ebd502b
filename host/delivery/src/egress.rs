//! Outbound HTTP for deliveries: no redirects followed, and no connections to private,
//! loopback, link-local or otherwise internal addresses unless the configuration's allow-list
//! names them. The check runs on every resolved address, at connection time, so DNS that
//! points a public name at an internal address is refused too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Is this address one a webhook must not reach by default?
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

#[derive(Clone, Default, Debug)]
pub struct Egress {
    /// Networks that may be reached even though they are internal.
    pub allow: Vec<IpNet>,
}

impl Egress {
    pub fn permits(&self, ip: IpAddr) -> bool {
        !internal(ip) || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Refuse URLs that can never be delivered to: not http(s), no host, or an address
    /// literal this egress does not permit.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if u.scheme() != "https" && u.scheme() != "http" {
            return Err(format!(
                "`{url}`: only http and https URLs receive webhooks"
            ));
        }
        let host = match u.host() {
            None => return Err(format!("`{url}` has no host")),
            Some(h) => h,
        };
        let literal = match host {
            url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
            url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
            url::Host::Domain("localhost") => Some(IpAddr::V4([127, 0, 0, 1].into())),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal
            && !self.permits(ip)
        {
            return Err(format!(
                "`{url}` is an internal address ({ip}); allow its network under \
                 [webhooks] allow_networks to deliver there"
            ));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!(
                "`{url}`: put credentials in headers, not in the URL"
            ));
        }
        Ok(u)
    }

    /// The delivery client: this egress's resolver, no redirects, no proxies from the
    /// environment.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(self.clone()))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("Sluice-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds")
    }
}

impl Resolve for Egress {
    fn resolve(&self, name: Name) -> Resolving {
        let me = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| me.permits(a.ip()))
                .collect();
            if allowed.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = format!(
                    "`{host}` resolves only to internal addresses ({:?}); refused",
                    found.iter().map(|a| a.ip()).collect::<Vec<_>>()
                )
                .into();
                return Err(e);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Is `url` https, or on a loopback address (what PHI may be delivered to)?
pub fn tls_or_loopback(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    u.scheme() == "https"
        || match u.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let e = Egress::default();
        for bad in [
            "http://127.0.0.1:8080/x",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://localhost/",
            "http://[::ffff:192.168.0.1]/",
        ] {
            assert!(e.check_url(bad).is_err(), "{bad}");
        }
        assert!(e.check_url("https://hooks.example.com/in").is_ok());
        assert!(e.check_url("ftp://example.com/").is_err());
        assert!(e.check_url("not a url").is_err());
        assert!(e.check_url("https://user:pw@example.com/").is_err());
        let loopback = Egress {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(loopback.check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(loopback.check_url("http://10.0.0.1/").is_err());
    }
}
