//! Summaries of one process's descriptor table: counts per kind and per class, the
//! paths held most often, sockets by endpoint. The shape of a leak is read from
//! here: "state.db ×48, -wal ×46" is leaked SQLite connections, a thousand
//! `kqueue`s is an event loop per request.

use leakwatch_probe::{Fd, FdClass, FdKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// SQLite keeps these files beside a database `x.db`, one set per connection.
const SQLITE_COMPANION_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// A descriptor table, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FdSummary {
    pub total: usize,
    /// Count per canonical kind; kinds with no descriptor are left out.
    pub kinds: BTreeMap<FdKind, usize>,
    /// Count per gauge class; every class is present, zero or not.
    pub classes: BTreeMap<FdClass, usize>,
    /// Paths by how many descriptors hold them, most first; SQLite `-wal`, `-shm`
    /// and `-journal` files are folded into their database's row.
    pub paths: Vec<PathGroup>,
    /// Sockets by kind and endpoint, most first.
    pub endpoints: Vec<EndpointGroup>,
}

/// One path and how many descriptors hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PathGroup {
    pub path: String,
    pub kind: FdKind,
    pub count: usize,
    /// SQLite companions open beside this database, e.g. `-wal ×46`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub companions: Vec<Companion>,
}

/// A SQLite companion file of a [`PathGroup`], named by its suffix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Companion {
    pub suffix: String,
    pub count: usize,
}

/// Sockets of one kind sharing an endpoint (or having none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointGroup {
    pub kind: FdKind,
    pub endpoint: Option<String>,
    pub count: usize,
}

impl FdSummary {
    /// Counts `fds`.
    pub fn from_fds(fds: &[Fd]) -> Self {
        let mut kinds = BTreeMap::new();
        let mut classes: BTreeMap<FdClass, usize> = FdClass::ALL.iter().map(|c| (*c, 0)).collect();
        let mut paths: HashMap<(&str, FdKind), usize> = HashMap::new();
        let mut endpoints: HashMap<(FdKind, Option<&str>), usize> = HashMap::new();
        for fd in fds {
            *kinds.entry(fd.kind).or_insert(0) += 1;
            *classes.entry(fd.kind.class()).or_insert(0) += 1;
            if let Some(path) = fd.path.as_deref().filter(|_| fd.kind.has_path()) {
                *paths.entry((path, fd.kind)).or_insert(0) += 1;
            }
            if fd.kind.class() == FdClass::Sockets {
                *endpoints.entry((fd.kind, fd.endpoint.as_deref())).or_insert(0) += 1;
            }
        }
        Self {
            total: fds.len(),
            kinds,
            classes,
            paths: group_paths(&paths),
            endpoints: sort_endpoints(endpoints),
        }
    }

    /// The count of one kind (zero when absent).
    pub fn kind(&self, kind: FdKind) -> usize {
        self.kinds.get(&kind).copied().unwrap_or(0)
    }

    /// The kind holding the most descriptors, event loops winning ties (they are
    /// the usual leak).
    pub fn top_kind(&self) -> Option<(FdKind, usize)> {
        self.kinds
            .iter()
            .map(|(kind, count)| (*kind, *count))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
    }
}

fn group_paths(counts: &HashMap<(&str, FdKind), usize>) -> Vec<PathGroup> {
    let mut groups: Vec<PathGroup> = Vec::new();
    let mut companions: Vec<(&str, &str, usize)> = Vec::new();
    for ((path, kind), count) in counts {
        let database = SQLITE_COMPANION_SUFFIXES.iter().find_map(|suffix| {
            let base = path.strip_suffix(suffix)?;
            counts.contains_key(&(base, FdKind::File)).then_some((base, *suffix))
        });
        match database {
            Some((base, suffix)) if *kind == FdKind::File => {
                companions.push((base, suffix, *count));
            }
            _ => groups.push(PathGroup {
                path: (*path).to_owned(),
                kind: *kind,
                count: *count,
                companions: Vec::new(),
            }),
        }
    }
    for (base, suffix, count) in companions {
        if let Some(group) = groups.iter_mut().find(|g| g.path == base && g.kind == FdKind::File) {
            group.companions.push(Companion { suffix: suffix.to_owned(), count });
        }
    }
    for group in &mut groups {
        group.companions.sort_by(|a, b| {
            let rank = |s: &str| SQLITE_COMPANION_SUFFIXES.iter().position(|x| *x == s);
            rank(&a.suffix).cmp(&rank(&b.suffix))
        });
    }
    let weight = |g: &PathGroup| g.count + g.companions.iter().map(|c| c.count).sum::<usize>();
    groups.sort_by(|a, b| weight(b).cmp(&weight(a)).then_with(|| a.path.cmp(&b.path)));
    groups
}

fn sort_endpoints(counts: HashMap<(FdKind, Option<&str>), usize>) -> Vec<EndpointGroup> {
    let mut groups: Vec<EndpointGroup> = counts
        .into_iter()
        .map(|((kind, endpoint), count)| EndpointGroup {
            kind,
            endpoint: endpoint.map(str::to_owned),
            count,
        })
        .collect();
    groups.sort_by(|a, b| {
        b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)).then_with(|| a.endpoint.cmp(&b.endpoint))
    });
    groups
}

impl PathGroup {
    /// `state.db ×48, -wal ×46, -shm ×46`: the display DESIGN.md asks for.
    pub fn label(&self) -> String {
        let mut label = format!("{} ×{}", self.path, self.count);
        for companion in &self.companions {
            label.push_str(&format!(", {} ×{}", companion.suffix, companion.count));
        }
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(n: i32, kind: FdKind, path: Option<&str>, endpoint: Option<&str>) -> Fd {
        Fd { fd: n, kind, path: path.map(Into::into), endpoint: endpoint.map(Into::into) }
    }

    fn many(kind: FdKind, path: Option<&str>, count: usize, start: &mut i32) -> Vec<Fd> {
        (0..count)
            .map(|_| {
                *start += 1;
                fd(*start, kind, path, None)
            })
            .collect()
    }

    #[test]
    fn sqlite_companions_fold_into_their_database() {
        let mut n = 0;
        let mut fds = many(FdKind::File, Some("/srv/state.db"), 48, &mut n);
        fds.extend(many(FdKind::File, Some("/srv/state.db-wal"), 46, &mut n));
        fds.extend(many(FdKind::File, Some("/srv/state.db-shm"), 46, &mut n));
        fds.extend(many(FdKind::File, Some("/srv/log.txt"), 2, &mut n));
        // A -wal whose database is not open stays on its own row.
        fds.extend(many(FdKind::File, Some("/srv/other.db-wal"), 1, &mut n));
        let summary = FdSummary::from_fds(&fds);
        assert_eq!(summary.total, 143);
        assert_eq!(summary.paths.len(), 3);
        assert_eq!(summary.paths[0].label(), "/srv/state.db ×48, -wal ×46, -shm ×46");
        assert_eq!(summary.paths[1].label(), "/srv/log.txt ×2");
        assert_eq!(summary.paths[2].path, "/srv/other.db-wal");
    }

    #[test]
    fn kinds_and_classes_are_counted() {
        let mut n = 0;
        let mut fds = many(FdKind::Kqueue, None, 5, &mut n);
        fds.extend(many(FdKind::Unix, None, 3, &mut n));
        fds.extend(many(FdKind::Pipe, None, 2, &mut n));
        fds.push(fd(99, FdKind::Tcp, None, Some("127.0.0.1:80 (LISTEN)")));
        let summary = FdSummary::from_fds(&fds);
        assert_eq!(summary.kind(FdKind::Kqueue), 5);
        assert_eq!(summary.kind(FdKind::Epoll), 0);
        assert_eq!(summary.classes[&FdClass::EventLoops], 5);
        assert_eq!(summary.classes[&FdClass::Sockets], 4);
        assert_eq!(summary.classes[&FdClass::Pipes], 2);
        assert_eq!(summary.classes[&FdClass::Files], 0);
        assert_eq!(summary.top_kind(), Some((FdKind::Kqueue, 5)));
        assert_eq!(
            summary.endpoints[0],
            EndpointGroup { kind: FdKind::Unix, endpoint: None, count: 3 }
        );
    }

    #[test]
    fn json_uses_canonical_names() {
        let summary = FdSummary::from_fds(&[fd(3, FdKind::Epoll, None, None)]);
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["kinds"]["epoll"], 1);
        assert_eq!(json["classes"]["event_loops"], 1);
        assert_eq!(json["classes"]["sockets"], 0);
    }
}
