//! `berth tags`, `inspect`, `delete` and `referrers`: one registry request or a few, printed
//! for people or as JSON.

use berth::names::Reference;
use berth_client::progress::human;
use berth_client::{Error, ErrorKind, ImageRef, Location};

use super::args::{DeleteArgs, InspectArgs, ReferrersArgs, TagsArgs};
use super::transfer::client_for;

pub(crate) async fn tags(a: TagsArgs) -> Result<(), Error> {
    let (name, list) = if let Some(dir) = a.repository.strip_prefix("oci:") {
        let layout = berth_client::layout::Layout::open(dir).await?;
        (a.repository.clone(), layout.tags().await?)
    } else {
        let (host, name) = berth_client::reference::parse_repository(&a.repository)?;
        let client = client_for(&a.conn)?;
        let repo = client.repository(&host, name.clone());
        let list = if a.one_page || a.last.is_some() {
            let page = repo.tags_page(a.page_size, a.last.as_deref()).await?;
            if a.one_page {
                if let Some(next) = &page.next {
                    eprintln!("next: {next}");
                }
                page.tags
            } else {
                let mut all = page.tags;
                let mut next = page.next;
                for _ in 0..10_000 {
                    let Some(n) = next.take() else { break };
                    let p = repo.tags_next(&n).await?;
                    if p.tags.is_empty() {
                        break;
                    }
                    all.extend(p.tags);
                    next = p.next;
                }
                all
            }
        } else {
            repo.tags(a.page_size).await?
        };
        (format!("{host}/{name}"), list)
    };
    if a.out.json {
        println!("{}", serde_json::json!({"name": name, "tags": list}));
    } else {
        for t in list {
            println!("{t}");
        }
    }
    Ok(())
}

pub(crate) async fn inspect(a: InspectArgs) -> Result<(), Error> {
    let client = client_for(&a.conn)?;
    let loc: Location = a.reference.parse()?;
    let i = berth_client::inspect(&client, &loc).await?;
    if a.raw {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = out.write_all(&i.raw);
        let _ = out.flush();
        return Ok(());
    }
    if a.config {
        let image = match (&i.image, &a.platform) {
            (Some(img), _) => img,
            (None, Some(p)) => i
                .platforms
                .iter()
                .find(|e| e.platform == p.to_string() || e.platform.starts_with(&format!("{p}/")))
                .and_then(|e| e.image.as_ref())
                .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no platform {p}")))?,
            (None, None) => {
                return Err(Error::usage("an index has no config of its own")
                    .with_hint("pick one with --platform OS/ARCH"));
            }
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&image.config_json).unwrap_or_default()
        );
        return Ok(());
    }
    if a.out.json {
        let mut v = serde_json::to_value(&i).unwrap_or_default();
        if let Some(img) = &i.image {
            v["config"] = img.config_json.clone();
        }
        println!("{v}");
        return Ok(());
    }
    if a.out.quiet {
        println!("{}", i.digest);
        return Ok(());
    }
    println!("Name:       {}", i.name);
    println!("Digest:     {}", i.digest);
    println!("MediaType:  {}", i.media_type);
    println!("Size:       {} (manifest)", human(i.size));
    if let Some(t) = &i.artifact_type {
        println!("Artifact:   {t}");
    }
    if let Some(s) = &i.subject {
        println!("Subject:    {s}");
    }
    if let Some(a) = &i.annotations {
        println!("Annotations:");
        for (k, v) in a {
            println!(
                "  {k}: {}",
                v.as_str().map(str::to_owned).unwrap_or(v.to_string())
            );
        }
    }
    if !i.platforms.is_empty() {
        println!("Platforms:");
        for p in &i.platforms {
            let size = p
                .image
                .as_ref()
                .map(|img| format!("{:>10}  {} layers", human(img.total_size), img.layers.len()))
                .unwrap_or_default();
            println!("  {:<16} {}  {size}", p.platform, p.digest);
        }
    }
    if let Some(img) = &i.image {
        if let Some(p) = &img.platform {
            println!("Platform:   {p}");
        }
        if let Some(c) = &img.created {
            println!("Created:    {c}");
        }
        println!(
            "Config:     {} ({}, {})",
            img.config.digest,
            img.config.media_type,
            human(img.config.size)
        );
        println!("Layers:");
        for l in &img.layers {
            println!("  {}  {:>10}  {}", l.digest, human(l.size), l.media_type);
        }
        println!("Total:      {} in config and layers", human(img.total_size));
    }
    Ok(())
}

pub(crate) async fn delete(a: DeleteArgs) -> Result<(), Error> {
    let client = client_for(&a.conn)?;
    let r: ImageRef = a.reference.parse()?;
    let repo = client.repository(&r.host, r.name.clone());
    let digest = match &r.reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(_) => match repo.manifest_head(&r.reference).await? {
            Some(d) => d.digest,
            None => {
                return Err(
                    Error::new(ErrorKind::NotFound, format!("{r}: no such manifest"))
                        .with_hint("list the tags with `berth tags HOST/NAME`"),
                );
            }
        },
    };
    repo.delete_manifest(&Reference::Digest(digest.clone()))
        .await
        .map_err(|e| e.context(format!("deleting {r}")))?;
    if a.out.json {
        println!(
            "{}",
            serde_json::json!({"deleted": digest, "name": format!("{}/{}", r.host, r.name)})
        );
    } else if a.out.quiet {
        println!("{digest}");
    } else {
        println!("deleted {}/{}@{digest}", r.host, r.name);
    }
    Ok(())
}

pub(crate) async fn referrers(a: ReferrersArgs) -> Result<(), Error> {
    let client = client_for(&a.conn)?;
    let loc: Location = a.reference.parse()?;
    let (digest, list) = berth_client::referrers(&client, &loc, a.artifact_type.as_deref()).await?;
    if a.out.json {
        println!(
            "{}",
            serde_json::json!({"subject": digest, "referrers": list})
        );
        return Ok(());
    }
    for d in list {
        if a.out.quiet {
            println!("{}", d.digest);
            continue;
        }
        println!(
            "{}  {:>10}  {}",
            d.digest,
            human(d.size),
            d.artifact_type.as_deref().unwrap_or(&d.media_type)
        );
    }
    Ok(())
}
