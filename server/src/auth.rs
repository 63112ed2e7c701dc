//! The policy file for `berth serve --auth FILE`, and `berth auth hash-password | gen-key`.

use std::io::BufRead;
use std::path::Path;

use crate::config::AuthCommand;
use crate::env::hex;
use crate::error::Error;
use berth::auth::Auth;
use berth::auth::password::PasswordHash;

/// Read the policy at `path`, and the signing key its `signing_key_file` names (relative to
/// the policy). Without one, a random key is made: tokens then last until a restart.
pub fn load(path: &Path) -> Result<Auth, Error> {
    let policy = |source| Error::Policy {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let file = Auth::parse(&text).map_err(policy)?;
    let key = match &file.signing_key_file {
        Some(name) => {
            let key_path = path.parent().unwrap_or(Path::new("")).join(name);
            let key = std::fs::read_to_string(&key_path)
                .map_err(|e| Error::io(format!("reading {}", key_path.display()), e))?;
            key.trim().as_bytes().to_vec()
        }
        None => {
            tracing::warn!(
                "{}: no signing_key_file; tokens are signed with a random key and stop \
                 working when berth restarts",
                path.display()
            );
            random(32)?.into_bytes()
        }
    };
    Auth::from_file(file, &key).map_err(policy)
}

pub fn run(cmd: AuthCommand) -> Result<(), Error> {
    match cmd {
        AuthCommand::GenKey => println!("{}", random(32)?),
        AuthCommand::HashPassword { iterations } => {
            if iterations == 0 {
                return Err(Error::setting("--iterations", "must be at least 1"));
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Error::io("reading the password", e))?;
            let password = line.strip_suffix('\n').unwrap_or(&line);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.is_empty() {
                return Err(Error::setting(
                    "the password",
                    "empty (give it on standard input)",
                ));
            }
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(random_err)?;
            println!("{}", PasswordHash::new(password, &salt, iterations));
        }
    }
    Ok(())
}

/// `n` random bytes as hex.
fn random(n: usize) -> Result<String, Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(random_err)?;
    Ok(hex(&bytes))
}

fn random_err(e: getrandom::Error) -> Error {
    Error::io("the OS random source", std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_key_beside_the_policy() {
        let dir = std::env::temp_dir().join(format!("berth-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy = dir.join("policy.toml");
        std::fs::write(&policy, "default = \"open\"\nsigning_key_file = \"k\"\n").unwrap();
        assert!(
            load(&policy).unwrap_err().to_string().contains("reading"),
            "no key file"
        );
        std::fs::write(dir.join("k"), "short\n").unwrap();
        assert!(
            load(&policy)
                .unwrap_err()
                .to_string()
                .contains("at least 32 bytes")
        );
        std::fs::write(dir.join("k"), format!("{}\n", random(32).unwrap())).unwrap();
        let auth = load(&policy).unwrap();
        assert_eq!(auth.token_path(), "/token");
        // Without a key file: a random key, and the policy still loads.
        std::fs::write(&policy, "default = \"authenticated\"\n").unwrap();
        assert!(load(&policy).is_ok());
        std::fs::write(&policy, "default = \"sometimes\"\n").unwrap();
        assert!(
            load(&policy)
                .unwrap_err()
                .to_string()
                .contains("policy.toml")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
