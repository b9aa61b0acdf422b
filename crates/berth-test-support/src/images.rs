//! A registry that knows a fixed table of tags.

use std::{collections::HashMap, sync::Mutex};

use async_trait::async_trait;
use berth_core::{
    image::ImageRef,
    ports::{ImageResolver, ResolveError},
};

/// An [`ImageResolver`] answering from a table of `image → digest` (the image as
/// written, without a digest); a reference that carries a digest resolves to it.
/// Anything else is not found. Records every lookup.
#[derive(Debug, Default)]
pub struct FakeImages {
    digests: Mutex<HashMap<String, String>>,
    lookups: Mutex<Vec<String>>,
}

impl FakeImages {
    /// A registry where `image` (e.g. `127.0.0.1:5000/web:1`) has `digest`.
    #[must_use]
    pub fn with(self, image: &str, digest: &str) -> Self {
        self.set(image, digest);
        self
    }

    /// Points `image` at `digest` from now on.
    pub fn set(&self, image: &str, digest: &str) {
        self.digests
            .lock()
            .unwrap()
            .insert(image.to_owned(), digest.to_owned());
    }

    /// Every reference looked up, in order.
    #[must_use]
    pub fn lookups(&self) -> Vec<String> {
        self.lookups.lock().unwrap().clone()
    }
}

#[async_trait]
impl ImageResolver for FakeImages {
    async fn resolve(&self, image: &ImageRef) -> Result<String, ResolveError> {
        let written = image.to_string();
        self.lookups.lock().unwrap().push(written.clone());
        if let Some((_, digest)) = written.split_once('@') {
            return Ok(digest.to_owned());
        }
        self.digests
            .lock()
            .unwrap()
            .get(&written)
            .cloned()
            .ok_or(ResolveError::NotFound { image: written })
    }
}
