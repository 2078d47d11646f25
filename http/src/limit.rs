//! Failed sign-ins, counted per user, so a password cannot be guessed at
//! speed: after [`SignInLimits::MAX_FAILURES`] wrong passwords within
//! [`SignInLimits::WINDOW`] the user's sign-ins are refused (429, with
//! `Retry-After`) until the oldest of them is older than the window. A
//! good password clears the count. Counted by each node on its own, in
//! memory. Sans-IO: time is an input.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use switchboard_storage::model::TenantId;

type Key = (TenantId, String);

/// The failures of each user still inside the window.
#[derive(Debug, Default)]
pub struct SignInLimits {
    failures: HashMap<Key, VecDeque<Instant>>,
}

impl SignInLimits {
    pub const MAX_FAILURES: usize = 5;
    pub const WINDOW: Duration = Duration::from_secs(300);
    /// Users tracked before the expired ones are swept.
    const SWEEP_AT: usize = 10_000;

    fn prune(q: &mut VecDeque<Instant>, now: Instant) {
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Self::WINDOW)
        {
            q.pop_front();
        }
    }

    /// `Err(wait)` when `user` may not try now.
    pub fn check(&mut self, tenant: &TenantId, user: &str, now: Instant) -> Result<(), Duration> {
        let key = (tenant.clone(), user.to_owned());
        let Some(q) = self.failures.get_mut(&key) else {
            return Ok(());
        };
        Self::prune(q, now);
        if q.len() < Self::MAX_FAILURES {
            if q.is_empty() {
                self.failures.remove(&key);
            }
            return Ok(());
        }
        let oldest = q.front().copied().unwrap_or(now);
        Err((oldest + Self::WINDOW).saturating_duration_since(now))
    }

    /// A wrong password (or an unknown user) for `user`.
    pub fn failed(&mut self, tenant: &TenantId, user: &str, now: Instant) {
        if self.failures.len() >= Self::SWEEP_AT {
            self.failures.retain(|_, q| {
                Self::prune(q, now);
                !q.is_empty()
            });
        }
        let q = self
            .failures
            .entry((tenant.clone(), user.to_owned()))
            .or_default();
        Self::prune(q, now);
        q.push_back(now);
    }

    /// `user` signed in: its count starts again.
    pub fn succeeded(&mut self, tenant: &TenantId, user: &str) {
        self.failures.remove(&(tenant.clone(), user.to_owned()));
    }

    /// Users with failures tracked (for the sweep's test).
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TenantId {
        TenantId::from("demo")
    }

    #[test]
    fn five_failures_lock_the_user_until_the_oldest_ages_out() {
        let mut l = SignInLimits::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(l.check(&t(), "1001", t0 + Duration::from_secs(i)), Ok(()));
            l.failed(&t(), "1001", t0 + Duration::from_secs(i));
        }
        let now = t0 + Duration::from_secs(10);
        assert_eq!(l.check(&t(), "1001", now), Err(Duration::from_secs(290)));
        // Other users, and the same name in another tenant, are not held.
        assert_eq!(l.check(&t(), "1002", now), Ok(()));
        assert_eq!(l.check(&TenantId::from("other"), "1001", now), Ok(()));
        // Once the first failure is 5 minutes old, one more try is allowed.
        assert_eq!(l.check(&t(), "1001", t0 + SignInLimits::WINDOW), Ok(()));
        l.failed(&t(), "1001", t0 + SignInLimits::WINDOW);
        assert!(l.check(&t(), "1001", t0 + SignInLimits::WINDOW).is_err());
    }

    #[test]
    fn a_good_password_clears_the_count() {
        let mut l = SignInLimits::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            l.failed(&t(), "admin", t0);
        }
        l.succeeded(&t(), "admin");
        for _ in 0..4 {
            l.failed(&t(), "admin", t0);
        }
        assert_eq!(l.check(&t(), "admin", t0), Ok(()));
    }

    #[test]
    fn expired_users_are_swept() {
        let mut l = SignInLimits::default();
        let t0 = Instant::now();
        for i in 0..SignInLimits::SWEEP_AT {
            l.failed(&t(), &format!("u{i}"), t0);
        }
        assert_eq!(l.tracked(), SignInLimits::SWEEP_AT);
        l.failed(&t(), "late", t0 + SignInLimits::WINDOW);
        assert_eq!(l.tracked(), 1);
    }
}
