//! What the use cases load, each read as narrow as the store offers: one object by
//! name, the children of one application, or a targeted query ([`team_usage`]). No use
//! case lists a whole collection.

use berth_core::{
    Kind,
    objects::{
        Application, ApplicationKind, Deployment, DeploymentKind, Environment, EnvironmentKind, Release,
        ReleaseKind, SecretKind, Team, TeamKind, release_name,
    },
    ports::Store,
    quota::Usage,
    repo,
};

use crate::{Error, Result};

/// Application `name`; [`Error::NotFound`] when it does not exist.
pub(crate) async fn application(store: &dyn Store, name: &str) -> Result<Application> {
    repo::get::<ApplicationKind>(store, name)
        .await?
        .ok_or_else(|| Error::NotFound {
            kind: ApplicationKind::KIND,
            name: name.to_owned(),
        })
}

/// Environment `name`, named by the command's field `field`; [`Error::MissingReference`]
/// when it does not exist.
pub(crate) async fn environment(store: &dyn Store, field: &str, name: &str) -> Result<Environment> {
    repo::get::<EnvironmentKind>(store, name)
        .await?
        .ok_or_else(|| Error::MissingReference {
            path: field.to_owned(),
            kind: EnvironmentKind::KIND,
            name: name.to_owned(),
        })
}

/// Team `name`, if it exists.
pub(crate) async fn team(store: &dyn Store, name: &str) -> Result<Option<Team>> {
    Ok(repo::get::<TeamKind>(store, name).await?)
}

/// Every release of `application`, oldest first.
pub(crate) async fn releases(store: &dyn Store, application: &str) -> Result<Vec<Release>> {
    Ok(repo::list_all::<ReleaseKind>(store, Some(application)).await?)
}

/// Release `number` of `application`, if it exists.
pub(crate) async fn release(store: &dyn Store, application: &str, number: u64) -> Result<Option<Release>> {
    Ok(repo::get::<ReleaseKind>(store, &release_name(application, number)).await?)
}

/// Every deployment of `application`, in every environment.
pub(crate) async fn deployments(store: &dyn Store, application: &str) -> Result<Vec<Deployment>> {
    Ok(repo::list_all::<DeploymentKind>(store, Some(application)).await?)
}

/// The deployments of `application` in `environment`.
pub(crate) fn of_environment(deployments: &[Deployment], environment: &str) -> Vec<Deployment> {
    deployments
        .iter()
        .filter(|d| d.spec.environment == environment)
        .cloned()
        .collect()
}

/// Whether secret document `name` exists.
pub(crate) async fn secret_exists(store: &dyn Store, name: &str) -> Result<bool> {
    Ok(store.get(SecretKind::KIND, name).await?.is_some())
}

/// What the applications of `team` other than `except` use in `environment` (spanning
/// `clusters` clusters): the demand of the release governing each, in one query.
pub(crate) async fn team_usage(
    store: &dyn Store,
    team: &str,
    environment: &str,
    except: &str,
    clusters: usize,
) -> Result<Usage> {
    Ok(repo::team_usage(store, team, environment, clusters, except).await?)
}
