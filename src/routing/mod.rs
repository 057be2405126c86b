//! Routing: request → index of the first matching route, in file order. Matchers are
//! compiled once per config. Candidates come from a path trie (`index.rs`) for routes with
//! a `path`/`path_prefix`, one `RegexSet` pass for routes whose only path condition is a
//! regex, and a short list of routes with no path condition; only those candidates are
//! checked in full. Lookup cost grows with the path length and the number of candidates,
//! not with the size of the route table (see benches/routing.rs and its RESULTS).

mod index;
pub mod matchers;

use crate::config::MatchSpec;
use index::{Candidates, PathIndex};
pub use matchers::{query_values, RequestView};
use regex::RegexSet;

pub struct Router {
    specs: Vec<MatchSpec>,
    index: PathIndex,
    /// Routes found via the regex set: their regex is already known to match.
    regex_set: Option<RegexSet>,
    regex_routes: Vec<u32>,
    /// Routes with no path condition at all: always candidates.
    always: Vec<u32>,
}

impl Router {
    /// Compile a router. Fails only if the regex set exceeds its size limit, which a config
    /// that passed validation should not do; the caller reports it as a config error.
    pub fn new(specs: Vec<MatchSpec>) -> Result<Router, String> {
        let mut index = PathIndex::default();
        let mut regexes = Vec::new();
        let mut regex_routes = Vec::new();
        let mut always = Vec::new();
        for (i, m) in specs.iter().enumerate() {
            let i = i as u32;
            if let Some(p) = &m.path {
                index.insert_exact(p, i);
            } else if let Some(p) = &m.path_prefix {
                index.insert_prefix(p, i);
            } else if let Some(re) = &m.path_regex {
                regexes.push(re.as_str().to_string());
                regex_routes.push(i);
            } else {
                always.push(i);
            }
        }
        let regex_set = if regexes.is_empty() {
            None
        } else {
            Some(
                regex::RegexSetBuilder::new(&regexes)
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| format!("path regexes too large together: {e}"))?,
            )
        };
        Ok(Router {
            specs,
            index,
            regex_set,
            regex_routes,
            always,
        })
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Index of the first route (in file order) that matches the request.
    pub fn find(&self, req: &RequestView<'_>) -> Option<usize> {
        let mut cands = Candidates::new();
        self.index.lookup(req.path, &mut cands);
        cands.extend_from_slice(&self.always);
        // `is_match` first: most paths match no regex route, and `matches` allocates.
        if let Some(set) = self.regex_set.as_ref().filter(|s| s.is_match(req.path)) {
            for m in set.matches(req.path).iter() {
                cands.push(self.regex_routes[m]);
            }
        }
        // Remember which candidates came from the regex set before sorting.
        let regex_known = |i: u32| self.regex_routes.binary_search(&i).is_ok();
        cands.sort_unstable();
        cands.dedup();
        cands.into_iter().map(|i| i as usize).find(|&i| {
            let m = &self.specs[i];
            // A regex-only route is a candidate only if the set matched it; routes indexed by
            // path still need their regex checked (if they have one).
            matchers::matches_rest(m, req, !regex_known(i as u32))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostMatch, ValueMatch};
    use std::collections::HashSet;
    use std::sync::Arc;

    fn view<'a>(
        method: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        h: &'a http::HeaderMap,
    ) -> RequestView<'a> {
        RequestView {
            method,
            host: Some("shop.example"),
            path,
            query,
            headers: h,
        }
    }

    #[test]
    fn first_match_in_file_order() {
        let broad: HashSet<String> = ["women's clothing".to_string()].into_iter().collect();
        let specs = vec![
            MatchSpec {
                path_prefix: Some("/search".into()),
                query: vec![(
                    "q".into(),
                    ValueMatch::OneOf {
                        values: Arc::new(broad),
                        source: None,
                    },
                )],
                ..Default::default()
            },
            MatchSpec {
                path_prefix: Some("/search".into()),
                ..Default::default()
            },
            MatchSpec {
                path_regex: Some(regex::Regex::new(r"^/p/\d+$").unwrap()),
                ..Default::default()
            },
            MatchSpec {
                host: Some(HostMatch::Suffix(".example".into())),
                methods: vec!["POST".into()],
                ..Default::default()
            },
            MatchSpec::default(),
        ];
        let r = Router::new(specs).unwrap();
        let h = http::HeaderMap::new();
        assert_eq!(
            r.find(&view("GET", "/search", Some("q=Women%27s+Clothing"), &h)),
            Some(0)
        );
        assert_eq!(
            r.find(&view("GET", "/search", Some("q=socks"), &h)),
            Some(1)
        );
        assert_eq!(r.find(&view("GET", "/p/123", None, &h)), Some(2));
        assert_eq!(r.find(&view("GET", "/p/123x", None, &h)), Some(4));
        assert_eq!(r.find(&view("POST", "/cart", None, &h)), Some(3));
        assert_eq!(r.find(&view("GET", "/cart", None, &h)), Some(4));
    }

    #[test]
    fn no_match() {
        let r = Router::new(vec![MatchSpec {
            path: Some("/only".into()),
            ..Default::default()
        }])
        .unwrap();
        let h = http::HeaderMap::new();
        assert_eq!(r.find(&view("GET", "/only/not", None, &h)), None);
        assert_eq!(r.find(&view("GET", "/only", None, &h)), Some(0));
    }
}
