//! Health of one replica, from the results of its HTTP checks.

use serde::{Deserialize, Serialize};

use crate::objects::HealthCheck;

/// What the checks say about a replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// Not yet healthy; gets no traffic.
    #[default]
    Starting,
    /// Passed `healthyThreshold` checks in a row; gets traffic.
    Healthy,
    /// Was healthy, then failed `unhealthyThreshold` checks in a row; to be replaced.
    Unhealthy,
}

/// Counts check results for one replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthState {
    successes: u32,
    failures: u32,
    health: Health,
}

impl HealthState {
    /// Records one check result and returns the health that follows.
    pub fn record(&mut self, ok: bool, check: &HealthCheck) -> Health {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.health != Health::Unhealthy && self.successes >= check.healthy_threshold {
                self.health = Health::Healthy;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.health == Health::Healthy && self.failures >= check.unhealthy_threshold {
                self.health = Health::Unhealthy;
            }
        }
        self.health
    }

    /// Current health.
    pub fn health(&self) -> Health {
        self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let check = HealthCheck {
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            ..HealthCheck::default()
        };
        let mut s = HealthState::default();
        assert_eq!(
            s.record(false, &check),
            Health::Starting,
            "a starting replica is not unhealthy yet"
        );
        assert_eq!(s.record(true, &check), Health::Starting);
        assert_eq!(s.record(true, &check), Health::Healthy);
        assert_eq!(
            s.record(false, &check),
            Health::Healthy,
            "one failure is tolerated"
        );
        assert_eq!(
            s.record(true, &check),
            Health::Healthy,
            "a success resets the failures"
        );
        assert_eq!(s.record(false, &check), Health::Healthy);
        assert_eq!(s.record(false, &check), Health::Unhealthy);
        assert_eq!(
            s.record(true, &check),
            Health::Unhealthy,
            "an unhealthy replica is replaced, not revived"
        );
    }
}
