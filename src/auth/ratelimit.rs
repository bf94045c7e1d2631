//! Throttling of the routes that check or hash a password (logins, sign-ups, admin setup,
//! password change and reset) and of the emailing routes.
//!
//! Three kinds of limit, each answering a different attacker:
//!
//! - **Per client IP, every attempt** (GCRA from `governor`): one address cannot spend
//!   more than its share of argon2 work, whatever accounts it aims at.
//! - **Per account and client IP, failed attempts only** ([`Backoff`]): a guesser gets a
//!   few free tries at an account from its address, then waits twice as long after each
//!   further failure. It is keyed by the pair so that a guesser somewhere else cannot
//!   lock the owner out: the owner's own address has a pair of its own. (An earlier
//!   per-account bucket counted every attempt from anywhere: 10 wrong logins a minute
//!   from anyone kept the owner out for good, review finding Q1.)
//! - **Per account, failed attempts only, from everywhere** ([`Ceiling`]): a much larger
//!   leaky bucket, only a safety net against guessing spread over many addresses. An
//!   address the account signed in from before passes it (the caller decides that, see
//!   [`Attempt::charge_account`]), so even then the owner is not locked out at home.
//!
//! A failure cannot be known before the argon2 verification, and many guesses can be in
//! flight at once: each attempt is charged as a failure when it starts and handed back
//! when the password turns out right ([`Attempt::succeeded`]). An attempt that never
//! finishes (client gone, error) stays charged.
//!
//! Everything is in memory, per server process.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The wait after the last free failure; it doubles with each further failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between two attempts of one account from one address.
pub const BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);
/// A pair with no attempt for this long starts afresh.
pub const BACKOFF_FORGET: Duration = Duration::from_secs(3600);
/// The account-wide ceiling refills over this period.
pub const CEILING_PERIOD: Duration = Duration::from_secs(3600);
/// Emails asked for per address per minute (verification, reset): enough for a user who
/// lost one, too few to flood an inbox through us.
pub const MAIL_PER_ADDRESS_PER_MINUTE: u32 = 10;

/// Failed attempts of one key: an account from one client IP, or the password checks of
/// one session. Plain data with `now` passed in, so its arithmetic is unit-tested.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backoff {
    failures: u32,
    last: Option<Instant>,
    blocked_until: Option<Instant>,
}

impl Backoff {
    /// Charges one attempt as a failure, or says how long to wait. The `free`-th failure
    /// in a row starts the backoff at [`BACKOFF_BASE`]; each further one doubles it, up to
    /// [`BACKOFF_CAP`].
    pub fn take(&mut self, now: Instant, free: u32) -> Result<(), Duration> {
        if self.is_stale(now) {
            *self = Backoff::default();
        }
        if let Some(until) = self.blocked_until
            && now < until
        {
            return Err(until - now);
        }
        self.failures = self.failures.saturating_add(1);
        self.last = Some(now);
        let free = free.max(1);
        if self.failures >= free {
            // 2^20 s is far past the cap: no overflow, the cap decides.
            let doublings = (self.failures - free).min(20);
            let wait = BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_CAP);
            self.blocked_until = Some(now + wait);
        }
        Ok(())
    }

    /// Hands back an attempt charged by [`take`](Self::take) that checked nothing (another
    /// limit refused it). Below the free count it no longer blocks; past it, the wait it
    /// started stays (the key is a guesser's anyway).
    pub fn refund(&mut self, free: u32) {
        self.failures = self.failures.saturating_sub(1);
        if self.failures < free.max(1) {
            self.blocked_until = None;
        }
    }

    /// Whether nothing is left to remember: no attempt for [`BACKOFF_FORGET`].
    pub fn is_stale(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|last| now.saturating_duration_since(last) >= BACKOFF_FORGET)
    }
}

/// The failed attempts at one account from everywhere: room for `capacity` failures,
/// refilled evenly over [`CEILING_PERIOD`] (GCRA on whole durations, so no rounding).
#[derive(Clone, Debug, PartialEq)]
pub struct Ceiling {
    /// When the bucket will be empty again ("theoretical arrival time").
    tat: Instant,
}

impl Ceiling {
    pub fn new(now: Instant) -> Ceiling {
        Ceiling { tat: now }
    }

    fn interval(capacity: u32) -> Duration {
        CEILING_PERIOD / capacity.max(1)
    }

    /// Charges one failure, or says how long until there is room for one.
    pub fn take(&mut self, now: Instant, capacity: u32) -> Result<(), Duration> {
        let next = self.tat.max(now) + Self::interval(capacity);
        let ahead = next.saturating_duration_since(now);
        if ahead > CEILING_PERIOD {
            return Err(ahead - CEILING_PERIOD);
        }
        self.tat = next;
        Ok(())
    }

    /// Hands back one charged failure (the password was right, or nothing was checked).
    pub fn refund(&mut self, capacity: u32) {
        if let Some(earlier) = self.tat.checked_sub(Self::interval(capacity)) {
            self.tat = earlier;
        }
    }

    pub fn is_empty(&self, now: Instant) -> bool {
        self.tat <= now
    }
}

/// The limits' settings (see the server's configuration).
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Attempts per client IP per minute at every route that checks or hashes a password.
    pub per_ip_per_minute: u32,
    /// Failed attempts in a row, per account and client IP (or per session for password
    /// changes), before the backoff starts.
    pub free_failures: u32,
    /// Failed logins per account per hour from all addresses together.
    pub account_failures_per_hour: u32,
}

pub struct LoginLimiter {
    limits: LoginLimits,
    per_ip: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<String>,
    backoffs: Mutex<HashMap<String, Backoff>>,
    ceilings: Mutex<HashMap<String, Ceiling>>,
    clock: DefaultClock,
}

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN))
}

/// A poisoned map is still a valid map (each update is a plain assignment): keep going.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One password check in progress, charged as a failure until [`succeeded`](Self::succeeded).
#[must_use = "an attempt that is dropped stays counted as a failure"]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    key: String,
    account: Option<String>,
}

impl Attempt<'_> {
    /// Charges the attempt to the account-wide ceiling as well. On Err nothing is charged
    /// there; the caller either lets the attempt through anyway (an address the account
    /// signed in from) or gives up with [`cancel`](Self::cancel).
    pub fn charge_account(&mut self, account: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let capacity = self.limiter.limits.account_failures_per_hour;
        locked(&self.limiter.ceilings)
            .entry(account.to_string())
            .or_insert_with(|| Ceiling::new(now))
            .take(now, capacity)?;
        self.account = Some(account.to_string());
        Ok(())
    }

    /// The password was right: the key starts afresh, and the account's ceiling gets its
    /// attempt back (other addresses' failures still count there).
    pub fn succeeded(self) {
        locked(&self.limiter.backoffs).remove(&self.key);
        if let Some(account) = &self.account
            && let Some(c) = locked(&self.limiter.ceilings).get_mut(account)
        {
            c.refund(self.limiter.limits.account_failures_per_hour);
        }
    }

    /// Nothing was checked: the attempt counts nowhere.
    pub fn cancel(self) {
        if let Some(b) = locked(&self.limiter.backoffs).get_mut(&self.key) {
            b.refund(self.limiter.limits.free_failures);
        }
        if let Some(account) = &self.account
            && let Some(c) = locked(&self.limiter.ceilings).get_mut(account)
        {
            c.refund(self.limiter.limits.account_failures_per_hour);
        }
    }
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> LoginLimiter {
        LoginLimiter {
            limits,
            per_ip: RateLimiter::keyed(quota(limits.per_ip_per_minute)),
            per_address: RateLimiter::keyed(quota(MAIL_PER_ADDRESS_PER_MINUTE)),
            backoffs: Mutex::new(HashMap::new()),
            ceilings: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one attempt from the client's IP bucket.
    pub fn check_ip(&self, ip: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        self.per_ip
            .check_key(&ip.to_string())
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Takes one email request from the client's IP bucket and the address's bucket.
    pub fn check_mail(&self, ip: &str, address: &str) -> Result<(), Duration> {
        self.check_ip(ip)?;
        let now = self.clock.now();
        self.per_address
            .check_key(&address.to_string())
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Starts a password check keyed by `key` (after the client's IP bucket): charged as
    /// a failure of the key until the attempt succeeds.
    pub fn begin(&self, ip: &str, key: &str) -> Result<Attempt<'_>, Duration> {
        self.check_ip(ip)?;
        locked(&self.backoffs)
            .entry(key.to_string())
            .or_default()
            .take(Instant::now(), self.limits.free_failures)?;
        Ok(Attempt {
            limiter: self,
            key: key.to_string(),
            account: None,
        })
    }

    /// Starts a login of `account` from `ip`: the IP bucket, then the pair's backoff.
    /// The caller adds the account-wide ceiling with [`Attempt::charge_account`].
    pub fn begin_login(&self, ip: &str, account: &str) -> Result<Attempt<'_>, Duration> {
        // The separator cannot occur in a normalised email, so pairs do not collide.
        self.begin(ip, &format!("{account}\u{0}{ip}"))
    }

    /// Forgets what no longer limits anything; called periodically so memory stays bounded.
    pub fn prune(&self) {
        self.per_ip.retain_recent();
        self.per_address.retain_recent();
        let now = Instant::now();
        locked(&self.backoffs).retain(|_, b| !b.is_stale(now));
        locked(&self.ceilings).retain(|_, c| !c.is_empty(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_is_free_then_doubles_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..4 {
            assert_eq!(b.take(t0, 5), Ok(()));
        }
        // The fifth failure is allowed and starts the wait.
        assert_eq!(b.take(t0, 5), Ok(()));
        assert_eq!(b.take(t0, 5), Err(secs(1)));
        let mut now = t0 + secs(1);
        let mut waits = Vec::new();
        for _ in 0..14 {
            assert_eq!(b.take(now, 5), Ok(()));
            let wait = b.take(now, 5).expect_err("blocked right after a failure");
            waits.push(wait.as_secs());
            now += wait;
        }
        assert_eq!(
            waits,
            [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900, 900]
        );
    }

    #[test]
    fn backoff_forgets_after_a_quiet_hour() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..3 {
            b.take(t0, 3).expect("free");
        }
        assert!(b.take(t0, 3).is_err());
        assert!(!b.is_stale(t0 + secs(3599)));
        assert!(b.is_stale(t0 + BACKOFF_FORGET));
        let later = t0 + BACKOFF_FORGET;
        for _ in 0..3 {
            assert_eq!(b.take(later, 3), Ok(()), "free again");
        }
    }

    #[test]
    fn backoff_refund_undoes_a_charge() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        b.take(t0, 2).expect("free");
        b.take(t0, 2).expect("free, starts the wait");
        b.refund(2);
        assert_eq!(b.take(t0, 2), Ok(()), "the refunded attempt did not block");
    }

    #[test]
    fn ceiling_counts_failures_and_refills_over_the_period() {
        let t0 = Instant::now();
        let mut c = Ceiling::new(t0);
        for _ in 0..100 {
            assert_eq!(c.take(t0, 100), Ok(()));
        }
        // Room for one more after 1/100 of the period.
        assert_eq!(c.take(t0, 100), Err(secs(36)));
        c.refund(100);
        assert_eq!(c.take(t0, 100), Ok(()), "a success handed its attempt back");
        assert_eq!(c.take(t0 + secs(35), 100), Err(secs(1)));
        assert_eq!(c.take(t0 + secs(36), 100), Ok(()));
        assert!(!c.is_empty(t0 + CEILING_PERIOD));
        assert!(c.is_empty(t0 + CEILING_PERIOD + secs(36)));
    }

    fn limiter(free_failures: u32, account_failures_per_hour: u32) -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            per_ip_per_minute: 1000,
            free_failures,
            account_failures_per_hour,
        })
    }

    #[test]
    fn a_guesser_elsewhere_does_not_block_the_owners_address() {
        let l = limiter(3, 1000);
        for _ in 0..3 {
            drop(l.begin_login("6.6.6.6", "t:alice").expect("free"));
        }
        assert!(l.begin_login("6.6.6.6", "t:alice").is_err());
        let owner = l.begin_login("1.2.3.4", "t:alice").expect("own pair");
        owner.succeeded();
    }

    #[test]
    fn success_hands_back_and_cancel_counts_nowhere() {
        let l = limiter(3, 2);
        let mut a = l.begin_login("1.1.1.1", "t:bob").expect("free");
        a.charge_account("t:bob").expect("room");
        a.succeeded();
        // Two failures from two addresses fill the ceiling; the success above did not.
        for ip in ["1.1.1.1", "2.2.2.2"] {
            let mut a = l.begin_login(ip, "t:bob").expect("free");
            a.charge_account("t:bob").expect("room");
            drop(a);
        }
        let mut a = l.begin_login("3.3.3.3", "t:bob").expect("own pair");
        assert!(a.charge_account("t:bob").is_err(), "ceiling reached");
        a.cancel();
        // The cancelled attempt counted nowhere: the pair still has its three free tries.
        for _ in 0..3 {
            drop(l.begin_login("3.3.3.3", "t:bob").expect("free"));
        }
        assert!(l.begin_login("3.3.3.3", "t:bob").is_err());
    }
}
