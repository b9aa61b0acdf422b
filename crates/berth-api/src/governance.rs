//! What the API needs to govern requests beyond the store: the secrets keyring, the rate
//! limiters and the memory of refused tokens. Handlers and middleware reach it as an
//! `Extension`.
//!
//! Two budgets guard the API. Every request first takes one from its client address's
//! bucket, before anything is read from the store, so that a flood without a token, or
//! with invalid ones, is refused cheaply (429). A request with a valid token then takes
//! one from its user's bucket: all of a user's tokens share it, so making more tokens
//! does not buy more requests. Tokens found invalid (unknown, revoked, expired) are
//! remembered for a while, so that sending the same bad token again costs no lookup.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use berth_core::{authz::Principal, ports::TokenRecord};
use berth_secrets::Keyring;

/// Requests one user (or one address) may make: a bucket of `burst` that refills at
/// `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 50.0,
            burst: 200,
        }
    }
}

impl RateLimit {
    /// This limit `factor` times over.
    #[must_use]
    pub fn times(self, factor: u32) -> Self {
        Self {
            per_second: self.per_second * f64::from(factor),
            burst: self.burst.saturating_mul(factor),
        }
    }
}

/// How many users' allowance one client address gets by default: a few people or a CI
/// runner behind one address should not starve each other.
pub const ADDRESS_FACTOR: u32 = 4;

/// Token buckets, one per key (a user, an address), refilled lazily when the key is next
/// seen.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept at most; beyond that, full buckets (tokens idle long enough) are dropped.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    /// A limiter allowing `limit` per key.
    #[must_use]
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket at `now`; `Err` carries how long until one
    /// is available.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let rate = self.limit.per_second.max(0.001);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, (level, at)| {
                *level + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (level, at) = buckets.entry(key.to_owned()).or_insert((burst, now));
        let refilled = (*level + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if refilled >= 1.0 {
            *level = refilled - 1.0;
            Ok(())
        } else {
            *level = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / rate))
        }
    }
}

/// The rate-limit key of a client address: the address itself for IPv4, its /64 for
/// IPv6 (one host usually holds a whole /64, so single addresses would be free to
/// rotate). Without a known address (a server that does not pass it on), every request
/// shares one bucket.
#[must_use]
pub fn address_key(address: Option<IpAddr>) -> String {
    match address.map(|a| a.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".to_owned(),
    }
}

/// Tokens found invalid for good (unknown, revoked or expired: none of these ever
/// becomes valid again), with the answer given, so that the same bad token sent again
/// is refused without a store lookup.
#[derive(Debug, Default)]
pub struct RefusedTokens {
    refused: Mutex<HashMap<String, (String, Instant)>>,
}

/// How long a refused token is remembered.
const REFUSED_FOR: Duration = Duration::from_secs(600);

impl RefusedTokens {
    /// Remembers that the token of hash `hash` was refused with `answer` at `now`.
    pub fn remember(&self, hash: &str, answer: &str, now: Instant) {
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if refused.len() >= MAX_BUCKETS && !refused.contains_key(hash) {
            refused.retain(|_, (_, until)| *until > now);
            if refused.len() >= MAX_BUCKETS {
                // Bounded memory over a perfect memory: forgetting only costs lookups,
                // and those are bounded by the address limit.
                refused.clear();
            }
        }
        refused.insert(hash.to_owned(), (answer.to_owned(), now + REFUSED_FOR));
    }

    /// The answer given to the token of hash `hash`, if it was refused recently.
    pub fn recall(&self, hash: &str, now: Instant) -> Option<String> {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        refused
            .get(hash)
            .filter(|(_, until)| *until > now)
            .map(|(answer, _)| answer.clone())
    }
}

/// Tokens authenticated recently, with their user's [`Principal`], kept only while the
/// store has not written anything since they were read ([`Store::generation`]): any
/// write (a token revoked, a user deleted, a team changed) makes the next request read
/// them again, so a revocation or a change of roles counts from the very next request.
/// Expiry is checked on every request by the caller, against the record kept here.
/// Saves the token, user and team reads of every request (issue 9: the API read path).
///
/// [`Store::generation`]: berth_core::ports::Store::generation
#[derive(Debug, Default)]
pub struct Identities {
    known: Mutex<HashMap<String, Known>>,
}

/// A token as authentication found it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The token's record.
    pub record: TokenRecord,
    /// Its user, with the roles it holds.
    pub principal: Principal,
}

#[derive(Debug)]
struct Known {
    generation: u64,
    identity: Arc<Identity>,
}

impl Identities {
    /// What token `hash` authenticated as, if it was read while the store stood at
    /// `generation` (`None`: the store does not count writes, nothing is kept).
    pub fn recall(&self, hash: &str, generation: Option<u64>) -> Option<Arc<Identity>> {
        let generation = generation?;
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .get(hash)
            .filter(|k| k.generation == generation)
            .map(|k| k.identity.clone())
    }

    /// Keeps what token `hash` authenticated as, read from the store when it stood at
    /// `generation` (taken *before* reading).
    pub fn remember(&self, hash: &str, generation: Option<u64>, identity: Identity) {
        let Some(generation) = generation else { return };
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= MAX_BUCKETS && !known.contains_key(hash) {
            // Bounded memory: forgetting only costs a lookup.
            known.retain(|_, k| k.generation == generation);
            if known.len() >= MAX_BUCKETS {
                known.clear();
            }
        }
        known.insert(
            hash.to_owned(),
            Known {
                generation,
                identity: Arc::new(identity),
            },
        );
    }
}

/// Keys, limits and settings of governance.
#[derive(Debug, Clone)]
pub struct Governance {
    /// Seals and opens secret values.
    pub keyring: Arc<Keyring>,
    /// Per-user request limits, shared by all of a user's tokens.
    pub limiter: Arc<RateLimiter>,
    /// Per-address request limits, taken before the token is looked up.
    pub address_limiter: Arc<RateLimiter>,
    /// Tokens refused recently, refused again without a lookup.
    pub refused: Arc<RefusedTokens>,
    /// Tokens authenticated recently ([`Identities`]).
    pub identities: Arc<Identities>,
}

impl Governance {
    /// Governance with `keyring`, `limit` per user and [`ADDRESS_FACTOR`] times `limit`
    /// per client address.
    #[must_use]
    pub fn new(keyring: Arc<Keyring>, limit: RateLimit) -> Self {
        Self {
            keyring,
            limiter: Arc::new(RateLimiter::new(limit)),
            address_limiter: Arc::new(RateLimiter::new(limit.times(ADDRESS_FACTOR))),
            refused: Arc::new(RefusedTokens::default()),
            identities: Arc::new(Identities::default()),
        }
    }

    /// The same governance with `limit` per client address.
    #[must_use]
    pub fn with_address_limit(self, limit: RateLimit) -> Self {
        Self {
            address_limiter: Arc::new(RateLimiter::new(limit)),
            ..self
        }
    }

    /// Governance with a random key that lives only as long as the process, for tests
    /// and embedding: secrets written under it cannot be read after a restart.
    #[must_use]
    pub fn ephemeral() -> Self {
        Self::new(Arc::new(Keyring::generate()), RateLimit::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate_and_cap_at_the_burst() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take("a", t0).is_ok());
        }
        let wait = limiter.take("a", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limiter.take("b", t0).is_ok(), "tokens have separate buckets");
        assert!(limiter.take("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.take("a", t0 + Duration::from_millis(500)).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.take("a", later).is_ok());
        }
        assert!(limiter.take("a", later).is_err());
    }

    #[test]
    fn addresses_are_keyed_by_host_or_ipv6_64() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(Some(v4)), "192.0.2.7");
        assert_eq!(address_key(Some(mapped)), "192.0.2.7", "one host, one bucket");
        assert_eq!(address_key(Some(a)), address_key(Some(b)));
        assert_ne!(address_key(Some(a)), address_key(Some(other)));
        assert_eq!(address_key(None), "unknown");
    }

    #[test]
    fn refused_tokens_are_recalled_until_they_are_forgotten() {
        let refused = RefusedTokens::default();
        let t0 = Instant::now();
        assert_eq!(refused.recall("h", t0), None);
        refused.remember("h", "token 1 was revoked", t0);
        assert_eq!(refused.recall("h", t0).as_deref(), Some("token 1 was revoked"));
        assert_eq!(refused.recall("other", t0), None);
        assert_eq!(refused.recall("h", t0 + REFUSED_FOR), None);
        // Memory stays bounded under a flood of distinct tokens.
        for i in 0..=MAX_BUCKETS {
            refused.remember(&i.to_string(), "unknown", t0);
        }
        assert!(refused.refused.lock().unwrap().len() <= MAX_BUCKETS);
    }

    #[test]
    fn an_address_gets_several_users_worth_by_default() {
        let limit = RateLimit {
            per_second: 2.0,
            burst: 3,
        };
        let g = Governance::new(Arc::new(Keyring::generate()), limit);
        let t0 = Instant::now();
        for _ in 0..3 * ADDRESS_FACTOR {
            assert!(g.address_limiter.take("a", t0).is_ok());
        }
        assert!(g.address_limiter.take("a", t0).is_err());
        let g = g.with_address_limit(limit);
        for _ in 0..3 {
            assert!(g.address_limiter.take("a", t0).is_ok());
        }
        assert!(g.address_limiter.take("a", t0).is_err());
    }
}
