//! Quotas: how much CPU, memory and how many replicas a team's applications may use in
//! one environment, checked when a release is deployed, and the same limits as the
//! Kubernetes objects (ResourceQuota, LimitRange) of the team's namespace.
//!
//! A deploy's demand is what its release asks for in the environment, over every
//! cluster of it: `replicas per cluster × clusters` replicas, each with the release's
//! CPU and memory limits. The deploy is allowed when the demand plus what the team's
//! other applications use there stays within the quota.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    objects::{ApplicationSpec, Quota},
    quantity,
};

/// What one application asks of (or uses in) one environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Replicas over every cluster of the environment.
    pub replicas: u64,
    /// Total CPU in millicores; `None` when replicas run without a CPU limit.
    pub cpu_millis: Option<u64>,
    /// Total memory in bytes; `None` when replicas run without a memory limit.
    pub memory_bytes: Option<u64>,
}

impl Demand {
    /// The demand of `spec` in `environment`, which has `clusters` clusters.
    #[must_use]
    pub fn of(spec: &ApplicationSpec, environment: &str, clusters: usize) -> Self {
        let per_cluster = spec
            .environments
            .get(environment)
            .and_then(|o| o.replicas)
            .unwrap_or(spec.replicas);
        let replicas = u64::from(per_cluster).saturating_mul(clusters as u64);
        let total = |each: Option<u64>| match (replicas, each) {
            (0, _) => Some(0),
            (_, each) => each.map(|e| e.saturating_mul(replicas)),
        };
        Self {
            replicas,
            cpu_millis: total(spec.resources.cpu.as_deref().and_then(quantity::parse_cpu)),
            memory_bytes: total(spec.resources.memory.as_deref().and_then(quantity::parse_memory)),
        }
    }
}

/// What a team's applications use in an environment, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Replicas.
    pub replicas: u64,
    /// CPU in millicores (replicas without a limit count nothing).
    pub cpu_millis: u64,
    /// Memory in bytes (replicas without a limit count nothing).
    pub memory_bytes: u64,
}

impl Usage {
    /// Adds one application's demand.
    pub fn add(&mut self, demand: &Demand) {
        self.replicas = self.replicas.saturating_add(demand.replicas);
        self.cpu_millis = self.cpu_millis.saturating_add(demand.cpu_millis.unwrap_or(0));
        self.memory_bytes = self.memory_bytes.saturating_add(demand.memory_bytes.unwrap_or(0));
    }
}

/// A quota in numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// CPU in millicores.
    pub cpu_millis: Option<u64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Replicas.
    pub replicas: Option<u64>,
}

impl Limits {
    /// The limits of a (validated) quota; quantities that do not parse limit nothing.
    #[must_use]
    pub fn of(quota: &Quota) -> Self {
        Self {
            cpu_millis: quota.cpu.as_deref().and_then(quantity::parse_cpu),
            memory_bytes: quota.memory.as_deref().and_then(quantity::parse_memory),
            replicas: quota.replicas.map(u64::from),
        }
    }

    /// Whether nothing is limited.
    #[must_use]
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }
}

/// A resource a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// CPU.
    Cpu,
    /// Memory.
    Memory,
    /// Replicas.
    Replicas,
}

impl Resource {
    /// The field of the application spec that sets it.
    #[must_use]
    pub fn spec_path(self) -> &'static str {
        match self {
            Self::Cpu => "spec.resources.cpu",
            Self::Memory => "spec.resources.memory",
            Self::Replicas => "spec.replicas",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Replicas => "replicas",
        }
    }

    fn show(self, amount: u64) -> String {
        match self {
            Self::Cpu => format_cpu(amount),
            Self::Memory => format_memory(amount),
            Self::Replicas => amount.to_string(),
        }
    }
}

/// One way a deploy does not fit its team's quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaProblem {
    /// Demand and what is in use together go over the limit.
    Exceeded {
        /// Which resource.
        resource: Resource,
        /// What the deploy asks for.
        requested: u64,
        /// What the team's other applications use.
        in_use: u64,
        /// The quota.
        limit: u64,
    },
    /// The quota limits a resource the application sets no limit for, so its use
    /// cannot be counted.
    Unbounded {
        /// Which resource.
        resource: Resource,
    },
}

impl QuotaProblem {
    /// Which resource.
    #[must_use]
    pub fn resource(&self) -> Resource {
        match self {
            Self::Exceeded { resource, .. } | Self::Unbounded { resource } => *resource,
        }
    }

    /// The problem in a sentence.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Exceeded {
                resource,
                requested,
                in_use,
                limit,
            } => format!(
                "{} {} requested + {} in use by the team's other applications = {}, above the quota of {}",
                resource.name(),
                resource.show(*requested),
                resource.show(*in_use),
                resource.show(requested.saturating_add(*in_use)),
                resource.show(*limit),
            ),
            Self::Unbounded { resource } => format!(
                "the quota limits {}, so the application must set a {} limit",
                resource.name(),
                resource.name()
            ),
        }
    }

    /// How to get within the quota.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::Exceeded { .. } => {
                "lower replicas or resources, free capacity elsewhere in the team, or ask a team admin to raise the quota"
                    .to_owned()
            }
            Self::Unbounded { resource } => format!("set {}", resource.spec_path()),
        }
    }
}

/// A deploy that does not fit the quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deploying '{application}' to '{environment}' exceeds the quota of team '{team}' there: {}",
    .problems.iter().map(QuotaProblem::describe).collect::<Vec<_>>().join("; "))]
pub struct QuotaExceeded {
    /// The team.
    pub team: String,
    /// The environment.
    pub environment: String,
    /// The application deployed.
    pub application: String,
    /// Every way it does not fit.
    pub problems: Vec<QuotaProblem>,
}

/// Checks that `demand` fits `limits` next to what `others` use.
///
/// # Errors
///
/// [`QuotaExceeded`] listing every resource that does not fit.
pub fn check(
    team: &str,
    environment: &str,
    application: &str,
    limits: &Limits,
    others: &Usage,
    demand: &Demand,
) -> Result<(), QuotaExceeded> {
    let mut problems = Vec::new();
    let mut against = |resource, limit: Option<u64>, requested: Option<u64>, in_use: u64| {
        let Some(limit) = limit else { return };
        match requested {
            None => problems.push(QuotaProblem::Unbounded { resource }),
            Some(requested) if requested.saturating_add(in_use) > limit => {
                problems.push(QuotaProblem::Exceeded {
                    resource,
                    requested,
                    in_use,
                    limit,
                });
            }
            Some(_) => {}
        }
    };
    against(
        Resource::Cpu,
        limits.cpu_millis,
        demand.cpu_millis,
        others.cpu_millis,
    );
    against(
        Resource::Memory,
        limits.memory_bytes,
        demand.memory_bytes,
        others.memory_bytes,
    );
    against(
        Resource::Replicas,
        limits.replicas,
        Some(demand.replicas),
        others.replicas,
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(QuotaExceeded {
            team: team.to_owned(),
            environment: environment.to_owned(),
            application: application.to_owned(),
            problems,
        })
    }
}

/// A team's quota in one namespace (one team, one environment), for runtimes that
/// enforce it themselves (Kubernetes: ResourceQuota and LimitRange).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceQuota {
    /// The namespace.
    pub namespace: String,
    /// The team.
    pub team: String,
    /// The environment.
    pub environment: String,
    /// The limits.
    pub limits: Limits,
}

/// The ResourceQuota of a namespace: Berth's limits on the sum of the limits of its pods.
#[must_use]
pub fn resource_quota(q: &NamespaceQuota) -> Value {
    let mut hard = serde_json::Map::new();
    if let Some(cpu) = q.limits.cpu_millis {
        hard.insert("limits.cpu".to_owned(), json!(format_cpu(cpu)));
    }
    if let Some(memory) = q.limits.memory_bytes {
        hard.insert("limits.memory".to_owned(), json!(memory.to_string()));
    }
    if let Some(replicas) = q.limits.replicas {
        hard.insert("pods".to_owned(), json!(replicas.to_string()));
    }
    json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "berth-quota", "namespace": q.namespace, "labels": labels(q)},
        "spec": {"hard": hard},
    })
}

/// The LimitRange of a namespace: no single container may ask for more than the whole
/// quota. Berth always sets limits on the containers it renders when a quota is set
/// (a deploy without them is refused), so no defaults are needed.
#[must_use]
pub fn limit_range(q: &NamespaceQuota) -> Value {
    let mut max = serde_json::Map::new();
    if let Some(cpu) = q.limits.cpu_millis {
        max.insert("cpu".to_owned(), json!(format_cpu(cpu)));
    }
    if let Some(memory) = q.limits.memory_bytes {
        max.insert("memory".to_owned(), json!(memory.to_string()));
    }
    json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "berth-limits", "namespace": q.namespace, "labels": labels(q)},
        "spec": {"limits": [{"type": "Container", "max": max}]},
    })
}

fn labels(q: &NamespaceQuota) -> Value {
    json!({
        "app.kubernetes.io/managed-by": "berth",
        "berth.dev/team": q.team,
        "berth.dev/environment": q.environment,
    })
}

/// Millicores in Kubernetes notation: `2` for 2000, `1500m` otherwise.
#[must_use]
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Bytes in the largest binary unit that divides them: `512Mi`, `2Gi`, `1000`.
#[must_use]
pub fn format_memory(bytes: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(replicas: u32, cpu: Option<&str>, memory: Option<&str>) -> ApplicationSpec {
        serde_json::from_value(json!({
            "image": "r/web:1", "replicas": replicas,
            "resources": {"cpu": cpu, "memory": memory},
            "environments": {"production": {"replicas": replicas * 2}}
        }))
        .unwrap()
    }

    fn limits(cpu: Option<&str>, memory: Option<&str>, replicas: Option<u32>) -> Limits {
        Limits::of(&Quota {
            cpu: cpu.map(str::to_owned),
            memory: memory.map(str::to_owned),
            replicas,
        })
    }

    #[test]
    fn demand_counts_every_cluster_and_the_environment_override() {
        let s = spec(2, Some("500m"), Some("256Mi"));
        assert_eq!(
            Demand::of(&s, "qa", 1),
            Demand {
                replicas: 2,
                cpu_millis: Some(1000),
                memory_bytes: Some(512 << 20)
            }
        );
        assert_eq!(Demand::of(&s, "production", 3).replicas, 12);
        let unlimited = Demand::of(&spec(1, None, None), "qa", 1);
        assert_eq!((unlimited.cpu_millis, unlimited.memory_bytes), (None, None));
        assert_eq!(Demand::of(&spec(0, None, None), "qa", 1).cpu_millis, Some(0));
    }

    #[test]
    fn table_of_checks() {
        let in_use = Usage {
            replicas: 3,
            cpu_millis: 1500,
            memory_bytes: 1 << 30,
        };
        type Case = (Limits, Demand, &'static [(&'static str, bool)]);
        let d = |replicas, cpu, memory| Demand {
            replicas,
            cpu_millis: cpu,
            memory_bytes: memory,
        };
        let cases: &[Case] = &[
            // No quota: anything goes.
            (Limits::default(), d(100, None, None), &[]),
            // Exactly at the limit is allowed.
            (
                limits(Some("2"), Some("2Gi"), Some(4)),
                d(1, Some(500), Some(1 << 30)),
                &[],
            ),
            // One over on each.
            (
                limits(Some("2"), Some("2Gi"), Some(4)),
                d(2, Some(501), Some((1 << 30) + 1)),
                &[("cpu", true), ("memory", true), ("replicas", true)],
            ),
            // A limited resource the app does not bound.
            (
                limits(Some("10"), None, None),
                d(1, None, Some(1)),
                &[("cpu", false)],
            ),
            // Unlimited resources of the app are fine when the quota does not limit them.
            (limits(None, None, Some(10)), d(2, None, None), &[]),
        ];
        for (i, (l, demand, want)) in cases.iter().enumerate() {
            let got: Vec<(&str, bool)> = match check("pay", "production", "web", l, &in_use, demand) {
                Ok(()) => Vec::new(),
                Err(e) => e
                    .problems
                    .iter()
                    .map(|p| (p.resource().name(), matches!(p, QuotaProblem::Exceeded { .. })))
                    .collect(),
            };
            assert_eq!(got, *want, "case {i}");
        }
    }

    #[test]
    fn the_error_names_what_exceeds_what() {
        let e = check(
            "pay",
            "production",
            "web",
            &limits(Some("2"), None, None),
            &Usage {
                cpu_millis: 1500,
                ..Usage::default()
            },
            &Demand {
                replicas: 2,
                cpu_millis: Some(1000),
                memory_bytes: None,
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "deploying 'web' to 'production' exceeds the quota of team 'pay' there: cpu 1 requested + 1500m in \
             use by the team's other applications = 2500m, above the quota of 2"
        );
    }

    #[test]
    fn kubernetes_objects() {
        let q = NamespaceQuota {
            namespace: "pay-production".into(),
            team: "pay".into(),
            environment: "production".into(),
            limits: limits(Some("2500m"), Some("4Gi"), Some(8)),
        };
        let rq = resource_quota(&q);
        assert_eq!(
            rq["spec"]["hard"],
            json!({"limits.cpu": "2500m", "limits.memory": "4294967296", "pods": "8"})
        );
        assert_eq!(rq["metadata"]["namespace"], "pay-production");
        let lr = limit_range(&q);
        assert_eq!(
            lr["spec"]["limits"][0],
            json!({"type": "Container", "max": {"cpu": "2500m", "memory": "4294967296"}})
        );
        assert_eq!(format_memory(512 << 20), "512Mi");
        assert_eq!(format_memory(1000), "1000");
    }
}
