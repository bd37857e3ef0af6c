//! The one policy for every URL botgate fetches on a tenant's behalf
//! (engines today; attachments and any later fetch go through it too).
//!
//! A tenant chooses the URL, so the URL is hostile: botgate must not become
//! a way to reach its own network. Every address a request would connect to
//! is checked against the policy — IP literals before the request, names by
//! the client's resolver, so the check is made on the very addresses the
//! connection uses (a name that resolves to a public address when checked
//! and a private one when connected cannot slip through: there is one
//! resolution). Refused unless the operator allows them in
//! `engine_allowed_networks`: loopback, private (10/8, 172.16/12,
//! 192.168/16), link-local (169.254/16 with the cloud metadata address,
//! fe80::/10), CGNAT (100.64/10), ULA (fc00::/7, with fd00:ec2::254),
//! multicast, broadcast, unspecified and reserved ranges, IPv6 forms that
//! embed a refused IPv4 address (mapped, NAT64, 6to4), and the gateway's own
//! listen address. Redirects are never followed; answers are read up to a
//! cap, and a longer one is refused while reading.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A network in CIDR form (`10.0.0.0/8`, `::1/128`; a bare address is one
/// host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP network (e.g. 127.0.0.1/32, ::1/128)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a prefix length outside 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    /// A comma-separated list; empty for none.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Self::parse)
            .collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a.get(..full) != b.get(..full) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (a.get(full), b.get(full)) {
        (Some(x), Some(y)) => x & mask == y & mask,
        _ => false,
    }
}

/// Why a URL or an address was refused, in words safe to show the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the URL must be http or https with a host")]
    BadUrl,
    #[error(
        "the address is not allowed for outbound requests (loopback, private, link-local or \
         reserved); the operator may allow its network with engine_allowed_networks"
    )]
    Address,
    #[error("the name does not resolve")]
    Unresolved,
}

/// Which addresses botgate may connect to for a tenant.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Vec<Network>,
    /// The gateway's own listen address (when it is a specific one).
    own: Option<IpAddr>,
}

impl Policy {
    pub fn new(allowed: Vec<Network>, listen: Option<SocketAddr>) -> Self {
        Self {
            allowed,
            own: listen.map(|l| l.ip()).filter(|ip| !ip.is_unspecified()),
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allowed.iter().any(|n| n.contains(ip)) {
            return true;
        }
        !refused_by_default(ip) && Some(ip) != self.own
    }

    /// Checks a URL's scheme and, for an IP literal host, its address (a name
    /// is checked when it is resolved, at connection time).
    pub fn check_url(&self, url: &str) -> Result<url::Url, Refused> {
        let url = url::Url::parse(url).map_err(|_| Refused::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::BadUrl);
        }
        let ip = match url.host() {
            None => return Err(Refused::BadUrl),
            Some(url::Host::Domain(_)) => return Ok(url),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        };
        if self.permits(ip) {
            Ok(url)
        } else {
            Err(Refused::Address)
        }
    }
}

fn refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT, 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18/15
        || a >= 240 // reserved
}

fn refused_by_default(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => refused_v4(ip),
        IpAddr::V6(ip) => refused_v6(ip),
    }
}

fn refused_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return refused_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // ULA, fc00::/7 (fd00:ec2::254 among them)
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// The IPv4 address an IPv6 one stands for, where it embeds one that a
/// connection would reach: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(tail(hi, lo)),
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(tail(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        _ => None,
    }
}

/// The client's resolver: a name's addresses, less those the policy
/// refuses; none left is an error (and nothing is sent).
struct PolicyResolver {
    policy: Arc<Policy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|_| {
                    Box::new(Refused::Unresolved) as Box<dyn std::error::Error + Send + Sync>
                })?
                .collect();
            let permitted: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(Box::new(Refused::Address) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client for tenant-given URLs: the policy's resolver, no
/// redirects, no proxies from the environment, bounded answers.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    policy: Arc<Policy>,
    max_answer: usize,
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the answer was cut short")]
    Cut(#[source] reqwest::Error),
}

impl Client {
    pub fn new(policy: Policy, max_answer: usize) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .build()?;
        Ok(Self {
            http,
            policy,
            max_answer,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A POST to a tenant-given URL, checked first.
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, Refused> {
        let url = self.policy.check_url(url)?;
        Ok(self.http.post(url))
    }

    /// A GET of a URL botgate was pointed at (a platform's redirect to a
    /// host it is not trusted with), checked first.
    pub fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, Refused> {
        let url = self.policy.check_url(url)?;
        Ok(self.http.get(url))
    }

    /// The answer's body, refused past the cap (by its length if it says
    /// one, else while reading).
    pub async fn read(&self, response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
        read_capped(response, self.max_answer).await
    }
}

/// An answer's body, refused past `cap` bytes (by its length if it says
/// one, else while reading): for every answer botgate reads from a platform
/// or an engine.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(ReadError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Cut)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether an answer is a failure on the server's side that the same
/// request may get past later, rather than a refusal of the request: every
/// 5xx, and 408 (the server did not read the request in time, so did
/// nothing with it: RFC 9110 §15.5.9). A loaded server answers 408; taking
/// it for a refusal failed messages that a retry delivers (a CI run,
/// 2026-12-07: 5 of 601 Slack messages).
pub fn retryable_status(status: u16) -> bool {
    status == 408 || (500..=599).contains(&status)
}

/// Why a request got no answer, for a message: "timed out" or
/// "unreachable" (never the error's text, which may name an address).
pub fn no_answer(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else {
        "unreachable"
    }
}

/// Whether `error` (a request's failure) was the policy refusing an address.
pub fn refused(error: &reqwest::Error) -> Option<Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let policy = Policy::default();
        for refused in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused} must be refused");
        }
        for permitted in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860::8888"] {
            assert!(policy.permits(ip(permitted)), "{permitted} is public");
        }
    }

    #[test]
    fn the_operator_allows_networks_and_the_listen_address_is_refused() {
        let allowed = Network::parse_list("127.0.0.0/8, ::1/128,10.1.0.0/16").unwrap();
        let policy = Policy::new(allowed, Some("203.0.113.7:8080".parse().unwrap()));
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("::1")));
        assert!(policy.permits(ip("10.1.200.3")));
        assert!(!policy.permits(ip("10.2.0.1")));
        assert!(!policy.permits(ip("203.0.113.7")), "the gateway itself");
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("example.com/8").is_err());
        assert_eq!(Network::parse("::1").unwrap().to_string(), "::1/128");
        assert!(Network::parse("172.16.0.0/12")
            .unwrap()
            .contains(ip("172.20.1.1")));
        assert!(!Network::parse("172.16.0.0/12")
            .unwrap()
            .contains(ip("172.32.0.1")));
    }

    #[test]
    fn urls_are_checked_by_scheme_and_literal_address() {
        let policy = Policy::default();
        assert_eq!(policy.check_url("ftp://example.com/"), Err(Refused::BadUrl));
        assert_eq!(policy.check_url("not a url"), Err(Refused::BadUrl));
        assert_eq!(
            policy.check_url("http://127.0.0.1:9/"),
            Err(Refused::Address)
        );
        assert_eq!(policy.check_url("http://[::1]:9/"), Err(Refused::Address));
        assert_eq!(
            policy.check_url("http://169.254.169.254/latest"),
            Err(Refused::Address)
        );
        // Names are checked when resolved.
        assert!(policy
            .check_url("https://engine.example.com/botgate")
            .is_ok());
    }
}
