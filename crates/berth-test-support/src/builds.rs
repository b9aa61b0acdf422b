//! A build service that builds nothing.

use std::{sync::Mutex, time::Duration};

use async_trait::async_trait;
use berth_core::{
    objects::{Build, BuildSpec, Builder, build_name},
    ports::{BuildError, BuildRequest, BuildTicket, Builds, LogChunk},
};

/// A [`Builds`] that records every request and answers a new pending build numbered
/// from 1; logs are empty and finished.
#[derive(Debug, Default)]
pub struct FakeBuilds {
    requests: Mutex<Vec<BuildRequest>>,
}

impl FakeBuilds {
    /// Every request, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<BuildRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl Builds for FakeBuilds {
    async fn request(&self, request: BuildRequest) -> Result<BuildTicket, BuildError> {
        let mut requests = self.requests.lock().unwrap();
        requests.push(request.clone());
        let number = requests.len() as u64;
        let build = Build::new(
            build_name(&request.application, number),
            BuildSpec {
                application: request.application.clone(),
                number,
                git: None,
                git_ref: request.git_ref.clone(),
                commit: None,
                builder: Builder::Image,
                builder_hash: String::new(),
                image: String::new(),
                requested_by: Some(request.requested_by.clone()),
            },
        );
        Ok(BuildTicket { build, reused: false })
    }

    async fn log(&self, _name: &str, offset: u64) -> Result<LogChunk, BuildError> {
        Ok(LogChunk {
            text: String::new(),
            next: offset,
            finished: true,
        })
    }

    async fn wait_log(&self, _name: &str, _offset: u64, _timeout: Duration) {}
}
