//! Which endpoint a path names. Pure: it borrows from the path and validates nothing but shape;
//! names, references and digests are checked by the endpoint so each gets its own error code.
//!
//! OCI names contain `/`, so the path is split at the last of `/manifests/`, `/blobs/`,
//! `/referrers/`, or at a trailing `/tags/list`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// end-1: `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// end-8: `/v2/<name>/tags/list`
    Tags { name: &'a str },
    /// end-3, end-7, end-9: `/v2/<name>/manifests/<reference>`
    Manifest { name: &'a str, reference: &'a str },
    /// end-2, end-10: `/v2/<name>/blobs/<digest>`
    Blob { name: &'a str, digest: &'a str },
    /// end-4, end-11: `/v2/<name>/blobs/uploads/`
    Uploads { name: &'a str },
    /// end-5, end-6, end-13, end-14: `/v2/<name>/blobs/uploads/<id>`
    Upload { name: &'a str, id: &'a str },
    /// end-12: `/v2/<name>/referrers/<digest>`
    Referrers { name: &'a str, digest: &'a str },
    /// berth's read-only extension for the web page (`handlers/browse.rs`), in the spec's
    /// extension naming: `/v2/_berth/<what>` and `/v2/<name>/_berth/<what>`.
    Berth(Ext<'a>),
    /// Anything else.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext<'a> {
    /// `/v2/_berth/repositories`: the repositories the caller may pull, with summaries.
    Repositories,
    /// `/v2/_berth/gc`: the last garbage collection pass.
    Gc,
    /// `/v2/<name>/_berth/summary`: tags, last push, usage, what the caller may do.
    Summary { name: &'a str },
    /// `/v2/<name>/_berth/tags`: tags with digest, size, platforms and push time.
    Tags { name: &'a str },
}

pub fn parse(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Route::Unknown;
    };
    match rest {
        "" | "/" => return Route::Base,
        "/_catalog" => return Route::Catalog,
        "/_berth/repositories" => return Route::Berth(Ext::Repositories),
        "/_berth/gc" => return Route::Berth(Ext::Gc),
        _ => {}
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Route::Unknown;
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags { name };
    }
    // No name component starts with `_`, so these suffixes cannot be part of a name.
    if let Some(name) = rest.strip_suffix("/_berth/summary") {
        return Route::Berth(Ext::Summary { name });
    }
    if let Some(name) = rest.strip_suffix("/_berth/tags") {
        return Route::Berth(Ext::Tags { name });
    }
    let marker = ["/manifests/", "/blobs/", "/referrers/"]
        .into_iter()
        .filter_map(|m| rest.rfind(m).map(|at| (at, m)))
        .max_by_key(|(at, _)| *at);
    let Some((at, m)) = marker else {
        return Route::Unknown;
    };
    let name = &rest[..at];
    let tail = &rest[at + m.len()..];
    match m {
        "/blobs/" => match tail.strip_prefix("uploads") {
            Some("" | "/") => Route::Uploads { name },
            Some(id) if id.starts_with('/') => Route::Upload { name, id: &id[1..] },
            _ if !tail.is_empty() && !tail.contains('/') => Route::Blob { name, digest: tail },
            _ => Route::Unknown,
        },
        _ if tail.is_empty() || tail.contains('/') => Route::Unknown,
        "/manifests/" => Route::Manifest {
            name,
            reference: tail,
        },
        _ => Route::Referrers { name, digest: tail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Route::*;

    #[test]
    fn table() {
        let cases = [
            ("/v2/", Base),
            ("/v2", Base),
            ("/v2/_catalog", Catalog),
            ("/v2/a/tags/list", Tags { name: "a" }),
            ("/v2/a/b/tags/list", Tags { name: "a/b" }),
            (
                "/v2/a/manifests/latest",
                Manifest {
                    name: "a",
                    reference: "latest",
                },
            ),
            (
                "/v2/a/b/c/manifests/sha256:00",
                Manifest {
                    name: "a/b/c",
                    reference: "sha256:00",
                },
            ),
            (
                "/v2/a/blobs/sha256:00",
                Blob {
                    name: "a",
                    digest: "sha256:00",
                },
            ),
            ("/v2/a/blobs/uploads/", Uploads { name: "a" }),
            ("/v2/a/blobs/uploads", Uploads { name: "a" }),
            (
                "/v2/a/blobs/uploads/xyz",
                Upload {
                    name: "a",
                    id: "xyz",
                },
            ),
            (
                "/v2/a/referrers/sha256:00",
                Referrers {
                    name: "a",
                    digest: "sha256:00",
                },
            ),
            // A name may contain the markers' words; the last marker wins.
            (
                "/v2/manifests/blobs/manifests/x",
                Manifest {
                    name: "manifests/blobs",
                    reference: "x",
                },
            ),
            (
                "/v2/a/manifests/b/blobs/sha256:00",
                Blob {
                    name: "a/manifests/b",
                    digest: "sha256:00",
                },
            ),
            (
                "/v2/blobs/uploads/blobs/uploads/",
                Uploads {
                    name: "blobs/uploads",
                },
            ),
            ("/v2/_berth/repositories", Berth(Ext::Repositories)),
            ("/v2/_berth/gc", Berth(Ext::Gc)),
            ("/v2/a/b/_berth/tags", Berth(Ext::Tags { name: "a/b" })),
            ("/v2/a/_berth/summary", Berth(Ext::Summary { name: "a" })),
            ("/v2/_berth/other", Unknown),
            ("/v2/a/_berth/other", Unknown),
            ("/v2/a/manifests/", Unknown),
            ("/v2/a/blobs/", Unknown),
            ("/v2/a/referrers/", Unknown),
            ("/v2/a", Unknown),
            ("/v1/a/manifests/x", Unknown),
            ("/v2x/a/manifests/x", Unknown),
            ("/", Unknown),
            ("", Unknown),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
    }
}
