//! Releases, deploys, rollbacks and status over HTTP: parse the request, call the use
//! case (`berth_service`), map its answer. Status is a read.

use berth_core::{
    authz::Principal,
    deployment::governing,
    objects::{Deployment, Release, ReleaseKind},
    render::default_host,
};
use berth_service::ReleaseWanted;

use crate::{
    ApiState,
    error::{ApiError, Result},
    objects,
};
pub use berth_contract::{
    ApplicationState, DeployRequest, DeploymentSummary, EnvironmentState, ReleaseRequest, RollbackRequest,
};

/// Who runs a use case: the caller, with its roles.
pub(crate) fn actor(principal: &Principal) -> berth_service::Actor {
    berth_service::Actor::User(principal.clone())
}

/// Creates a new release of the application's current spec (or another image).
pub async fn create_release(
    state: &ApiState,
    principal: &Principal,
    app: &str,
    req: ReleaseRequest,
) -> Result<Release> {
    let cmd = berth_service::CreateRelease {
        actor: actor(principal),
        application: app.to_owned(),
        image: req.image,
        description: req.description,
    };
    Ok(state.delivery().create_release(cmd).await?)
}

/// Deploys a release of an application to an environment.
pub async fn deploy(
    state: &ApiState,
    principal: &Principal,
    app: &str,
    req: DeployRequest,
) -> Result<Deployment> {
    let release = match (req.release, req.image) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give either release or image, not both".to_owned(),
            ));
        }
        (Some(n), None) => ReleaseWanted::Existing(n),
        (None, Some(image)) => ReleaseWanted::Image(image),
        (None, None) => ReleaseWanted::Current,
    };
    let cmd = berth_service::Deploy {
        actor: actor(principal),
        application: app.to_owned(),
        environment: req.environment,
        release,
    };
    Ok(state.delivery().deploy(cmd).await?)
}

/// Rolls an environment back to an earlier release.
pub async fn rollback(
    state: &ApiState,
    principal: &Principal,
    app: &str,
    req: RollbackRequest,
) -> Result<Deployment> {
    let cmd = berth_service::Rollback {
        actor: actor(principal),
        application: app.to_owned(),
        environment: req.environment,
        to: req.to,
    };
    Ok(state.delivery().rollback(cmd).await?)
}

/// Deletes an application: the use case decides what stops and what stays.
pub async fn delete_application(
    state: &ApiState,
    principal: &Principal,
    app: &str,
    force: bool,
) -> Result<berth_core::objects::Application> {
    let cmd = berth_service::DeleteApplication {
        actor: actor(principal),
        application: app.to_owned(),
        force,
    };
    Ok(state.delivery().delete_application(cmd).await?)
}

/// Where an application stands in every environment it was deployed to.
pub async fn status(state: &ApiState, app: &str) -> Result<ApplicationState> {
    objects::get::<berth_core::objects::ApplicationKind>(state, app).await?;
    let releases = objects::releases(state, app).await?;
    let mut deployments = objects::deployments(state, app).await?;
    // Deployments retired with an earlier application of this name are history only.
    deployments.retain(|d| d.status.retired_at.is_none());
    let mut envs: Vec<&str> = deployments.iter().map(|d| d.spec.environment.as_str()).collect();
    envs.sort_unstable();
    envs.dedup();
    let mut environments = Vec::new();
    for env in envs {
        let of_env: Vec<Deployment> = deployments
            .iter()
            .filter(|d| d.spec.environment == env)
            .cloned()
            .collect();
        let current = governing(&of_env);
        let release = current.map(|d| d.spec.release);
        let image = release
            .and_then(|n| releases.iter().find(|r| r.spec.number == n))
            .map(|r| r.spec.template.image.clone());
        let mut urls = Vec::new();
        if let (Some(port), Some(r)) = (
            state.router_port,
            release.and_then(|n| releases.iter().find(|r| r.spec.number == n)),
        ) {
            urls.push(format!(
                "http://{}:{port}/",
                default_host(app, env, &state.domain)
            ));
            if let Some(host) = r
                .spec
                .template
                .environments
                .get(env)
                .and_then(|o| o.hostname.as_ref())
            {
                urls.push(format!("http://{host}:{port}/"));
            }
        }
        environments.push(EnvironmentState {
            environment: env.to_owned(),
            release,
            image,
            deployment: current.map(|d| DeploymentSummary {
                name: d.metadata.name.clone(),
                phase: d.status.phase,
                message: d.status.message.clone(),
            }),
            clusters: current.map(|d| d.status.clusters.clone()).unwrap_or_default(),
            urls,
        });
    }
    Ok(ApplicationState {
        application: app.to_owned(),
        environments,
    })
}

/// Finds release `number` of `app`.
pub async fn release(state: &ApiState, app: &str, number: u64) -> Result<Release> {
    objects::get::<ReleaseKind>(state, &berth_core::objects::release_name(app, number)).await
}
