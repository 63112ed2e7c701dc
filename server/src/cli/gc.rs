//! `berth gc`: the pass's report for people.

use std::time::Duration;

use berth::gc::limits::human;
use berth::gc::{Report, ScrubReport};

pub(crate) fn print(r: &Report, scrub: Option<&ScrubReport>, took: Duration) {
    for item in &r.items {
        let repo = item
            .repository
            .as_deref()
            .map(|n| format!("{n} "))
            .unwrap_or_default();
        println!(
            "{:<8} {repo}{}  {}  ({})",
            item.kind,
            item.name,
            human(item.bytes),
            item.why
        );
    }
    println!("{}; {:.2} s", r.summary(), took.as_secs_f64());
    if let Some(s) = scrub {
        for d in &s.corrupt {
            println!("corrupt  {d}  (removed: its bytes did not match its digest)");
        }
        println!(
            "scrub: {} blobs ({}) re-hashed, {} corrupt",
            s.checked,
            human(s.bytes),
            s.corrupt.len()
        );
    }
}
