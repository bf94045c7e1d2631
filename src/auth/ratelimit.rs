//! Throttling of the routes that check or hash a password (logins, sign-ups, admin setup,
//! password change and reset) and of the emailing routes, per client IP and per account
//! (GCRA buckets from `governor`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct LoginLimiter {
    per_ip: DefaultKeyedRateLimiter<String>,
    per_account: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl LoginLimiter {
    pub fn new(per_ip_per_minute: u32, per_account_per_minute: u32) -> LoginLimiter {
        LoginLimiter {
            per_ip: RateLimiter::keyed(quota(per_ip_per_minute)),
            per_account: RateLimiter::keyed(quota(per_account_per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one attempt from both buckets; Err carries how long to wait.
    pub fn check(&self, ip: &str, account: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        self.per_ip
            .check_key(&ip.to_string())
            .map_err(|not_until| not_until.wait_time_from(now))?;
        self.per_account
            .check_key(&account.to_string())
            .map_err(|not_until| not_until.wait_time_from(now))?;
        Ok(())
    }

    /// Takes one attempt from the client's IP bucket only.
    pub fn check_ip(&self, ip: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        self.per_ip
            .check_key(&ip.to_string())
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Forgets buckets that are full again; called periodically so memory stays bounded.
    pub fn prune(&self) {
        self.per_ip.retain_recent();
        self.per_account.retain_recent();
    }
}
