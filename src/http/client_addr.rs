//! Who the client is: the TCP peer, or, behind a proxy listed in `http.trustedproxies`,
//! the right-most address of `X-Forwarded-For` that is not itself a trusted proxy. Used
//! for redirect decisions (in-region clients) and logs.

use std::net::IpAddr;

use ipnet::IpNet;

/// The trusted proxies, and the rule above.
#[derive(Debug, Clone, Default)]
pub struct ClientAddr {
    trusted_proxies: Vec<IpNet>,
}

impl ClientAddr {
    pub fn new(trusted_proxies: Vec<IpNet>) -> Self {
        ClientAddr { trusted_proxies }
    }

    /// The client's address: `peer`, unless `peer` is a trusted proxy; then the
    /// right-most address of `forwarded_for` (the `X-Forwarded-For` values in order)
    /// that is not itself a trusted proxy. An unreadable entry ends the walk at the
    /// last trusted hop, so a forged or garbled header never yields an address.
    pub fn client_ip<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if !self.is_trusted(client) {
            return Some(client);
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break;
            };
            client = ip.to_canonical();
            if !self.is_trusted(client) {
                break;
            }
        }
        Some(client)
    }

    /// The client of an actix request.
    pub fn of(&self, req: &actix_web::HttpRequest) -> Option<IpAddr> {
        let forwarded = req
            .headers()
            .get_all("X-Forwarded-For")
            .filter_map(|v| v.to_str().ok());
        self.client_ip(req.peer_addr().map(|a| a.ip()), forwarded)
    }

    /// True if `ip` is one of the trusted proxies.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_address_from_trusted_proxies_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let r = ClientAddr::new(vec!["10.0.0.0/8".parse().unwrap()]);
        // An untrusted peer's X-Forwarded-For is ignored.
        assert_eq!(
            r.client_ip(Some(ip("203.0.113.9")), ["3.5.140.1"]),
            Some(ip("203.0.113.9"))
        );
        // From a trusted proxy: the right-most untrusted hop.
        assert_eq!(
            r.client_ip(Some(ip("10.1.1.1")), ["1.1.1.1, 3.5.140.1, 10.2.2.2"]),
            Some(ip("3.5.140.1"))
        );
        // Several headers are one list, in order.
        assert_eq!(
            r.client_ip(Some(ip("10.1.1.1")), ["1.1.1.1", "3.5.140.1"]),
            Some(ip("3.5.140.1"))
        );
        // No header: the proxy itself.
        assert_eq!(r.client_ip(Some(ip("10.1.1.1")), []), Some(ip("10.1.1.1")));
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            r.client_ip(Some(ip("10.1.1.1")), ["3.5.140.1, junk, 10.9.9.9"]),
            Some(ip("10.9.9.9"))
        );
        // IPv4-mapped peers count as IPv4.
        assert_eq!(
            r.client_ip(Some(ip("::ffff:10.1.1.1")), ["198.51.100.7"]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(r.client_ip(None, ["198.51.100.7"]), None);
    }
}
