//! Reproducible image layers: a tar with sorted entries, fixed owners, modes and
//! timestamps, gzipped with a fixed level and an empty header. The same files always give
//! the same bytes, hence the same digest.

use std::{collections::BTreeMap, io::Write};

use bytes::Bytes;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

/// The time every entry carries: one second after the epoch, as Jib does (some tools treat
/// 0 as "unset").
pub const ENTRY_MTIME: u64 = 1;

/// A compressed layer ready to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// What it holds, e.g. `classes`.
    pub role: String,
    /// The tar+gzip bytes.
    pub data: Bytes,
    /// `sha256:` of `data`.
    pub digest: String,
    /// `sha256:` of the uncompressed tar (the image config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// One file of a layer: path inside the image (no leading `/`), content and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the image, e.g. `app/classes/com/example/Main.class`.
    pub path: String,
    /// Content.
    pub data: Vec<u8>,
    /// Unix mode, e.g. `0o644`.
    pub mode: u32,
}

/// `sha256:<hex>` of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Makes the layer of `entries`; their parent directories are added.
pub fn layer(role: &str, entries: &[Entry]) -> std::io::Result<Layer> {
    let tar = tar_of(entries)?;
    let diff_id = sha256(&tar);
    let data = gzip(&tar)?;
    Ok(Layer {
        role: role.to_owned(),
        digest: sha256(&data),
        diff_id,
        data: Bytes::from(data),
    })
}

/// A tar of `entries` (and their parent directories), sorted by path.
pub fn tar_of(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    enum Item<'a> {
        Dir,
        File(&'a Entry),
    }
    let mut items: BTreeMap<String, Item<'_>> = BTreeMap::new();
    for e in entries {
        let mut dir = String::new();
        let parts: Vec<&str> = e.path.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            dir.push_str(part);
            dir.push('/');
            items.entry(dir.clone()).or_insert(Item::Dir);
        }
        items.insert(parts.join("/"), Item::File(e));
    }
    let mut builder = tar::Builder::new(Vec::new());
    for (path, item) in &items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(ENTRY_MTIME);
        header.set_uid(0);
        header.set_gid(0);
        match item {
            Item::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, std::io::empty())?;
            }
            Item::File(e) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(e.mode);
                header.set_size(e.data.len() as u64);
                builder.append_data(&mut header, path, e.data.as_slice())?;
            }
        }
    }
    builder.into_inner()
}

/// Gzip with a fixed level and a header without name or time.
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new().mtime(0).write(Vec::new(), Compression::new(6));
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(order: &[usize]) -> Vec<Entry> {
        let all = [
            Entry {
                path: "app/classes/b/B.class".into(),
                data: b"bb".to_vec(),
                mode: 0o644,
            },
            Entry {
                path: "app/classes/a/A.class".into(),
                data: b"aa".to_vec(),
                mode: 0o644,
            },
            Entry {
                path: "app/run.sh".into(),
                data: b"#!/bin/sh".to_vec(),
                mode: 0o755,
            },
        ];
        order.iter().map(|i| all[*i].clone()).collect()
    }

    #[test]
    fn the_same_files_give_the_same_digest_in_any_order() {
        let a = layer("classes", &entries(&[0, 1, 2])).unwrap();
        let b = layer("classes", &entries(&[2, 1, 0])).unwrap();
        assert_eq!((a.digest.clone(), a.diff_id.clone()), (b.digest, b.diff_id));
        let c = layer("classes", &entries(&[0, 1])).unwrap();
        assert_ne!(a.digest, c.digest);
        assert_eq!(sha256(&a.data), a.digest);
    }

    #[test]
    fn entries_are_sorted_with_their_directories_and_fixed_headers() {
        let tar = tar_of(&entries(&[2, 0, 1])).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let listed: Vec<(String, u64, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mtime().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect();
        let paths: Vec<&str> = listed.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "app/",
                "app/classes/",
                "app/classes/a/",
                "app/classes/a/A.class",
                "app/classes/b/",
                "app/classes/b/B.class",
                "app/run.sh"
            ]
        );
        assert!(listed.iter().all(|l| l.1 == ENTRY_MTIME));
        assert_eq!(listed[6].2, 0o755);
    }
}
