//! What governance adds to a rendered workload: the application's secrets, opened with
//! the keyring just before they are handed to the runtime, and the team's quota in the
//! workload's namespace (for runtimes that enforce it themselves).
//!
//! Secret values live here only in memory, inside [`SecretValue`]s that never print;
//! failures are logged with the secret's name, never its value.
//!
//! [`SecretValue`]: berth_core::objects::SecretValue

use std::collections::{BTreeMap, HashMap};

use berth_core::{
    objects::{Release, SecretKind, SecretRef, Team, secret_candidates},
    ports::Store,
    quota::{Limits, NamespaceQuota},
    render::{ResolvedSecret, Workload, attach_secrets},
    repo::{self, RepoError},
};
use berth_secrets::{Keyring, secret_aad_in};

/// What one release in one environment gets besides its rendering.
#[derive(Debug, Default)]
pub struct Governed {
    refs: Vec<SecretRef>,
    secrets: BTreeMap<String, ResolvedSecret>,
    quota: Option<(String, String, Limits)>,
}

impl Governed {
    /// Opens the secrets `release` references and finds its team's quota in `environment`.
    pub async fn resolve(
        store: &dyn Store,
        keyring: Option<&Keyring>,
        release: &Release,
        environment: &str,
        teams: &HashMap<String, Team>,
    ) -> Result<Self, RepoError> {
        let app = &release.spec.application;
        let template = &release.spec.template;
        let mut secrets = BTreeMap::new();
        for r in &template.secrets {
            // The environment's own value, else the one for all environments: a value
            // for another environment is never a candidate.
            let mut stored = None;
            for name in secret_candidates(app, &r.name, environment) {
                stored = repo::get::<SecretKind>(store, &name).await?;
                if stored.is_some() {
                    break;
                }
            }
            let Some(stored) = stored else { continue };
            let Some(keyring) = keyring else { continue };
            let aad = secret_aad_in(
                app,
                &r.name,
                stored.spec.environment.as_deref(),
                stored.spec.version,
            );
            match keyring.open(&stored.spec.sealed, &aad) {
                Ok(value) => {
                    secrets.insert(
                        r.name.clone(),
                        ResolvedSecret {
                            version: stored.spec.version,
                            value,
                        },
                    );
                }
                Err(error) => tracing::warn!(
                    application = %app,
                    secret = %r.name,
                    %error,
                    "cannot open a secret; replicas start without it"
                ),
            }
        }
        let quota = teams
            .get(&template.team)
            .and_then(|t| t.spec.quotas.get(environment))
            .map(Limits::of)
            .filter(|l| !l.is_unlimited())
            .map(|l| (template.team.clone(), environment.to_owned(), l));
        Ok(Self {
            refs: template.secrets.clone(),
            secrets,
            quota,
        })
    }

    /// Adds the secrets and the quota to a workload rendered from the same release.
    pub fn apply(&self, workload: &mut Workload) {
        if !self.refs.is_empty() {
            let missing = attach_secrets(workload, &self.refs, &self.secrets);
            if !missing.is_empty() {
                tracing::warn!(
                    workload = %workload.key,
                    secrets = %missing.join(", "),
                    "secrets referenced by the release are not available"
                );
            }
        }
        workload.quota = self
            .quota
            .as_ref()
            .map(|(team, environment, limits)| NamespaceQuota {
                namespace: workload.namespace.clone(),
                team: team.clone(),
                environment: environment.clone(),
                limits: *limits,
            });
    }
}

#[cfg(test)]
mod tests {
    use berth_core::{
        audit::Change,
        objects::{
            ApplicationSpec, Deployment, DeploymentSpec, Environment, EnvironmentSpec, Placement,
            ReleaseOrigin, Secret, SecretSpec, TeamSpec, secret_object_name, secret_object_name_in,
        },
        render::render,
    };
    use berth_runtime_kube::render::{ObjectKind, manifests};
    use berth_secrets::secret_aad;
    use berth_store::SqliteStore;

    use super::*;

    const IMAGE: &str =
        "127.0.0.1:5000/web@sha256:0000000000000000000000000000000000000000000000000000000000000001";

    /// Environment `name` on one cluster.
    fn environment(name: &str, cluster: &str) -> Environment {
        Environment::new(
            name,
            EnvironmentSpec {
                clusters: vec![Placement {
                    cluster: cluster.into(),
                    weight: 1,
                }],
                ..EnvironmentSpec::default()
            },
        )
    }

    /// The first deployment of release 1 of `web` to `env`.
    fn deployment_to(env: &str) -> Deployment {
        Deployment::new(
            format!("web-{env}-1"),
            DeploymentSpec {
                application: "web".into(),
                environment: env.into(),
                release: 1,
                number: 1,
                cause: Default::default(),
                requested_by: None,
            },
        )
    }

    /// A team quota and a sealed secret in the store come out, through the reconciler's
    /// governance and the Kubernetes renderer, as ResourceQuota, LimitRange and Secret.
    #[tokio::test]
    async fn quotas_and_secrets_reach_the_workload_and_the_kubernetes_objects() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let keyring = Keyring::generate();
        let team: Team = Team::new(
            "pay",
            serde_json::from_value::<TeamSpec>(serde_json::json!({
                "quotas": {"production": {"cpu": "2", "memory": "1Gi", "replicas": 6}}
            }))
            .unwrap(),
        );
        let secret = Secret::new(
            secret_object_name("web", "db"),
            SecretSpec {
                application: "web".into(),
                name: "db".into(),
                environment: None,
                version: 3,
                updated_by: "alice".into(),
                sealed: keyring.seal("s3cret", &secret_aad("web", "db", 3)).unwrap(),
            },
        );
        store
            .commit_as(
                &Change::new("t", "t"),
                vec![repo::create(&secret).unwrap()],
                vec![],
            )
            .await
            .unwrap();
        let template: ApplicationSpec = serde_json::from_value(serde_json::json!({
            "image": IMAGE, "team": "pay", "resources": {"cpu": "250m", "memory": "128Mi"},
            "secrets": [{"name": "db", "env": "DB_PASSWORD"}]
        }))
        .unwrap();
        let release = Release::of("web", 1, template, ReleaseOrigin::default());
        let (env, deployment) = (environment("production", "prod"), deployment_to("production"));
        let teams = HashMap::from([("pay".to_owned(), team)]);
        let governed = Governed::resolve(&store, Some(&keyring), &release, "production", &teams)
            .await
            .unwrap();
        let mut w = render(&release, &deployment, &env, "prod", "localhost");
        governed.apply(&mut w);

        assert_eq!(w.namespace, "pay-production");
        assert_eq!(w.secret_env["DB_PASSWORD"].expose(), "s3cret");
        assert_eq!(w.secret_versions["db"], 3);
        let quota = w.quota.as_ref().unwrap();
        assert_eq!(quota.namespace, "pay-production");
        assert_eq!(
            (quota.limits.cpu_millis, quota.limits.replicas),
            (Some(2000), Some(6))
        );

        let objects = manifests(&w);
        let of = |kind| objects.iter().find(|m| m.kind == kind).unwrap();
        let rq = of(ObjectKind::ResourceQuota);
        assert_eq!(rq.namespace, "pay-production");
        assert_eq!(rq.body["spec"]["hard"]["limits.cpu"], "2");
        assert_eq!(rq.body["spec"]["hard"]["pods"], "6");
        assert_eq!(
            of(ObjectKind::LimitRange).body["spec"]["limits"][0]["max"]["memory"],
            "1073741824"
        );
        assert!(of(ObjectKind::Secret).body["data"].is_object());

        // Another environment has no quota: no quota objects.
        let governed = Governed::resolve(&store, Some(&keyring), &release, "qa", &teams)
            .await
            .unwrap();
        let mut w = render(&release, &deployment, &env, "prod", "localhost");
        governed.apply(&mut w);
        assert!(w.quota.is_none());
        assert!(manifests(&w).iter().all(|m| m.kind != ObjectKind::ResourceQuota));
    }

    /// A value for production reaches production only: qa gets the value for all
    /// environments, or nothing when there is none, in the workload and in the
    /// Kubernetes Secret alike.
    #[tokio::test]
    async fn a_production_value_is_delivered_to_production_only() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let keyring = Keyring::generate();
        let value = |env: Option<&str>, version: u64, text: &str| {
            Secret::new(
                secret_object_name_in("web", "db", env),
                SecretSpec {
                    application: "web".into(),
                    name: "db".into(),
                    environment: env.map(str::to_owned),
                    version,
                    updated_by: "rita".into(),
                    sealed: keyring
                        .seal(text, &secret_aad_in("web", "db", env, version))
                        .unwrap(),
                },
            )
        };
        let commit = |s: Secret| {
            let store = &store;
            async move {
                store
                    .commit_as(&Change::new("t", "t"), vec![repo::create(&s).unwrap()], vec![])
                    .await
                    .unwrap();
            }
        };
        commit(value(Some("production"), 2, "prod-only")).await;
        let template: ApplicationSpec = serde_json::from_value(serde_json::json!({
            "image": IMAGE, "secrets": [{"name": "db", "env": "DB_PASSWORD"}]
        }))
        .unwrap();
        let release = Release::of("web", 1, template, ReleaseOrigin::default());
        let teams = HashMap::new();
        let workload = |env_name: &str, governed: &Governed| {
            let (env, deployment) = (environment(env_name, "c"), deployment_to(env_name));
            let mut w = render(&release, &deployment, &env, "c", "localhost");
            governed.apply(&mut w);
            w
        };
        let resolve = |env: &'static str| Governed::resolve(&store, Some(&keyring), &release, env, &teams);

        let prod = workload("production", &resolve("production").await.unwrap());
        assert_eq!(prod.secret_env["DB_PASSWORD"].expose(), "prod-only");
        let qa = workload("qa", &resolve("qa").await.unwrap());
        assert!(qa.secret_env.is_empty(), "qa must not get production's value");
        let secret = manifests(&qa).into_iter().find(|m| m.kind == ObjectKind::Secret);
        assert!(
            // "cHJvZC1vbmx5" is "prod-only" in base64, as a Secret's data holds it.
            secret
                .is_none_or(|m| !m.body.to_string().contains("prod-only")
                    && !m.body.to_string().contains("cHJvZC1vbmx5")),
            "qa's Kubernetes Secret holds production's value"
        );

        // With a value for all environments, qa gets it and production keeps its own.
        commit(value(None, 3, "shared")).await;
        let qa = workload("qa", &resolve("qa").await.unwrap());
        assert_eq!(qa.secret_env["DB_PASSWORD"].expose(), "shared");
        let prod = workload("production", &resolve("production").await.unwrap());
        assert_eq!(prod.secret_env["DB_PASSWORD"].expose(), "prod-only");
        assert_eq!(prod.secret_versions["db"], 2);
    }
}
