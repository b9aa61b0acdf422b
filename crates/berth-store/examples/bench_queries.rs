//! Benchmark: the targeted store queries against today's list-then-filter reads, on a
//! file-backed store holding N applications (default 10,000).
//!
//! ```sh
//! cargo run --release -p berth-store --example bench_queries [APPLICATIONS] [SAMPLES] [DB]
//! ```
//!
//! Each application has 3 releases (release 3 made by a build) and 5 deployments: in qa
//! Succeeded, Succeeded, Failed; in production Succeeded, Progressing. Applications
//! belong to 50 teams. Every query is timed SAMPLES times (default 200; fewer for the
//! reads of whole collections) on random applications; the old way is what the callers
//! do today (list the kind, or the application's children, decode, filter with the
//! core's functions). Both ways decode into typed objects. For every sample the two
//! answers are compared; failed queries and disagreements are counted and printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use berth_core::{
    deployment::{governing, last_succeeded},
    objects::{
        ApplicationKind, ApplicationSpec, Deployment, DeploymentCause, DeploymentKind, DeploymentPhase,
        DeploymentSpec, Release, ReleaseKind, ReleaseOrigin, deployment_name,
    },
    ports::{DeploymentQuery, ListQuery, Store, TeamQuery, Write},
    promotion::digest_of,
    quota::{Demand, Usage},
    repo::{self, RepoError},
};
use berth_store::SqliteStore;
use rand::Rng;
use serde_json::json;

const TEAMS: usize = 50;
const CLUSTERS: usize = 3;

fn team_of(i: usize) -> String {
    format!("team{}", i % TEAMS)
}

fn app_name(i: usize) -> String {
    format!("app{i:05}")
}

fn digest(i: usize, n: u64) -> String {
    format!("sha256:{:064x}", i as u64 * 10 + n)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn writes_of(i: usize) -> Vec<Write> {
    use DeploymentPhase::{Failed, Progressing, Succeeded};
    let app = app_name(i);
    let spec = |image: String| -> ApplicationSpec {
        serde_json::from_value(json!({"image": image, "team": team_of(i), "replicas": 2,
            "resources": {"cpu": "100m", "memory": "64Mi"}}))
        .unwrap()
    };
    let mut writes = vec![
        repo::create(&berth_core::objects::Application::new(
            &app,
            spec(format!("r/{app}:1")),
        ))
        .unwrap(),
    ];
    for n in 1..=3u64 {
        let origin = ReleaseOrigin {
            build: (n == 3).then(|| format!("{app}-build-1")),
            ..ReleaseOrigin::default()
        };
        let release = Release::of(&app, n, spec(format!("r/{app}@{}", digest(i, n))), origin);
        writes.push(repo::create(&release).unwrap());
    }
    for (env, number, release, phase) in [
        ("qa", 1, 1, Succeeded),
        ("qa", 2, 2, Succeeded),
        ("qa", 3, 3, Failed),
        ("production", 1, 1, Succeeded),
        ("production", 2, 2, Progressing),
    ] {
        let mut d = Deployment::new(
            deployment_name(&app, env, number),
            DeploymentSpec {
                application: app.clone(),
                environment: env.to_owned(),
                release,
                number,
                cause: DeploymentCause::Deploy,
                requested_by: None,
            },
        );
        d.status.phase = phase;
        writes.push(repo::create(&d).unwrap());
    }
    writes
}

/// Timings of one query, and how many samples failed or disagreed with the old way.
#[derive(Default)]
struct Timings {
    new: Vec<Duration>,
    old: Vec<Duration>,
    failed: usize,
    disagreed: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

impl Timings {
    fn print(&mut self, label: &str) {
        self.new.sort();
        self.old.sort();
        println!(
            "| {label} | {:.3} | {:.3} | {} | {} | {} / {} |",
            percentile(&self.new, 0.5),
            percentile(&self.new, 0.95),
            if self.old.is_empty() {
                "—".to_owned()
            } else {
                format!("{:.3}", percentile(&self.old, 0.5))
            },
            if self.old.is_empty() {
                "—".to_owned()
            } else {
                format!("{:.3}", percentile(&self.old, 0.95))
            },
            self.failed,
            self.disagreed,
        );
    }
}

/// Times `new` and `old` on `samples` random applications and compares their answers.
async fn compare<T: PartialEq + std::fmt::Debug>(
    label: &str,
    apps: usize,
    samples: usize,
    mut new: impl AsyncFnMut(usize) -> Result<T, RepoError>,
    mut old: impl AsyncFnMut(usize) -> Result<T, RepoError>,
) {
    let mut t = Timings::default();
    for _ in 0..samples {
        let i = rand::rng().random_range(0..apps);
        let start = Instant::now();
        let a = new(i).await;
        t.new.push(start.elapsed());
        let start = Instant::now();
        let b = old(i).await;
        t.old.push(start.elapsed());
        match (a, b) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(a), Ok(b)) => {
                if t.disagreed == 0 {
                    eprintln!("{label}: {a:?} != {b:?}");
                }
                t.disagreed += 1;
            }
            (a, b) => {
                eprintln!("{label}: failed: {:?} / {:?}", a.err(), b.err());
                t.failed += 1;
            }
        }
    }
    t.print(label);
}

fn names<K: berth_core::meta::Kind>(items: &[berth_core::meta::Resource<K>]) -> Vec<String> {
    items.iter().map(|r| r.metadata.name.clone()).collect()
}

async fn old_of_env(store: &dyn Store, app: &str, env: &str) -> Result<Vec<Deployment>, RepoError> {
    Ok(repo::list_all::<DeploymentKind>(store, Some(app))
        .await?
        .into_iter()
        .filter(|d| d.spec.environment == env)
        .collect())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let apps: usize = args.next().map_or(10_000, |a| a.parse().unwrap());
    let samples: usize = args.next().map_or(200, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    // A third argument keeps the database there, to look at it afterwards.
    let path = args
        .next()
        .map_or_else(|| dir.path().join("berth.db"), std::path::PathBuf::from);
    let store = SqliteStore::open(&path).await.unwrap();
    let s: &dyn Store = &store;
    println!("load average before: {}", loadavg());

    let start = Instant::now();
    let mut load_failures = 0;
    for chunk in (0..apps).collect::<Vec<_>>().chunks(20) {
        let writes = chunk.iter().flat_map(|&i| writes_of(i)).collect();
        if s.commit(writes, vec![]).await.is_err() {
            load_failures += 1;
        }
    }
    println!(
        "loaded {apps} applications, {} releases, {} deployments in {:.1}s ({load_failures} failed commits)",
        apps * 3,
        apps * 5,
        start.elapsed().as_secs_f64()
    );
    println!();
    println!("| query | new p50 ms | new p95 ms | old p50 ms | old p95 ms | failed / disagreed |");
    println!("| --- | --- | --- | --- | --- | --- |");

    compare(
        "governing deployment of (app, env)",
        apps,
        samples,
        async |i| {
            Ok(repo::governing(s, &app_name(i), "qa")
                .await?
                .map(|d| d.metadata.name))
        },
        async |i| {
            let of_env = old_of_env(s, &app_name(i), "qa").await?;
            Ok(governing(&of_env).map(|d| d.metadata.name.clone()))
        },
    )
    .await;
    compare(
        "last succeeded deployment of (app, env)",
        apps,
        samples,
        async |i| {
            Ok(repo::last_succeeded(s, &app_name(i), "production")
                .await?
                .map(|d| d.metadata.name))
        },
        async |i| {
            let of_env = old_of_env(s, &app_name(i), "production").await?;
            Ok(last_succeeded(&of_env).map(|d| d.metadata.name.clone()))
        },
    )
    .await;
    compare(
        "deployments of (app, env), newest first, page of 20",
        apps,
        samples,
        async |i| {
            let page = s
                .deployments(&DeploymentQuery {
                    application: app_name(i),
                    environment: "qa".to_owned(),
                    before: None,
                    limit: 20,
                })
                .await?;
            Ok(page
                .items
                .iter()
                .map(|d| {
                    serde_json::from_value::<Deployment>(d.clone())
                        .unwrap()
                        .metadata
                        .name
                })
                .collect::<Vec<_>>())
        },
        async |i| {
            let mut of_env = old_of_env(s, &app_name(i), "qa").await?;
            of_env.sort_by_key(|d| std::cmp::Reverse(d.spec.number));
            of_env.truncate(20);
            Ok(names(&of_env))
        },
    )
    .await;
    compare(
        "newest release",
        apps,
        samples,
        async |i| {
            Ok(repo::newest_release(s, &app_name(i))
                .await?
                .map(|r| r.metadata.name))
        },
        async |i| {
            let releases = repo::list_all::<ReleaseKind>(s, Some(&app_name(i))).await?;
            Ok(releases
                .iter()
                .max_by_key(|r| r.spec.number)
                .map(|r| r.metadata.name.clone()))
        },
    )
    .await;
    compare(
        "newest built release",
        apps,
        samples,
        async |i| {
            Ok(repo::newest_built_release(s, &app_name(i))
                .await?
                .map(|r| r.metadata.name))
        },
        async |i| {
            let releases = repo::list_all::<ReleaseKind>(s, Some(&app_name(i))).await?;
            Ok(releases
                .iter()
                .filter(|r| r.spec.origin.build.is_some() && r.spec.origin.promotion.is_none())
                .max_by_key(|r| r.spec.number)
                .map(|r| r.metadata.name.clone()))
        },
    )
    .await;
    compare(
        "releases with a digest (lineage)",
        apps,
        samples,
        async |i| {
            Ok(names(
                &repo::releases_with_digest(s, &app_name(i), &digest(i, 2)).await?,
            ))
        },
        async |i| {
            let mut releases = repo::list_all::<ReleaseKind>(s, Some(&app_name(i))).await?;
            releases.retain(|r| digest_of(&r.spec.template.image) == Some(digest(i, 2).as_str()));
            releases.sort_by_key(|r| std::cmp::Reverse(r.spec.number));
            Ok(names(&releases))
        },
    )
    .await;
    compare(
        "releases with a template hash",
        apps,
        samples,
        async |i| {
            let hash = repo::release(s, &app_name(i), 2).await?.unwrap().template_hash();
            Ok(names(
                &repo::releases_with_template(s, &app_name(i), &hash).await?,
            ))
        },
        async |i| {
            let hash = repo::release(s, &app_name(i), 2).await?.unwrap().template_hash();
            let mut releases = repo::list_all::<ReleaseKind>(s, Some(&app_name(i))).await?;
            releases.retain(|r| r.template_hash() == hash);
            releases.sort_by_key(|r| std::cmp::Reverse(r.spec.number));
            Ok(names(&releases))
        },
    )
    .await;
    compare(
        "next release number",
        apps,
        samples,
        async |i| Ok(s.next_release_number(&app_name(i)).await?),
        async |i| {
            let releases = repo::list_all::<ReleaseKind>(s, Some(&app_name(i))).await?;
            Ok(releases.iter().map(|r| r.spec.number).max().unwrap_or(0) + 1)
        },
    )
    .await;
    compare(
        "next deployment number of (app, env)",
        apps,
        samples,
        async |i| Ok(s.next_deployment_number(&app_name(i), "qa").await?),
        async |i| {
            Ok(berth_core::delivery::next_deployment_number(
                &old_of_env(s, &app_name(i), "qa").await?,
            ))
        },
    )
    .await;
    let few = (samples / 10).max(3);
    compare(
        &format!("team usage in an environment ({} apps per team)", apps / TEAMS),
        apps,
        few,
        async |i| Ok(repo::team_usage(s, &team_of(i), "qa", CLUSTERS, &app_name(i)).await?),
        async |i| {
            // As `admit` does today: every application, then each one's deployments.
            let team = team_of(i);
            let mut usage = Usage::default();
            for a in repo::list_all::<ApplicationKind>(s, None).await? {
                if a.spec.team != team || a.metadata.name == app_name(i) {
                    continue;
                }
                let of_env = old_of_env(s, &a.metadata.name, "qa").await?;
                if let Some(g) = governing(&of_env)
                    && let Some(r) = repo::release(s, &a.metadata.name, g.spec.release).await?
                {
                    usage.add(&Demand::of(&r.spec.template, "qa", CLUSTERS));
                }
            }
            Ok(usage)
        },
    )
    .await;
    compare(
        "applications of a team, first page of 100",
        apps,
        samples,
        async |i| {
            let page = s
                .team_applications(&TeamQuery {
                    team: team_of(i),
                    after: None,
                    limit: 100,
                })
                .await?;
            Ok(page.items.len())
        },
        async |i| {
            let team = team_of(i);
            let all = repo::list_all::<ApplicationKind>(s, None).await?;
            Ok(all.iter().filter(|a| a.spec.team == team).take(100).count())
        },
    )
    .await;
    compare(
        "every governing deployment (all pages of 1000)",
        apps,
        3,
        async |_| {
            let mut all = names(&repo::governing_all(s, None).await?);
            all.sort();
            Ok(all)
        },
        async |_| {
            let mut by_key: BTreeMap<(String, String), Vec<Deployment>> = BTreeMap::new();
            for d in repo::list_all::<DeploymentKind>(s, None).await? {
                by_key
                    .entry((d.spec.application.clone(), d.spec.environment.clone()))
                    .or_default()
                    .push(d);
            }
            let mut all: Vec<String> = by_key
                .values()
                .filter_map(|ds| governing(ds).map(|d| d.metadata.name.clone()))
                .collect();
            all.sort();
            Ok(all)
        },
    )
    .await;

    // The plain paged list, unchanged: a page of 100 applications at a random cursor.
    let mut t = Timings::default();
    let first = s
        .list(&ListQuery {
            kind: "Application".to_owned(),
            owner: None,
            after: None,
            limit: 1,
        })
        .await
        .unwrap();
    let first_cursor = first.next.unwrap_or(1);
    let total_objects = apps as u64 * 9;
    for _ in 0..samples {
        let after = rand::rng().random_range(first_cursor..first_cursor + total_objects);
        let start = Instant::now();
        let page = s
            .list(&ListQuery {
                kind: "Application".to_owned(),
                owner: None,
                after: Some(after),
                limit: 100,
            })
            .await;
        t.new.push(start.elapsed());
        match page {
            Ok(p) if p.items.len() == 100 || p.next.is_none() => {}
            Ok(_) => t.disagreed += 1,
            Err(_) => t.failed += 1,
        }
    }
    t.print("list of applications, a page of 100 (unchanged)");
    println!();
    println!("load average after: {}", loadavg());
}
