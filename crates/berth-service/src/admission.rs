//! The admission chain: every use case that puts a release into an environment (deploy,
//! rollback, promote, automatic rollback) asks each [`Policy`] in order, and the first
//! refusal wins. Built in, in this order ([`BUILT_IN`]):
//!
//! | policy            | refuses with                 | skipped for          |
//! | ----------------- | ---------------------------- | -------------------- |
//! | [`Authorization`] | [`Error::Forbidden`]         | Berth itself         |
//! | [`SecretsPresent`]| [`Error::MissingSecrets`]    | automatic rollback   |
//! | [`TeamQuota`]     | [`Error::Quota`]             | automatic rollback   |
//! | [`VerifiedIn`]    | [`Error::Promotion`] (`NotVerified`) | automatic rollback |
//!
//! An automatic rollback goes back to what already succeeded in the environment: that
//! passes `requireVerifiedIn` by definition (what ran there is enough for a rollback),
//! and rolling back is always possible (immutable infrastructure), so it is not held to
//! secrets or quota that changed since. More policies join the end of the chain through
//! [`crate::Delivery::with_policy`].

use async_trait::async_trait;
use berth_core::{
    authz::{Permission, decide},
    objects::{Application, Deployment, Environment, Release, secret_candidates},
    ports::Store,
    promotion,
    quota::{self, Demand, Limits},
};

use crate::{Actor, Error, Result, reads};

/// How the release enters the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A deploy someone asked for.
    Deploy,
    /// A rollback someone asked for: a release that already ran there passes
    /// `requireVerifiedIn`.
    Rollback,
    /// A promotion from another environment.
    Promotion,
    /// Berth rolling back after a failed rollout.
    AutoRollback,
}

/// One release about to enter one environment: what every policy decides on.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// Who asks.
    pub actor: &'a Actor,
    /// The application.
    pub application: &'a Application,
    /// The environment the use case writes to.
    pub environment: &'a Environment,
    /// The release that will run there (possibly not committed yet).
    pub release: &'a Release,
    /// The release whose verification counts: `release` itself, or for a promotion the
    /// release it copies.
    pub verified_as: &'a Release,
    /// How it enters.
    pub entry: Entry,
    /// The application's releases (without `release` when it is new); empty for an
    /// automatic rollback, which no policy needs them for.
    pub releases: &'a [Release],
    /// The application's deployments, in every environment; empty for an automatic
    /// rollback.
    pub deployments: &'a [Deployment],
}

/// One rule a release must pass to enter an environment.
#[async_trait]
pub trait Policy: Send + Sync {
    /// A short name, for logs and tests.
    fn name(&self) -> &'static str;
    /// Refuses the admission, or lets it through; reads through `store` what it needs.
    async fn admit(&self, store: &dyn Store, admission: &Admission<'_>) -> Result<()>;
}

/// The actor needs the permission to deploy to exactly this environment of the
/// application's team (`berth_core::authz`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Authorization;

#[async_trait]
impl Policy for Authorization {
    fn name(&self) -> &'static str {
        "authorization"
    }

    async fn admit(&self, _: &dyn Store, a: &Admission<'_>) -> Result<()> {
        let Actor::User(principal) = a.actor else {
            return Ok(());
        };
        decide(
            principal,
            &Permission::Deploy {
                team: a.application.spec.team.clone(),
                environment: a.environment.metadata.name.clone(),
                production: a.environment.spec.production,
            },
        )?;
        Ok(())
    }
}

/// Every secret the release references has a value for the environment (its own or
/// the one for all environments), as the reconciler would deliver it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretsPresent;

#[async_trait]
impl Policy for SecretsPresent {
    fn name(&self) -> &'static str {
        "secrets-present"
    }

    async fn admit(&self, store: &dyn Store, a: &Admission<'_>) -> Result<()> {
        if a.entry == Entry::AutoRollback {
            return Ok(());
        }
        let app = &a.application.metadata.name;
        let mut missing = Vec::new();
        for r in &a.release.spec.template.secrets {
            let mut found = false;
            for candidate in secret_candidates(app, &r.name, &a.environment.metadata.name) {
                if reads::secret_exists(store, &candidate).await? {
                    found = true;
                    break;
                }
            }
            if !found {
                missing.push(r.name.clone());
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::MissingSecrets {
                application: app.clone(),
                names: missing,
            })
        }
    }
}

/// The release fits the team's quota in the environment, next to what the team's other
/// applications run there.
#[derive(Debug, Clone, Copy, Default)]
pub struct TeamQuota;

#[async_trait]
impl Policy for TeamQuota {
    fn name(&self) -> &'static str {
        "team-quota"
    }

    async fn admit(&self, store: &dyn Store, a: &Admission<'_>) -> Result<()> {
        if a.entry == Entry::AutoRollback {
            return Ok(());
        }
        let team_name = &a.application.spec.team;
        let env = &a.environment.metadata.name;
        let Some(team) = reads::team(store, team_name).await? else {
            return Ok(());
        };
        let limits = team.spec.quotas.get(env).map(Limits::of).unwrap_or_default();
        if limits.is_unlimited() {
            return Ok(());
        }
        let clusters = a.environment.spec.clusters.len();
        let app = &a.application.metadata.name;
        let others = reads::team_usage(store, team_name, env, app, clusters).await?;
        let demand = Demand::of(&a.release.spec.template, env, clusters);
        quota::check(team_name, env, app, &limits, &others, &demand)?;
        Ok(())
    }
}

/// The environment's `requireVerifiedIn`: the release's template must have succeeded in
/// every environment the policy names; for a rollback, having run there is enough.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifiedIn;

#[async_trait]
impl Policy for VerifiedIn {
    fn name(&self) -> &'static str {
        "verified-in"
    }

    async fn admit(&self, _: &dyn Store, a: &Admission<'_>) -> Result<()> {
        let release = a.verified_as;
        if promotion::digest_of(&release.spec.template.image).is_none() {
            // An unpinned release is refused by release validation.
            return Ok(());
        }
        if a.environment.spec.policies.require_verified_in.is_empty() || a.entry == Entry::AutoRollback {
            return Ok(());
        }
        let ran_here_is_enough = a.entry == Entry::Rollback;
        promotion::check_verified(
            a.environment,
            release,
            a.releases,
            a.deployments,
            ran_here_is_enough,
        )?;
        Ok(())
    }
}

/// The built-in policies, in the order they run.
pub static BUILT_IN: [&dyn Policy; 4] = [&Authorization, &SecretsPresent, &TeamQuota, &VerifiedIn];

impl crate::Delivery {
    /// Runs the whole chain: the built-in policies, then the added ones; the first
    /// refusal wins.
    pub async fn admit(&self, admission: &Admission<'_>) -> Result<()> {
        let store = self.store.as_ref();
        for p in BUILT_IN {
            p.admit(store, admission).await?;
        }
        for p in &self.extra_policies {
            p.admit(store, admission).await?;
        }
        Ok(())
    }
}
