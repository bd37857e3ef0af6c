//! Failed-attempt accounting for everything guarded by a secret a client
//! presents: the header-guarded auth URLs, the management API's bearer
//! tokens and the console's sign-in. Slowed down after a few failures,
//! refused for a while after `auth_failure_limit`.
//!
//! Failures are counted per **(client, scope)**: a connection (its auth
//! URLs), and the route family (all auth URLs, the API, the console), the
//! family with a budget [`FAMILY_FACTOR`] times larger so that spraying many
//! connections is caught too. So one client's failures never refuse another
//! client, nor the same client on another connection. The client is the
//! peer address, or — only when the peer is a configured trusted proxy — the
//! address its `X-Forwarded-For` / `Forwarded` header names; IPv6 clients
//! are counted by /64 (one host holds a whole /64).
//!
//! Memory is bounded, each request O(1): two generations of at most
//! [`GENERATION`] entries; when the current one is full it becomes the
//! previous one (the older is dropped), and an entry seen again moves to the
//! current one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::outbound::Network;

/// Failures before each further failure is delayed.
const SLOW_AFTER: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// Entries per generation (two are kept).
pub const GENERATION: usize = 50_000;
/// A route family's budget, in multiples of a connection's.
pub const FAMILY_FACTOR: u32 = 5;
/// Forwarded addresses read from one request, at most.
const MAX_HOPS: usize = 32;

/// What failures are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    AuthUrls,
    Api,
    Console,
}

/// A connection is keyed by a 64-bit hash of the id presented (no
/// allocation a request; a collision only merges two connections' budgets
/// for the same client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Family(Family),
    Connection(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client: IpAddr,
    scope: Scope,
}

#[derive(Clone)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<Key, Entry>,
    previous: HashMap<Key, Entry>,
}

impl Generations {
    /// The entry of `key`, moved to the current generation.
    fn get(&mut self, key: &Key) -> Option<&mut Entry> {
        if !self.current.contains_key(key) {
            let old = self.previous.remove(key)?;
            self.insert(*key, old);
        }
        self.current.get_mut(key)
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, entry);
    }
}

/// Failed-attempt accounting, built once per process.
pub struct FailureLimiter {
    limit: u32,
    block: Duration,
    entries: Mutex<Generations>,
}

/// Who is asking, and for what: the keys a request is counted under.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    client: IpAddr,
    family: Family,
    connection: Option<u64>,
}

impl Attempt {
    pub fn new(client: IpAddr, family: Family, connection: Option<&str>) -> Self {
        Self {
            client: counted(client),
            family,
            connection: connection.map(|c| {
                use std::hash::{Hash as _, Hasher as _};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                c.hash(&mut hasher);
                hasher.finish()
            }),
        }
    }

    fn keys(&self) -> impl Iterator<Item = (Key, u32)> {
        let family = Key {
            client: self.client,
            scope: Scope::Family(self.family),
        };
        let connection = self.connection.map(|c| Key {
            client: self.client,
            scope: Scope::Connection(c),
        });
        // A family is the only key of an attempt that names no connection
        // (the API, the console): then it has the base budget.
        let factor = if connection.is_some() {
            FAMILY_FACTOR
        } else {
            1
        };
        std::iter::once((family, factor)).chain(connection.map(|k| (k, 1)))
    }
}

impl FailureLimiter {
    pub fn new(limit: u32, block: Duration) -> Self {
        Self {
            limit,
            block,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(seconds)` while the attempt is refused under any of its keys.
    pub fn blocked(&self, attempt: &Attempt) -> Option<u64> {
        let mut entries = self.lock();
        let now = Instant::now();
        attempt
            .keys()
            .filter_map(|(key, _)| {
                let until = entries.get(&key)?.blocked_until?;
                until.checked_duration_since(now)
            })
            .max()
            .map(|left| left.as_secs().max(1))
    }

    /// Counts a failure under each key; returns how long to delay the answer.
    pub fn failure(&self, attempt: &Attempt) -> Duration {
        let mut entries = self.lock();
        let now = Instant::now();
        let mut over = 0;
        for (key, factor) in attempt.keys() {
            let limit = self.limit.saturating_mul(factor);
            if entries.get(&key).is_none() {
                entries.insert(
                    key,
                    Entry {
                        window_start: now,
                        failures: 0,
                        blocked_until: None,
                    },
                );
            }
            let Some(entry) = entries.get(&key) else {
                continue;
            };
            if now.duration_since(entry.window_start) >= WINDOW {
                entry.window_start = now;
                entry.failures = 0;
            }
            entry.failures += 1;
            if entry.failures >= limit {
                entry.blocked_until = Some(now + self.block);
                entry.failures = 0;
                entry.window_start = now;
            }
            if factor == 1 || attempt.connection.is_none() {
                over = over.max(entry.failures.saturating_sub(SLOW_AFTER));
            }
        }
        Duration::from_millis(u64::from(over.min(10)) * 100)
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let entries = self.lock();
        (entries.current.len(), entries.previous.len())
    }
}

/// An address as the limiter counts it: IPv4 as is (IPv4-mapped IPv6 too),
/// IPv6 by its /64.
pub fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// One `Forwarded` / `X-Forwarded-For` element as an address (`1.2.3.4`,
/// `1.2.3.4:5`, `[::1]:5`, `::1`, `for="[::1]"`).
fn forwarded_address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')
        .and_then(|(host, _)| host.parse().ok())
}

/// The client of a request (its whole address; the limiter counts it with
/// [`counted`]): the peer, or when the peer is a trusted proxy,
/// the rightmost address its forwarding headers name that is not itself a
/// trusted proxy (the leftmost if all are).
pub fn client(
    peer: Option<IpAddr>,
    headers: &actix_web::http::header::HeaderMap,
    trusted: &[Network],
) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        if let Ok(text) = value.to_str() {
            hops.extend(text.split(',').take(MAX_HOPS).filter_map(forwarded_address));
        }
    }
    if hops.is_empty() {
        for value in headers.get_all("forwarded") {
            if let Ok(text) = value.to_str() {
                let fors = text
                    .split([',', ';'])
                    .take(MAX_HOPS)
                    .filter_map(|part| {
                        let (name, value) = part.split_once('=')?;
                        name.trim().eq_ignore_ascii_case("for").then_some(value)
                    })
                    .filter_map(forwarded_address);
                hops.extend(fors);
            }
        }
    }
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(**ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_client_is_named_only_by_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = Network::parse_list("10.0.0.0/24").unwrap();
        let xff = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.1")]);
        // The rightmost untrusted hop; a client-supplied left part is ignored.
        assert_eq!(
            client(Some(proxy), &xff, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Not from a trusted proxy: the header means nothing.
        let stranger: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(client(Some(stranger), &xff, &trusted), stranger);
        let fwd = headers(&[("forwarded", "for=\"[2001:db8:1:2::7]:4711\";proto=https")]);
        assert_eq!(
            client(Some(proxy), &fwd, &trusted),
            "2001:db8:1:2::7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client(Some(proxy), &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn ipv6_is_counted_by_its_64() {
        assert_eq!(
            counted("2001:db8::1".parse().unwrap()),
            counted("2001:db8::ffff:2".parse().unwrap())
        );
        assert_ne!(
            counted("2001:db8::1".parse().unwrap()),
            counted("2001:db8:0:1::1".parse().unwrap())
        );
        assert_eq!(
            counted("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn one_clients_failures_refuse_no_one_else() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let a = Attempt::new("192.0.2.1".parse().unwrap(), Family::AuthUrls, Some("conX"));
        for _ in 0..3 {
            limiter.failure(&a);
        }
        assert!(limiter.blocked(&a).is_some());
        let b = Attempt::new("192.0.2.2".parse().unwrap(), Family::AuthUrls, Some("conX"));
        assert!(limiter.blocked(&b).is_none(), "another client");
        let other = Attempt::new("192.0.2.1".parse().unwrap(), Family::AuthUrls, Some("conY"));
        assert!(limiter.blocked(&other).is_none(), "another connection");
        // Spraying connections: the family's budget (5 × 3) is caught.
        for i in 0..15 {
            limiter.failure(&Attempt::new(
                "192.0.2.3".parse().unwrap(),
                Family::AuthUrls,
                Some(&format!("c{i}")),
            ));
        }
        assert!(limiter
            .blocked(&Attempt::new(
                "192.0.2.3".parse().unwrap(),
                Family::AuthUrls,
                Some("fresh")
            ))
            .is_some());
        assert!(limiter
            .blocked(&Attempt::new(
                "192.0.2.3".parse().unwrap(),
                Family::Api,
                None
            ))
            .is_none());
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = FailureLimiter::new(20, Duration::from_secs(60));
        for i in 0..(3 * GENERATION as u32) {
            let ip = IpAddr::from(i.to_be_bytes());
            limiter.failure(&Attempt::new(ip, Family::Api, None));
        }
        let (current, previous) = limiter.sizes();
        assert!(
            current <= GENERATION && previous <= GENERATION,
            "{current} + {previous}"
        );
    }
}
