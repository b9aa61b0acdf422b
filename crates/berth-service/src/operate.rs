//! Operating a running application: its instances, their logs (of terminated ones too),
//! and a rolling restart of the release it runs.
//!
//! ```text
//!  instances / logs(app, env, --cluster) ─▶ the environment's clusters (one, if asked)
//!        │ per cluster, at once, each within CLUSTER_TIMEOUT: ClusterAccess::runtime
//!        ▼      ─▶ ClusterRuntime::{instances, logs, terminated}
//!  merged, labelled by cluster and instance; a cluster that does not answer is named
//!  (an error when no cluster answered, a problem next to the others' answers otherwise)
//!
//!  restart(app, env) ─▶ governing deployment, finished ─▶ status.restartedAt = now
//!        one commit, audited ─▶ the reconciler renders a new shape ─▶ rolling replacement
//! ```

use std::{sync::Arc, time::Duration};

use berth_core::{
    Kind, NewEvent,
    instance::{Instance, LogLine, LogQuery, Terminated},
    objects::{ClusterKind, Deployment, DeploymentKind, Environment},
    ports::{ClusterAccess, ClusterRuntime, LogFeed, RuntimeError, Store},
    render::WorkloadKey,
    repo,
};
use futures::{StreamExt, future::join_all, stream::SelectAll};

use crate::{Actor, Delivery, Error, Result, reads};

/// Longest one cluster may take to answer a read before it counts as unreachable.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(5);

/// Which application, environment and (optionally) cluster a read is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The application.
    pub application: String,
    /// The environment.
    pub environment: String,
    /// Only this cluster of the environment.
    pub cluster: Option<String>,
}

/// A cluster that did not answer a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterProblem {
    /// The cluster.
    pub cluster: String,
    /// What went wrong.
    pub message: String,
}

/// The instances of an application in an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instances {
    /// Every cluster's, by cluster in the environment's order, then oldest first.
    pub items: Vec<Instance>,
    /// Clusters that did not answer.
    pub problems: Vec<ClusterProblem>,
}

/// Logs of an application in an environment.
pub struct Logs {
    /// Lines of every cluster that answered, merged as they come.
    pub feed: LogFeed,
    /// Clusters that did not answer.
    pub problems: Vec<ClusterProblem>,
}

/// What Berth kept of the instances that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// Oldest first, per cluster.
    pub items: Vec<Terminated>,
    /// Clusters that did not answer.
    pub problems: Vec<ClusterProblem>,
}

/// The reads and commands that reach the clusters.
#[derive(Clone)]
pub struct Operations {
    store: Arc<dyn Store>,
    clusters: Arc<dyn ClusterAccess>,
}

/// One cluster of the target, with its datacenter.
struct Place {
    cluster: String,
    datacenter: String,
}

impl Operations {
    /// Reads over `store`, reaching clusters through `clusters`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, clusters: Arc<dyn ClusterAccess>) -> Self {
        Self { store, clusters }
    }

    /// The clusters a read of `target` reaches: the environment's, or the one asked for.
    async fn places(&self, target: &Target) -> Result<(WorkloadKey, Vec<Place>)> {
        let store = self.store.as_ref();
        reads::application(store, &target.application).await?;
        let env: Environment = reads::environment(store, "environment", &target.environment).await?;
        let names: Vec<String> = env.spec.clusters.iter().map(|p| p.cluster.clone()).collect();
        let chosen: Vec<String> = match &target.cluster {
            Some(c) if names.contains(c) => vec![c.clone()],
            Some(c) => {
                return Err(Error::NotInEnvironment {
                    cluster: c.clone(),
                    environment: target.environment.clone(),
                    clusters: names,
                });
            }
            None => names,
        };
        let mut places = Vec::new();
        for cluster in chosen {
            let datacenter = repo::get::<ClusterKind>(store, &cluster)
                .await?
                .map(|c| c.spec.datacenter)
                .unwrap_or_default();
            places.push(Place { cluster, datacenter });
        }
        let key = WorkloadKey {
            application: target.application.clone(),
            environment: target.environment.clone(),
        };
        Ok((key, places))
    }

    /// Asks every place at once, each within [`CLUSTER_TIMEOUT`]; `Err` when no place
    /// answered (naming the first that failed), else the answers and the problems.
    async fn ask<T, F, Fut>(
        &self,
        places: &[Place],
        what: F,
    ) -> Result<(Vec<(usize, T)>, Vec<ClusterProblem>)>
    where
        F: Fn(Arc<dyn ClusterRuntime>) -> Fut,
        Fut: Future<Output = Result<T, RuntimeError>>,
    {
        let asks = places.iter().map(|p| {
            let what = &what;
            async move {
                let answer = tokio::time::timeout(CLUSTER_TIMEOUT, async {
                    let runtime = self.clusters.runtime(&p.cluster).await?;
                    what(runtime).await
                })
                .await;
                match answer {
                    Ok(result) => result,
                    Err(_) => Err(RuntimeError::Unreachable {
                        message: format!("no answer within {} s", CLUSTER_TIMEOUT.as_secs()),
                    }),
                }
            }
        });
        let mut answers = Vec::new();
        let mut problems = Vec::new();
        for (i, (answer, place)) in join_all(asks).await.into_iter().zip(places).enumerate() {
            match answer {
                Ok(a) => answers.push((i, a)),
                Err(RuntimeError::NoInstance { instance }) => {
                    // Not on this cluster; another may have it.
                    problems.push(ClusterProblem {
                        cluster: place.cluster.clone(),
                        message: format!("no instance {instance} here"),
                    });
                }
                Err(e) => problems.push(ClusterProblem {
                    cluster: place.cluster.clone(),
                    message: e.to_string(),
                }),
            }
        }
        if answers.is_empty()
            && let Some(first) = problems.first()
        {
            if problems.iter().all(|p| p.message.starts_with("no instance ")) {
                return Err(Error::NoInstance {
                    instance: first
                        .message
                        .trim_start_matches("no instance ")
                        .trim_end_matches(" here")
                        .to_owned(),
                });
            }
            let failed = problems
                .iter()
                .find(|p| !p.message.starts_with("no instance "))
                .unwrap_or(first);
            return Err(Error::ClusterUnreachable {
                cluster: failed.cluster.clone(),
                message: failed.message.clone(),
            });
        }
        problems.retain(|p| !p.message.starts_with("no instance "));
        Ok((answers, problems))
    }

    /// The instances of `target`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] (the application), [`Error::MissingReference`] (the
    /// environment), [`Error::NotInEnvironment`], [`Error::ClusterUnreachable`] when no
    /// cluster answered.
    pub async fn instances(&self, target: &Target) -> Result<Instances> {
        let (key, places) = self.places(target).await?;
        let key = &key;
        let (answers, problems) = self
            .ask(&places, |rt| async move { rt.instances(key).await })
            .await?;
        let mut items = Vec::new();
        for (i, list) in answers {
            for mut instance in list {
                instance.datacenter.clone_from(&places[i].datacenter);
                items.push(instance);
            }
        }
        Ok(Instances { items, problems })
    }

    /// The log lines of `target` that `query` asks for, merged across instances and
    /// clusters (in time order when not followed).
    ///
    /// # Errors
    ///
    /// As [`Operations::instances`], and [`Error::NoInstance`] when no cluster has the
    /// instance asked for.
    pub async fn logs(&self, target: &Target, query: &LogQuery) -> Result<Logs> {
        let (key, places) = self.places(target).await?;
        let key = &key;
        let (answers, problems) = self
            .ask(&places, |rt| async move { rt.logs(key, query).await })
            .await?;
        let feeds: Vec<LogFeed> = answers.into_iter().map(|(_, f)| f).collect();
        let feed: LogFeed = if query.follow || feeds.len() == 1 {
            let merged: SelectAll<LogFeed> = futures::stream::select_all(feeds);
            Box::pin(merged)
        } else {
            // Each cluster's feed is finite: read them all and merge by time.
            let mut lines: Vec<Result<LogLine, RuntimeError>> = Vec::new();
            for feed in feeds {
                lines.extend(feed.collect::<Vec<_>>().await);
            }
            lines.sort_by_key(|l| l.as_ref().ok().and_then(|l| l.time));
            Box::pin(futures::stream::iter(lines))
        };
        Ok(Logs { feed, problems })
    }

    /// What Berth kept of the instances of `target` that ended (of `instance` only, when
    /// given).
    ///
    /// # Errors
    ///
    /// As [`Operations::instances`], and [`Error::NothingTerminated`] when no instance
    /// (or not the one asked for) ended.
    pub async fn previous(&self, target: &Target, instance: Option<&str>) -> Result<Previous> {
        let (key, places) = self.places(target).await?;
        let key = &key;
        let (answers, problems) = self
            .ask(&places, |rt| async move { rt.terminated(key).await })
            .await?;
        let items: Vec<Terminated> = answers
            .into_iter()
            .flat_map(|(_, list)| list)
            .filter(|t| instance.is_none_or(|i| t.instance == i))
            .collect();
        if items.is_empty() && problems.is_empty() {
            return Err(Error::NothingTerminated {
                application: target.application.clone(),
                environment: target.environment.clone(),
                instance: instance.map(str::to_owned),
            });
        }
        Ok(Previous { items, problems })
    }
}

impl Delivery {
    /// Restarts every instance of the release `application` runs in `environment`: a
    /// rolling replacement by new instances of the same release, each taking traffic once
    /// healthy, as a rollout does. No release is made; the governing deployment records
    /// when (`status.restartedAt`), in one audited commit.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::MissingReference`] (the environment),
    /// [`Error::NotRunning`] when nothing is deployed there, [`Error::RolloutInProgress`]
    /// while its rollout has not finished.
    pub async fn restart(&self, actor: &Actor, application: &str, environment: &str) -> Result<Deployment> {
        let store = self.store.as_ref();
        reads::application(store, application).await?;
        reads::environment(store, "environment", environment).await?;
        let Some(mut deployment) = repo::governing(store, application, environment).await? else {
            return Err(Error::NotRunning {
                application: application.to_owned(),
                environment: environment.to_owned(),
            });
        };
        if !deployment.status.phase.is_final() {
            return Err(Error::RolloutInProgress {
                deployment: deployment.name().to_owned(),
            });
        }
        let now = self.clock().now();
        deployment.status.restarted_at = Some(now);
        let event = NewEvent::normal(
            "RestartRequested",
            DeploymentKind::KIND,
            deployment.name(),
            actor.name(),
            format!(
                "{} asked to restart every instance of release {} of {application} in {environment}; \
                 new instances replace them one by one, each once healthy",
                actor.name(),
                deployment.spec.release
            ),
        )
        .about(application, Some(environment));
        let commit = store
            .commit(vec![repo::replace(&deployment)?], vec![event])
            .await?;
        self.changed();
        Ok(repo::decode_committed(
            commit.documents.into_iter().next().flatten(),
        )?)
    }
}
