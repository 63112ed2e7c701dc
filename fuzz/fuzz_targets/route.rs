//! The router and the query string: any path and query, no panic, and every part it returns
//! is a slice of the path.
#![no_main]

use berth::query::Query;
use berth::route::{self, Ext, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let (path, query) = s.split_once('?').map_or((s, None), |(p, q)| (p, Some(q)));
    let parts: Vec<&str> = match route::parse(path) {
        Route::Base | Route::Catalog | Route::Unknown => vec![],
        Route::Berth(Ext::Repositories | Ext::Gc) => vec![],
        Route::Berth(Ext::Summary { name } | Ext::Tags { name }) => vec![name],
        Route::Tags { name } | Route::Uploads { name } => vec![name],
        Route::Manifest { name, reference } => vec![name, reference],
        Route::Blob { name, digest } | Route::Referrers { name, digest } => vec![name, digest],
        Route::Upload { name, id } => vec![name, id],
    };
    for p in parts {
        assert!(path.contains(p));
        let _ = p.parse::<berth::RepoName>();
    }
    let q = Query::parse(query);
    for key in ["n", "last", "digest", "mount", "from", "artifactType"] {
        let _ = q.get(key).map(|v| v.parse::<u64>());
        let _ = q.all(key).count();
    }
});
