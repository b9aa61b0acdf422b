//! The one retry policy of every use case: a commit that loses a race (a number another
//! commit took first, a document changed since it was read) reloads and decides again,
//! at most [`ATTEMPTS`] times, then gives up with [`Error::Busy`] having changed nothing.

use std::future::Future;

use berth_core::{
    NewEvent,
    ports::{Commit, Store, StoreError, Write},
};

use crate::{Error, Result};

/// Attempts of one use case before it answers [`Error::Busy`].
pub const ATTEMPTS: usize = 5;

/// The outcome of one attempt.
pub(crate) enum Attempt<T> {
    /// Done: the answer.
    Done(T),
    /// Another commit won the race; load and decide again.
    Raced,
}

/// Runs `attempt` until it is done, at most [`ATTEMPTS`] times.
pub(crate) async fn retrying<T, F, Fut>(application: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>>>,
{
    for n in 1..=ATTEMPTS {
        match attempt().await? {
            Attempt::Done(t) => return Ok(t),
            Attempt::Raced => tracing::debug!(application, attempt = n, "commit lost a race; deciding again"),
        }
    }
    Err(Error::Busy {
        application: application.to_owned(),
    })
}

/// Commits once; a lost race is [`Attempt::Raced`], not an error.
pub(crate) async fn commit(
    store: &dyn Store,
    writes: Vec<Write>,
    events: Vec<NewEvent>,
) -> Result<Attempt<Commit>> {
    match store.commit(writes, events).await {
        Ok(c) => Ok(Attempt::Done(c)),
        Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => Ok(Attempt::Raced),
        Err(e) => Err(e.into()),
    }
}
