//! Deleting an application: it stops everywhere it runs, its history stays.
//!
//! Refused while it runs in a production environment unless forced. Its releases, builds
//! and deployments are kept under its name (the deployments retired, so they govern
//! nothing and the reconciler stops the replicas), so that a re-created application of
//! the same name continues the numbering. Its secrets go.

use berth_core::{
    Kind, NewEvent,
    authz::{Permission, decide},
    delivery::delete_blockers,
    deployment::{retire, running_environments},
    objects::{Application, ApplicationKind, SecretKind},
    ports::Write,
    repo,
};

use crate::{
    Actor, DeleteApplication, Delivery, Error, Result, reads,
    retry::{self, Attempt, retrying},
};

impl Delivery {
    /// The writes that go with deleting application `name` (retired deployments, deleted
    /// secrets; not the application itself), after checking that `actor` may stop it in
    /// every environment it runs in and that it is not stopped in production unforced.
    ///
    /// # Errors
    ///
    /// [`Error::Forbidden`], [`Error::RunsInProduction`], store failures.
    pub async fn delete_writes(
        &self,
        actor: &Actor,
        application: &Application,
        force: bool,
    ) -> Result<Vec<Write>> {
        let store = self.store.as_ref();
        let name = application.name();
        let team = &application.spec.team;
        let deployments = reads::deployments(store, name).await?;
        let running = running_environments(&deployments);
        let mut production = Vec::new();
        for env in &running {
            let is_production = repo::get::<berth_core::objects::EnvironmentKind>(store, env)
                .await?
                .is_some_and(|e| e.spec.production);
            if let Actor::User(p) = actor {
                decide(
                    p,
                    &Permission::Deploy {
                        team: team.clone(),
                        environment: env.clone(),
                        production: is_production,
                    },
                )?;
            }
            if is_production {
                production.push(env.clone());
            }
        }
        let blockers = delete_blockers(&running, force, |e| production.iter().any(|p| p == e));
        if !blockers.is_empty() {
            return Err(Error::RunsInProduction {
                application: name.to_owned(),
                production: blockers,
                running,
            });
        }
        let now = self.clock.now();
        let mut writes = Vec::new();
        for d in &deployments {
            if let Some(status) = retire(d, now) {
                let mut retired = d.clone();
                retired.status = status;
                writes.push(repo::replace(&retired)?);
            }
        }
        writes.extend(
            repo::list_all::<SecretKind>(store, Some(name))
                .await?
                .iter()
                .map(repo::delete),
        );
        Ok(writes)
    }

    /// Deletes an application (see the module documentation) in one commit and returns
    /// it as it was. Needs the right to apply to its team and to deploy to every
    /// environment it runs in.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Forbidden`], [`Error::RunsInProduction`],
    /// [`Error::Busy`].
    pub async fn delete_application(&self, cmd: DeleteApplication) -> Result<Application> {
        let store = self.store.as_ref();
        let name = cmd.application.as_str();
        retrying(name, || async {
            let current = reads::application(store, name).await?;
            if let Actor::User(p) = &cmd.actor {
                decide(
                    p,
                    &Permission::Apply {
                        team: current.spec.team.clone(),
                    },
                )?;
            }
            let mut writes = self.delete_writes(&cmd.actor, &current, cmd.force).await?;
            writes.push(repo::delete(&current));
            let who = cmd.actor.name();
            let event = NewEvent::normal(
                "Deleted",
                ApplicationKind::KIND,
                name,
                who,
                format!("{} '{name}' deleted by {who}", ApplicationKind::KIND),
            )
            .about(name, None);
            Ok(match retry::commit(store, writes, vec![event]).await? {
                Attempt::Done(_) => {
                    self.changed();
                    Attempt::Done(current)
                }
                Attempt::Raced => Attempt::Raced,
            })
        })
        .await
    }
}
