//! Path index: a byte trie over the `path_prefix` and exact `path` of every route, so the
//! router looks only at routes whose path could match instead of testing each route in turn.
//! Built once per config; a lookup walks the request path once (O(path length)).

use smallvec::SmallVec;

/// Candidate route indexes for one request; spills to the heap only past 16.
pub type Candidates = SmallVec<[u32; 16]>;

#[derive(Default)]
struct Node {
    /// Children by next byte, sorted for binary search.
    edges: Vec<(u8, u32)>,
    /// Routes whose `path_prefix` ends at this node.
    prefix_routes: Vec<u32>,
    /// Routes whose exact `path` ends at this node.
    exact_routes: Vec<u32>,
}

pub struct PathIndex {
    nodes: Vec<Node>,
}

impl Default for PathIndex {
    fn default() -> Self {
        PathIndex {
            nodes: vec![Node::default()],
        }
    }
}

impl PathIndex {
    fn node_for(&mut self, key: &[u8]) -> usize {
        let mut cur = 0usize;
        for &b in key {
            let next = match self.nodes[cur].edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => self.nodes[cur].edges[i].1 as usize,
                Err(i) => {
                    let id = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[cur].edges.insert(i, (b, id as u32));
                    id
                }
            };
            cur = next;
        }
        cur
    }

    pub fn insert_prefix(&mut self, prefix: &str, route: u32) {
        let n = self.node_for(prefix.as_bytes());
        self.nodes[n].prefix_routes.push(route);
    }

    pub fn insert_exact(&mut self, path: &str, route: u32) {
        let n = self.node_for(path.as_bytes());
        self.nodes[n].exact_routes.push(route);
    }

    /// Push every route whose prefix is a prefix of `path`, or whose exact path is `path`.
    pub fn lookup(&self, path: &str, out: &mut Candidates) {
        let mut cur = &self.nodes[0];
        out.extend_from_slice(&cur.prefix_routes);
        for &b in path.as_bytes() {
            match cur.edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => cur = &self.nodes[cur.edges[i].1 as usize],
                Err(_) => return,
            }
            // Most nodes end no prefix: skip the (non-inlined) copy of nothing.
            if !cur.prefix_routes.is_empty() {
                out.extend_from_slice(&cur.prefix_routes);
            }
        }
        if !cur.exact_routes.is_empty() {
            out.extend_from_slice(&cur.exact_routes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_exact() {
        let mut ix = PathIndex::default();
        ix.insert_prefix("/", 9);
        ix.insert_prefix("/search", 1);
        ix.insert_exact("/search", 2);
        ix.insert_prefix("/p/", 3);
        let mut c = Candidates::new();
        ix.lookup("/search", &mut c);
        assert_eq!(c.as_slice(), &[9, 1, 2]);
        c.clear();
        ix.lookup("/searchx?", &mut c);
        assert_eq!(c.as_slice(), &[9, 1]);
        c.clear();
        ix.lookup("/p", &mut c);
        assert_eq!(c.as_slice(), &[9]);
        c.clear();
        ix.lookup("/p/12", &mut c);
        assert_eq!(c.as_slice(), &[9, 3]);
    }
}
