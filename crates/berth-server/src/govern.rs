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
    objects::{Release, SecretKind, SecretRef, Team, secret_object_name},
    ports::Store,
    quota::{Limits, NamespaceQuota},
    render::{ResolvedSecret, Workload, attach_secrets},
    repo::{self, RepoError},
};
use berth_secrets::{Keyring, secret_aad};

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
            let Some(stored) = repo::get::<SecretKind>(store, &secret_object_name(app, &r.name)).await?
            else {
                continue;
            };
            let Some(keyring) = keyring else { continue };
            let aad = secret_aad(app, &r.name, stored.spec.version);
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
