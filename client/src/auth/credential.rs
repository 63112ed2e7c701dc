//! A credential: a secret for one registry, and where it came from.

/// A secret for one registry, and where it came from (for error messages).
#[derive(Clone)]
pub struct Credential {
    pub secret: Secret,
    /// "--username", "BERTH_USERNAME", "/root/.docker/config.json", ...
    pub source: String,
}

#[derive(Clone)]
pub enum Secret {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in docker's config), traded at the realm.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = match &self.secret {
            Secret::Basic { username, .. } => username.as_str(),
            Secret::IdentityToken(_) => "<identity token>",
        };
        write!(f, "Credential({user} from {})", self.source)
    }
}

impl Credential {
    pub(crate) fn basic(
        username: String,
        password: String,
        source: impl Into<String>,
    ) -> Credential {
        Credential {
            secret: Secret::Basic { username, password },
            source: source.into(),
        }
    }
}
