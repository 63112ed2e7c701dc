//! Tags: one page at a time, or all of them following `Link` headers.

use reqwest::Method;
use reqwest::header::LINK;
use serde::Deserialize;

use super::Repository;
use crate::error::Result;
use crate::transport::{read_limited, status_error};
use berth::query::encode;

/// One page of a tags listing, and the request for the next, if the registry gave one.
#[derive(Clone, Debug)]
pub struct TagPage {
    pub tags: Vec<String>,
    /// The `Link` header's target, as a URL path with query.
    pub next: Option<String>,
}

impl Repository {
    /// One page of tags: `n` at most, after `last`.
    pub async fn tags_page(&self, n: Option<usize>, last: Option<&str>) -> Result<TagPage> {
        let mut q = Vec::new();
        if let Some(n) = n {
            q.push(format!("n={n}"));
        }
        if let Some(l) = last {
            q.push(format!("last={}", encode(l)));
        }
        let mut url = self.url("tags/list");
        if !q.is_empty() {
            url = format!("{url}?{}", q.join("&"));
        }
        self.tags_at(url).await
    }

    /// The page at `next` (from [`TagPage::next`]).
    pub async fn tags_next(&self, next: &str) -> Result<TagPage> {
        self.tags_at(self.absolute(next)).await
    }

    async fn tags_at(&self, url: String) -> Result<TagPage> {
        let resp = self.send(Method::GET, url, false).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.what("tags")).await);
        }
        let next = resp
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_link);
        #[derive(Deserialize)]
        struct List {
            tags: Option<Vec<String>>,
        }
        let bytes = read_limited(resp, 64 << 20).await?;
        let list: List = super::parse(&bytes, &self.what("tags list"))?;
        Ok(TagPage {
            tags: list.tags.unwrap_or_default(),
            next,
        })
    }

    /// Every tag, following `Link` headers (at most 10,000 pages).
    pub async fn tags(&self, page_size: Option<usize>) -> Result<Vec<String>> {
        let mut page = self.tags_page(page_size, None).await?;
        let mut all = std::mem::take(&mut page.tags);
        for _ in 0..10_000 {
            let Some(next) = page.next.take() else { break };
            page = self.tags_next(&next).await?;
            if page.tags.is_empty() {
                break;
            }
            all.append(&mut page.tags);
        }
        Ok(all)
    }
}

/// `<url>; rel="next"` → `url`.
fn parse_link(v: &str) -> Option<String> {
    for part in v.split(',') {
        let part = part.trim();
        if !part.contains("rel=\"next\"") && !part.contains("rel=next") {
            continue;
        }
        let start = part.find('<')? + 1;
        let end = part[start..].find('>')? + start;
        return Some(part[start..end].to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert_eq!(
            parse_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(parse_link(r#"<x>; rel="prev""#), None);
        assert_eq!(encode("a+b/c"), "a%2Bb%2Fc");
    }
}
