//! Sealing secret values at rest: XChaCha20-Poly1305 under a keyring that can rotate.
//!
//! ```text
//!  key file / BERTH_SECRETS_KEY          one key per line, base64 of 32 bytes; the first seals
//!        │                               (new at the top), the others still open
//!        ▼
//!  Keyring ──seal(value, aad)──▶ Sealed { keyId, nonce, ciphertext }   (stored)
//!          ◀──open(sealed, aad)──         keyId picks the key; the AAD binds the
//!                                         ciphertext to its application, name and version
//! ```
//!
//! A key's id is derived from the key itself (a SHA-256 prefix), so no one has to name
//! keys and a wrong file is caught by "no key with id …" instead of a failed tag.
//! Rotating: put a new key on the first line, keep the old ones below, restart, re-seal
//! every secret (`POST /api/v1/secrets/rotate`), then drop the old lines.

use std::{io::Write, path::Path};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use berth_core::objects::{Sealed, SecretValue};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Errors of the keyring.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A line of the key material is not a 32-byte key in base64.
    #[error(
        "{origin}, line {line}: not a key (expected 32 random bytes in base64, e.g. from `head -c32 /dev/urandom | base64`)"
    )]
    BadKey {
        /// Where the material came from.
        origin: String,
        /// The line, counting from 1.
        line: usize,
    },
    /// The material holds no key.
    #[error("{origin} holds no key")]
    Empty {
        /// Where the material came from.
        origin: String,
    },
    /// The key file cannot be read or written.
    #[error("cannot {doing} the key file {path}")]
    File {
        /// What was being done.
        doing: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A secret was sealed with a key the keyring does not hold.
    #[error(
        "no key with id {key_id} is configured; add the key that sealed it to the key file (below the active key)"
    )]
    UnknownKey {
        /// The key named by the sealed value.
        key_id: String,
    },
    /// The ciphertext does not open: it was changed, moved to another secret, or the key
    /// is wrong.
    #[error("the sealed value does not open with key {key_id}: it was altered or belongs to another secret")]
    Corrupt {
        /// The key tried.
        key_id: String,
    },
}

/// One key and its id.
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The keys that open secrets; the first one seals.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// The id of a key: the first 16 hex digits of a SHA-256 over a fixed label and the key.
fn key_id(key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"berth-secrets-key-id:");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

fn decode_key(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(Zeroizing::new)
        .filter(|k| k.len() == 32)
}

/// The additional data a secret is sealed with: its application, name and version, so
/// that a ciphertext copied onto another secret (or an older version) does not open.
#[must_use]
pub fn secret_aad(application: &str, name: &str, version: u64) -> Vec<u8> {
    format!("berth-secret:v1:{application}/{name}@{version}").into_bytes()
}

/// The additional data a cluster's kubeconfig is sealed with: its cluster and version.
#[must_use]
pub fn cluster_credential_aad(cluster: &str, version: u64) -> Vec<u8> {
    format!("berth-cluster-credential:v1:{cluster}@{version}").into_bytes()
}

/// The additional data of a secret value for one environment (`None`: all environments,
/// the same as [`secret_aad`]), so that a value sealed for qa does not open as
/// production's.
#[must_use]
pub fn secret_aad_in(application: &str, name: &str, environment: Option<&str>, version: u64) -> Vec<u8> {
    match environment {
        Some(env) => format!("berth-secret:v1:{application}/{name}/{env}@{version}").into_bytes(),
        None => secret_aad(application, name, version),
    }
}

impl Keyring {
    /// Reads keys from text: one base64 key per line, `#` starts a comment; `origin`
    /// names the text in errors.
    ///
    /// # Errors
    ///
    /// [`KeyError::BadKey`] naming the line, or [`KeyError::Empty`].
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bytes = decode_key(line).ok_or_else(|| KeyError::BadKey {
                origin: origin.to_owned(),
                line: i + 1,
            })?;
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| KeyError::BadKey {
                origin: origin.to_owned(),
                line: i + 1,
            })?;
            keys.push(Key {
                id: key_id(&bytes),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty {
                origin: origin.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    /// A keyring of one new random key that exists only in memory.
    #[must_use]
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        Self {
            keys: vec![Key {
                id: key_id(key.as_ref()),
                cipher: XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key)),
            }],
        }
    }

    /// Reads the key file at `path`.
    ///
    /// # Errors
    ///
    /// [`KeyError::File`] when it cannot be read, or what [`Keyring::parse`] finds.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| KeyError::File {
            doing: "read",
            path: path.display().to_string(),
            source,
        })?);
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads the key file at `path`, first creating it with one new random key (mode
    /// 0600) when it does not exist. Returns whether it was created.
    ///
    /// # Errors
    ///
    /// [`KeyError::File`] when it cannot be read or created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        if path.exists() {
            return Self::from_file(path).map(|k| (k, false));
        }
        let key = new_key_text();
        let created = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            writeln!(
                file,
                "# Berth secrets key: the first key seals, every key listed opens. Keep a copy.\n{}",
                key.as_str()
            )
        })();
        created.map_err(|source| KeyError::File {
            doing: "create",
            path: path.display().to_string(),
            source,
        })?;
        Self::from_file(path).map(|k| (k, true))
    }

    /// The id of the key that seals.
    #[must_use]
    pub fn active_id(&self) -> &str {
        self.keys.first().map_or("", |k| k.id.as_str())
    }

    /// The ids of every key, the sealing one first.
    #[must_use]
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Seals `value` with the active key and a fresh random nonce.
    ///
    /// # Errors
    ///
    /// [`KeyError::Empty`] if the keyring has no key (it cannot be built without one).
    pub fn seal(&self, value: &str, aad: &[u8]) -> Result<Sealed, KeyError> {
        let key = self.keys.first().ok_or_else(|| KeyError::Empty {
            origin: "the keyring".to_owned(),
        })?;
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| KeyError::Corrupt {
                key_id: key.id.clone(),
            })?;
        Ok(Sealed {
            key_id: key.id.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        })
    }

    /// Opens a sealed value.
    ///
    /// # Errors
    ///
    /// [`KeyError::UnknownKey`] when its key is not configured, [`KeyError::Corrupt`] when
    /// it does not authenticate (altered, another secret's, or another AAD).
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<SecretValue, KeyError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| KeyError::UnknownKey {
                key_id: sealed.key_id.clone(),
            })?;
        let corrupt = || KeyError::Corrupt {
            key_id: key.id.clone(),
        };
        let nonce = STANDARD.decode(&sealed.nonce).map_err(|_| corrupt())?;
        let nonce = XNonce::try_from(nonce.as_slice()).map_err(|_| corrupt())?;
        let ciphertext = STANDARD.decode(&sealed.ciphertext).map_err(|_| corrupt())?;
        let plain = Zeroizing::new(
            key.cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: &ciphertext,
                        aad,
                    },
                )
                .map_err(|_| corrupt())?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| corrupt())?;
        Ok(SecretValue::new(text.to_owned()))
    }

    /// Whether `sealed` should be sealed again with the active key.
    #[must_use]
    pub fn needs_reseal(&self, sealed: &Sealed) -> bool {
        sealed.key_id != self.active_id()
    }
}

/// A new random key in the key file's notation.
#[must_use]
pub fn new_key_text() -> Zeroizing<String> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(key.as_mut());
    Zeroizing::new(STANDARD.encode(key.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(lines: &[&str]) -> Keyring {
        Keyring::parse(&lines.join("\n"), "test").unwrap()
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let k = new_key_text();
        let r = ring(&[&k]);
        let aad = secret_aad("web", "db", 1);
        let a = r.seal("hunter2", &aad).unwrap();
        let b = r.seal("hunter2", &aad).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(!a.ciphertext.contains("hunter2"));
        assert_eq!(r.open(&a, &aad).unwrap().expose(), "hunter2");
        assert_eq!(a.key_id, r.active_id());
        assert_eq!(a.key_id.len(), 16);
    }

    #[test]
    fn the_aad_binds_a_ciphertext_to_its_secret() {
        let r = ring(&[&new_key_text()]);
        let sealed = r.seal("v", &secret_aad("web", "db", 1)).unwrap();
        for other in [
            secret_aad("web", "db", 2),
            secret_aad("web", "api", 1),
            secret_aad("shop", "db", 1),
        ] {
            assert!(matches!(r.open(&sealed, &other), Err(KeyError::Corrupt { .. })));
        }
        let mut altered = sealed.clone();
        let mut bytes = STANDARD.decode(&altered.ciphertext).unwrap();
        bytes[0] ^= 1;
        altered.ciphertext = STANDARD.encode(bytes);
        assert!(matches!(
            r.open(&altered, &secret_aad("web", "db", 1)),
            Err(KeyError::Corrupt { .. })
        ));
    }

    #[test]
    fn rotation_keeps_old_keys_for_opening() {
        let (old, new) = (new_key_text(), new_key_text());
        let before = ring(&[&old]);
        let aad = secret_aad("web", "db", 3);
        let sealed = before.seal("v1", &aad).unwrap();
        let rotated = ring(&["# new key first", &new, &old]);
        assert!(rotated.needs_reseal(&sealed));
        assert_eq!(rotated.open(&sealed, &aad).unwrap().expose(), "v1");
        let resealed = rotated.seal("v1", &aad).unwrap();
        assert!(!rotated.needs_reseal(&resealed));
        let only_new = ring(&[&new]);
        assert_eq!(only_new.open(&resealed, &aad).unwrap().expose(), "v1");
        assert!(matches!(
            only_new.open(&sealed, &aad),
            Err(KeyError::UnknownKey { .. })
        ));
    }

    #[test]
    fn generated_keyrings_work_alone() {
        let r = Keyring::generate();
        let sealed = r.seal("x", b"aad").unwrap();
        assert_eq!(r.open(&sealed, b"aad").unwrap().expose(), "x");
        assert_ne!(Keyring::generate().active_id(), r.active_id());
    }

    #[test]
    fn bad_material_names_the_line() {
        let e = Keyring::parse("# comment\n\nnot-a-key\n", "BERTH_SECRETS_KEY").unwrap_err();
        assert_eq!(
            e.to_string(),
            "BERTH_SECRETS_KEY, line 3: not a key (expected 32 random bytes in base64, e.g. from `head -c32 \
             /dev/urandom | base64`)"
        );
        let short = STANDARD.encode([1u8; 16]);
        assert!(matches!(
            Keyring::parse(&short, "x"),
            Err(KeyError::BadKey { line: 1, .. })
        ));
        assert!(matches!(
            Keyring::parse("# only\n", "x"),
            Err(KeyError::Empty { .. })
        ));
        // Every base64 alphabet is accepted.
        let raw = [7u8; 32];
        let a = ring(&[&URL_SAFE_NO_PAD.encode(raw)]);
        let b = ring(&[&STANDARD.encode(raw)]);
        assert_eq!(a.active_id(), b.active_id());
    }

    #[test]
    fn a_missing_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let (first, created) = Keyring::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = Keyring::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.active_id(), again.active_id());
        assert!(!format!("{again:?}").contains(&std::fs::read_to_string(&path).unwrap()[60..]));
    }
}
