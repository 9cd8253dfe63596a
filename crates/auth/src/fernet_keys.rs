//! Keystone's Fernet key repository: files named `0..N` in one directory;
//! `0` is the staged key, the highest number is the primary (it encrypts),
//! the rest are secondary (they only decrypt). Same layout and rotation as
//! `keystone-manage fernet_setup|fernet_rotate`, so a repository can move
//! between Keystone and ferrostack without invalidating tokens.

use base64::Engine;
use fernet::{Fernet, MultiFernet};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyRepoError {
    #[error("key repository {path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("key repository {0} holds no valid keys")]
    Empty(PathBuf),
    #[error("key file {0} is not a valid Fernet key")]
    BadKey(PathBuf),
}

/// Keys loaded from a repository, primary first (Keystone's order).
pub struct FernetKeys {
    multi: MultiFernet,
    primary: Fernet,
    count: usize,
}

impl FernetKeys {
    pub fn encrypt(&self, data: &[u8]) -> String {
        self.primary.encrypt(data)
    }
    pub fn decrypt(&self, token: &str) -> Option<Vec<u8>> {
        self.multi.decrypt(token).ok()
    }
    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Builds a key set from raw base64url keys (primary first); for tests.
    pub fn from_keys(keys: &[String]) -> Option<FernetKeys> {
        let fernets: Vec<Fernet> = keys.iter().filter_map(|k| Fernet::new(k)).collect();
        let primary = Fernet::new(keys.first()?)?;
        let count = fernets.len();
        Some(FernetKeys {
            multi: MultiFernet::new(fernets),
            primary,
            count,
        })
    }
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> KeyRepoError + 'a {
    move |source| KeyRepoError::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

/// Numbered key files present, ascending.
fn key_indices(dir: &Path) -> Result<Vec<u64>, KeyRepoError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir, "listing"))? {
        let entry = entry.map_err(io(dir, "listing"))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn write_key(path: &Path, key: &str) -> Result<(), KeyRepoError> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io(path, "writing key"))?;
        f.write_all(key.as_bytes())
            .map_err(io(path, "writing key"))?;
        f.sync_all().map_err(io(path, "writing key"))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path, "writing key"))
}

/// `fernet_setup`: creates the repository with a staged key `0` and a primary
/// `1` if it holds no keys yet. Idempotent.
pub fn setup(dir: &Path) -> Result<(), KeyRepoError> {
    std::fs::create_dir_all(dir).map_err(io(dir, "creating"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    if key_indices(dir)?.is_empty() {
        write_key(&dir.join("0"), &Fernet::generate_key())?;
        rotate(dir, 3)?;
    }
    Ok(())
}

/// `fernet_rotate`: the staged key becomes the new primary (next number), a
/// new staged key is written, and the oldest secondaries beyond
/// `max_active_keys` are removed.
pub fn rotate(dir: &Path, max_active_keys: usize) -> Result<(), KeyRepoError> {
    let keys = key_indices(dir)?;
    let next = keys.last().copied().unwrap_or(0) + 1;
    let staged = dir.join("0");
    if staged.exists() {
        std::fs::rename(&staged, dir.join(next.to_string()))
            .map_err(io(dir, "promoting staged key"))?;
    }
    write_key(&staged, &Fernet::generate_key())?;
    let mut keys = key_indices(dir)?;
    let max = max_active_keys.max(2);
    while keys.len() > max {
        // keys[0] is the staged key; the oldest secondary is keys[1].
        let victim = keys.remove(1);
        std::fs::remove_file(dir.join(victim.to_string())).map_err(io(dir, "removing old key"))?;
    }
    Ok(())
}

/// Loads the repository, primary first then the others in descending order.
pub fn load(dir: &Path) -> Result<FernetKeys, KeyRepoError> {
    let mut idx = key_indices(dir)?;
    idx.reverse();
    let mut keys = Vec::with_capacity(idx.len());
    for n in idx {
        let path = dir.join(n.to_string());
        let text = std::fs::read_to_string(&path).map_err(io(&path, "reading key"))?;
        let text = text.trim().to_string();
        let valid = base64::engine::general_purpose::URL_SAFE
            .decode(&text)
            .map(|b| b.len() == 32)
            .unwrap_or(false);
        if !valid || Fernet::new(&text).is_none() {
            return Err(KeyRepoError::BadKey(path));
        }
        keys.push(text);
    }
    FernetKeys::from_keys(&keys).ok_or_else(|| KeyRepoError::Empty(dir.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_rotate_keeps_old_tokens_valid() {
        let dir = std::env::temp_dir().join(format!("ferro-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        setup(&dir).unwrap();
        assert_eq!(key_indices(&dir).unwrap(), vec![0, 1]);
        let token = load(&dir).unwrap().encrypt(b"hello");
        rotate(&dir, 3).unwrap();
        assert_eq!(key_indices(&dir).unwrap(), vec![0, 1, 2]);
        // old primary is now secondary: still decrypts
        assert_eq!(
            load(&dir).unwrap().decrypt(&token).as_deref(),
            Some(&b"hello"[..])
        );
        rotate(&dir, 3).unwrap();
        assert_eq!(key_indices(&dir).unwrap(), vec![0, 2, 3]);
        assert!(load(&dir).unwrap().decrypt(&token).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
