//! `cargo xtask cycles`: fails when modules of a crate depend on each other in a
//! cycle (issue 13). The layering of the README ("Layout") only holds if nothing
//! checks it by hand: a module may use the ones below or beside it, never above,
//! and two modules that use each other are one concern split in two (or a type
//! living in the wrong one).
//!
//! Each crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*`) is parsed with `syn`,
//! every module file with it. The check looks at each level of the module tree:
//! the crate's top-level modules (a folder module is one node with all its
//! files), and, inside each folder module, its child modules (`config::schema`
//! and `config::rule`, with all of their own children). An edge `a → b` is any
//! path in `a`'s non-test code that names `b` or something in it: `crate::b::…`,
//! `super::…` climbing out of `a`, `self::…`, a `use` of a child by its bare name,
//! or a name re-exported on the way (`crate::Config` when `lib.rs` says `pub use
//! config::Config` and `config/mod.rs` says `pub use schema::*`, where `Config`
//! is declared). Paths inside macro calls are read from their tokens. A child
//! using its parent's own items, or a parent its children's, is no edge at either
//! level. Code under `#[cfg(test)]` is left out: tests may reach across layers.
//! Not seen: a name brought in by a glob (`use super::*`) and used bare.
//!
//! In `leakwatch-core` it also fails on an edge that climbs its documented layers
//! ([`CORE_LAYERS`], the list of its `lib.rs`), and on a top-level module placed
//! in none.

use anyhow::{Context, Result, bail};
use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module graph of one level: the child modules of one module (the crate
/// root's, or a folder module's), node → (node it uses → first evidence).
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) nodes: BTreeSet<String>,
    pub(crate) edges: BTreeMap<String, BTreeMap<String, PathBuf>>,
}

/// A module's path from the crate root (`[]` is the root itself).
type ModPath = Vec<String>;

/// Runs the check over every crate of the workspace; fails naming each cycle.
pub(crate) fn run() -> Result<()> {
    let root = crate::util::workspace_root();
    let mut failures = Vec::new();
    let mut checked = 0;
    for krate in crate_dirs(&root)? {
        for crate_root in crate_roots(&krate) {
            let graphs = graphs_of(&crate_root)?;
            checked += 1;
            let name = crate_root.strip_prefix(&root).unwrap_or(&crate_root).display().to_string();
            for graph in graphs.values() {
                for (members, cycle) in tangles(graph) {
                    failures.push(format!(
                        "{name}: {} use each other; e.g. {}",
                        members.join(", "),
                        describe(graph, &cycle)
                    ));
                }
            }
        }
    }
    let core = root.join("crates/core/src/lib.rs");
    failures.extend(upward_edges(&graphs_of(&core)?[&Vec::new()], &CORE_LAYERS));
    if !failures.is_empty() {
        bail!(
            "module cycles (a module may only use modules below or beside it; see the \
             README's layout):\n  {}",
            failures.join("\n  ")
        );
    }
    eprintln!("xtask cycles: no module cycles in {checked} crate roots");
    Ok(())
}

/// The core's layers, low to high, as its `lib.rs` and the README ("The core's
/// layers") document them: a top-level module may use only modules of its own
/// layer or below.
const CORE_LAYERS: [&[&str]; 7] = [
    &["model", "units", "escape", "private", "throttle", "http", "summary", "tree", "owner"],
    &["config"],
    &["trend", "window", "rules", "diagnose", "orphans"],
    &["store"],
    &["actions", "proposal"],
    &["status", "command", "relay"],
    &["engine", "api", "attach", "metrics", "notifier"],
];

/// Each edge of `graph` that climbs a layer, and each module in no layer.
fn upward_edges(graph: &Graph, layers: &[&[&str]]) -> Vec<String> {
    let layer = |module: &str| layers.iter().position(|l| l.contains(&module));
    let mut found = Vec::new();
    for node in &graph.nodes {
        if layer(node).is_none() {
            found.push(format!(
                "crates/core: module `{node}` is in no layer: place it in the README's layers, \
                 lib.rs's and CORE_LAYERS (xtask/src/cycles.rs)"
            ));
        }
    }
    for (from, targets) in &graph.edges {
        for (to, file) in targets {
            if let (Some(low), Some(high)) = (layer(from), layer(to))
                && high > low
            {
                found.push(format!(
                    "crates/core: {from} (layer {}) uses {to} (layer {}, above it) in {}",
                    low + 1,
                    high + 1,
                    file.display()
                ));
            }
        }
    }
    found
}

fn crate_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![root.join("src-tauri"), root.join("xtask")];
    let crates = root.join("crates");
    for entry in std::fs::read_dir(&crates).with_context(|| format!("{}", crates.display()))? {
        dirs.push(entry?.path());
    }
    dirs.retain(|dir| dir.join("Cargo.toml").is_file());
    dirs.sort();
    Ok(dirs)
}

fn crate_roots(krate: &Path) -> Vec<PathBuf> {
    let src = krate.join("src");
    let mut roots: Vec<PathBuf> =
        ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).filter(|p| p.is_file()).collect();
    if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
        for bin in bins.flatten() {
            let path = bin.path();
            if path.extension().is_some_and(|e| e == "rs") {
                roots.push(path);
            } else if path.join("main.rs").is_file() {
                roots.push(path.join("main.rs"));
            }
        }
    }
    roots.sort();
    roots
}

/// The graph of the crate's top-level modules.
#[cfg(test)]
pub(crate) fn graph_of(crate_root: &Path) -> Result<Graph> {
    Ok(graphs_of(crate_root)?.remove(&Vec::new()).unwrap_or_default())
}

/// Parses the crate whose root file is `crate_root` into the graph of each
/// module's children, by the parent's path (the root's is `[]`).
pub(crate) fn graphs_of(crate_root: &Path) -> Result<BTreeMap<ModPath, Graph>> {
    let file = parse(crate_root)?;
    let dir = crate_root.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let mut tree = Tree { base: dir.clone(), ..Tree::default() };
    tree.items(&Vec::new(), &file.items, &dir, crate_root)?;
    let mut graphs: BTreeMap<ModPath, Graph> = BTreeMap::new();
    for (path, module) in &tree.modules {
        if module.children.is_empty() {
            continue;
        }
        let graph = graphs.entry(path.clone()).or_default();
        for child in &module.children {
            graph.nodes.insert(node_name(path, child));
        }
    }
    for reference in &tree.references {
        let Some(target) = tree.resolve(&reference.from, &reference.path, reference.in_use, 0)
        else {
            continue;
        };
        let common = reference.from.iter().zip(&target).take_while(|(a, b)| a == b).count();
        // Inside itself, or a child using its parent's own items: no edge.
        if common == reference.from.len() || common == target.len() {
            continue;
        }
        let parent = &target[..common];
        let from = node_name(parent, &reference.from[common]);
        let to = node_name(parent, &target[common]);
        let shown = reference.file.strip_prefix(&tree.base).unwrap_or(&reference.file);
        graphs
            .entry(parent.to_vec())
            .or_default()
            .edges
            .entry(from)
            .or_default()
            .entry(to)
            .or_insert_with(|| shown.to_path_buf());
    }
    Ok(graphs)
}

/// `config::schema`: a node's name, its whole path from the crate root.
fn node_name(parent: &[String], child: &str) -> String {
    let mut parts: Vec<&str> = parent.iter().map(String::as_str).collect();
    parts.push(child);
    parts.join("::")
}

fn parse(path: &Path) -> Result<syn::File> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    syn::parse_file(&text).with_context(|| format!("could not parse {}", path.display()))
}

/// `#[cfg(test)]` (alone: `cfg(any(test, …))` code is built outside tests too).
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr.parse_args::<syn::Ident>().is_ok_and(|ident| ident == "test")
    })
}

/// Every leaf of a `use` tree as (its whole path, the name it binds; `*` for a
/// glob, whose path is the module it empties).
fn use_leaves(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let with = |prefix: &Vec<String>, ident: &syn::Ident| {
        let mut path = prefix.clone();
        path.push(ident.to_string());
        path
    };
    match tree {
        syn::UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            use_leaves(&path.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(name) if name.ident == "self" => {
            // `use a::b::{self}` binds `b`.
            if let Some(last) = prefix.last() {
                out.push((prefix.clone(), last.clone()));
            }
        }
        syn::UseTree::Name(name) => out.push((with(prefix, &name.ident), name.ident.to_string())),
        syn::UseTree::Rename(rename) if rename.ident == "self" => {
            out.push((prefix.clone(), rename.rename.to_string()));
        }
        syn::UseTree::Rename(rename) => {
            out.push((with(prefix, &rename.ident), rename.rename.to_string()));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), "*".to_owned())),
        syn::UseTree::Group(group) => {
            for tree in &group.items {
                use_leaves(tree, prefix, out);
            }
        }
    }
}

/// What the walk learns of one module.
#[derive(Debug, Default)]
struct ModuleInfo {
    children: BTreeSet<String>,
    /// The names it declares (types, functions, constants, macros…).
    items: BTreeSet<String>,
    /// Its `use`s: the name bound → the path as written.
    bindings: BTreeMap<String, Vec<String>>,
    /// Its `use …::*`s: the paths as written.
    globs: Vec<Vec<String>>,
}

/// A path as written in module `from`'s non-test code.
#[derive(Debug)]
struct Reference {
    from: ModPath,
    path: Vec<String>,
    /// In a `use`, where a path may start at a child by its bare name.
    in_use: bool,
    file: PathBuf,
}

/// The crate's module tree and every path its code names.
#[derive(Debug, Default)]
struct Tree {
    modules: BTreeMap<ModPath, ModuleInfo>,
    references: Vec<Reference>,
    base: PathBuf,
}

/// How many re-exports a path may go through (a loop of them is a compile error
/// anyway; this only keeps a broken file from hanging the check).
const MAX_HOPS: usize = 16;

impl Tree {
    /// Walks module `module`, a child of `parent`; `dir` is where `parent`'s child
    /// modules live, `file` the one that declares it.
    fn module(
        &mut self,
        parent: &[String],
        module: &syn::ItemMod,
        dir: &Path,
        file: &Path,
    ) -> Result<()> {
        let name = module.ident.to_string();
        let mut path = parent.to_vec();
        path.push(name.clone());
        if let Some((_, items)) = &module.content {
            // An inline module: its children's files live in `dir/name/`.
            return self.items(&path, items, &dir.join(&name), file);
        }
        let explicit = module.attrs.iter().find_map(|attr| {
            let syn::Meta::NameValue(pair) = &attr.meta else { return None };
            if !pair.path.is_ident("path") {
                return None;
            }
            match &pair.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(text), .. }) => Some(text.value()),
                _ => None,
            }
        });
        let (source, child_dir) = if let Some(explicit) = explicit {
            let source = dir.join(explicit);
            let child_dir = source.parent().map_or_else(PathBuf::new, Path::to_path_buf);
            (source, child_dir)
        } else if dir.join(format!("{name}.rs")).is_file() {
            (dir.join(format!("{name}.rs")), dir.join(&name))
        } else if dir.join(&name).join("mod.rs").is_file() {
            (dir.join(&name).join("mod.rs"), dir.join(&name))
        } else {
            bail!(
                "module `{name}`: neither {0}/{name}.rs nor {0}/{name}/mod.rs exists",
                dir.display()
            );
        };
        let parsed = parse(&source)?;
        self.items(&path, &parsed.items, &child_dir, &source)
    }

    /// Records the items of module `at` (whose child modules live in `child_dir`).
    fn items(
        &mut self,
        at: &ModPath,
        items: &[syn::Item],
        child_dir: &Path,
        file: &Path,
    ) -> Result<()> {
        self.modules.entry(at.clone()).or_default();
        for item in items {
            match item {
                syn::Item::Mod(module) => {
                    if !is_test_only(&module.attrs) {
                        self.info(at).children.insert(module.ident.to_string());
                        self.module(at, module, child_dir, file)?;
                    }
                }
                syn::Item::Use(item_use) => {
                    if is_test_only(&item_use.attrs) {
                        continue;
                    }
                    let mut leaves = Vec::new();
                    use_leaves(&item_use.tree, &mut Vec::new(), &mut leaves);
                    for (path, name) in leaves {
                        if name == "*" {
                            self.info(at).globs.push(path.clone());
                        } else {
                            self.info(at).bindings.insert(name, path.clone());
                        }
                        self.reference(at, path, true, file);
                    }
                }
                other => {
                    if item_attrs(other).is_some_and(is_test_only) {
                        continue;
                    }
                    if let Some(name) = item_name(other) {
                        self.info(at).items.insert(name);
                    }
                    self.tokens(at, other.to_token_stream(), file);
                }
            }
        }
        Ok(())
    }

    fn info(&mut self, at: &ModPath) -> &mut ModuleInfo {
        self.modules.entry(at.clone()).or_default()
    }

    fn reference(&mut self, from: &ModPath, path: Vec<String>, in_use: bool, file: &Path) {
        self.references.push(Reference { from: from.clone(), path, in_use, file: file.to_owned() });
    }

    /// Finds the paths in `tokens` (macro bodies included) that start at `crate`
    /// or `super`.
    fn tokens(&mut self, at: &ModPath, tokens: TokenStream, file: &Path) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            if let TokenTree::Group(group) = &tokens[i] {
                self.tokens(at, group.stream(), file);
                i += 1;
                continue;
            }
            let starts =
                matches!(&tokens[i], TokenTree::Ident(id) if id == "crate" || id == "super");
            // `pub(crate)` and `pub(super)` are visibilities, not paths.
            if !starts || !is_path_sep(&tokens, i + 1) {
                i += 1;
                continue;
            }
            let mut path = Vec::new();
            let mut j = i;
            while let Some(TokenTree::Ident(ident)) = tokens.get(j) {
                path.push(ident.to_string());
                if !is_path_sep(&tokens, j + 1) {
                    break;
                }
                j += 3;
            }
            // `crate::{a, b}` inside a macro: each group member is a path.
            if let Some(TokenTree::Group(group)) = tokens.get(j) {
                for member in split_commas(group.stream()) {
                    if let Some(TokenTree::Ident(first)) = member.first() {
                        let mut with = path.clone();
                        with.push(first.to_string());
                        self.reference(at, with, false, file);
                    }
                }
            }
            self.reference(at, path, false, file);
            i = j.max(i + 1);
        }
    }

    /// The module that `path`, written in module `from`, leads to: the deepest
    /// module it walks into, re-exports followed; `None` when it leaves the
    /// crate.
    fn resolve(
        &self,
        from: &[String],
        path: &[String],
        in_use: bool,
        hops: usize,
    ) -> Option<ModPath> {
        if hops > MAX_HOPS {
            return None;
        }
        let first = path.first()?;
        let (at, rest) = match first.as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (from.to_vec(), &path[1..]),
            "super" => {
                let supers = path.iter().take_while(|s| *s == "super").count();
                let kept = from.len().checked_sub(supers)?;
                (from[..kept].to_vec(), &path[supers..])
            }
            _ if in_use
                && self.modules.get(from).is_some_and(|m| {
                    m.children.contains(first) || m.bindings.contains_key(first)
                }) =>
            {
                (from.to_vec(), path)
            }
            _ => return None,
        };
        Some(self.walk(at, rest, hops))
    }

    /// Follows `rest` down from module `at`.
    fn walk(&self, mut at: ModPath, rest: &[String], hops: usize) -> ModPath {
        let mut i = 0;
        let mut detours = 0;
        while let Some(segment) = rest.get(i) {
            let Some(info) = self.modules.get(&at) else { return at };
            let more = i + 1 < rest.len();
            if segment == "self" {
                i += 1;
            } else if info.children.contains(segment) && (more || !info.items.contains(segment)) {
                at.push(segment.clone());
                i += 1;
            } else if info.items.contains(segment) {
                return at;
            } else if let Some(bound) = info.bindings.get(segment) {
                match self.resolve(&at, bound, true, hops + 1) {
                    Some(next) => at = next,
                    None => return at, // another crate's, imported here
                }
                i += 1;
            } else {
                // A glob re-export that brings the name: look again from there.
                let from_glob = info.globs.iter().find_map(|glob| {
                    let module = self.resolve(&at, glob, true, hops + 1)?;
                    self.modules.get(&module).is_some_and(|m| m.declares(segment)).then_some(module)
                });
                match from_glob {
                    Some(module) if detours < MAX_HOPS && module != at => {
                        at = module;
                        detours += 1;
                    }
                    _ => return at,
                }
            }
        }
        at
    }
}

impl ModuleInfo {
    fn declares(&self, name: &str) -> bool {
        self.children.contains(name)
            || self.items.contains(name)
            || self.bindings.contains_key(name)
    }
}

/// The name an item declares, if it declares one a path can name.
fn item_name(item: &syn::Item) -> Option<String> {
    Some(match item {
        syn::Item::Const(i) => i.ident.to_string(),
        syn::Item::Enum(i) => i.ident.to_string(),
        syn::Item::Fn(i) => i.sig.ident.to_string(),
        syn::Item::Macro(i) => i.ident.as_ref()?.to_string(),
        syn::Item::Static(i) => i.ident.to_string(),
        syn::Item::Struct(i) => i.ident.to_string(),
        syn::Item::Trait(i) => i.ident.to_string(),
        syn::Item::TraitAlias(i) => i.ident.to_string(),
        syn::Item::Type(i) => i.ident.to_string(),
        syn::Item::Union(i) => i.ident.to_string(),
        _ => return None,
    })
}

fn is_path_sep(tokens: &[TokenTree], at: usize) -> bool {
    let colon = |i: usize, joint: bool| match tokens.get(i) {
        Some(TokenTree::Punct(p)) => {
            p.as_char() == ':' && (!joint || p.spacing() == proc_macro2::Spacing::Joint)
        }
        _ => false,
    };
    colon(at, true) && colon(at + 1, false)
}

fn split_commas(stream: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut parts = vec![Vec::new()];
    for token in stream {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => parts.push(Vec::new()),
            _ => parts.last_mut().map_or((), |part| part.push(token)),
        }
    }
    parts
}

fn item_attrs(item: &syn::Item) -> Option<&[syn::Attribute]> {
    Some(match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        _ => return None,
    })
}

/// Every cycle of `graph`, one per strongly connected component of two or more
/// modules (Tarjan), each as a closed walk through the component.
#[cfg(test)]
pub(crate) fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    tangles(graph).into_iter().map(|(_, walk)| walk).collect()
}

/// Each strongly connected component of two or more modules, as its members and
/// a shortest cycle through the first of them.
pub(crate) fn tangles(graph: &Graph) -> Vec<(Vec<String>, Vec<String>)> {
    let nodes: Vec<&String> = graph.nodes.iter().collect();
    let index_of: BTreeMap<&String, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let successors: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            graph
                .edges
                .get(*n)
                .map(|to| to.keys().filter_map(|t| index_of.get(t).copied()).collect())
                .unwrap_or_default()
        })
        .collect();
    let components = strongly_connected(&successors);
    let mut out = Vec::new();
    for component in components.into_iter().filter(|c| c.len() > 1) {
        let members: BTreeSet<usize> = component.iter().copied().collect();
        let start = *members.iter().next().unwrap_or(&0);
        let walk = cycle_through(start, &members, &successors);
        out.push((
            members.iter().map(|&i| nodes[i].clone()).collect(),
            walk.into_iter().map(|i| nodes[i].clone()).collect(),
        ));
    }
    out.sort();
    out
}

/// Tarjan's algorithm, iterative; components in no particular order.
fn strongly_connected(successors: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = successors.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, position in its successor list)
        let mut work = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if let Some(&w) = successors[v].get(*pos) {
                *pos += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// A shortest closed walk from `start` back to itself inside `members` (BFS).
fn cycle_through(start: usize, members: &BTreeSet<usize>, successors: &[Vec<usize>]) -> Vec<usize> {
    let mut previous: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &successors[v] {
            if !members.contains(&w) {
                continue;
            }
            if w == start {
                let mut walk = vec![v];
                let mut at = v;
                while at != start {
                    at = previous[&at];
                    walk.push(at);
                }
                walk.reverse();
                walk.push(start);
                return walk;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = previous.entry(w) {
                slot.insert(v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}

/// "engine → autopilot (engine.rs) → engine (autopilot.rs)".
pub(crate) fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut text = cycle.first().cloned().unwrap_or_default();
    for pair in cycle.windows(2) {
        let file = graph.edges.get(&pair[0]).and_then(|to| to.get(&pair[1]));
        let shown = file.map(|f| format!(" (in {})", f.display())).unwrap_or_default();
        text.push_str(&format!(" → {}{shown}", pair[1]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a crate's `src/` from (path, text) pairs and returns its `lib.rs`.
    fn fixture(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join("src").join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let lib = dir.path().join("src/lib.rs");
        (dir, lib)
    }

    fn found(files: &[(&str, &str)]) -> Vec<Vec<String>> {
        let (_dir, lib) = fixture(files);
        cycles(&graph_of(&lib).unwrap())
    }

    #[test]
    fn a_layered_crate_has_no_cycle() {
        let cycles = found(&[
            ("lib.rs", "pub mod model;\npub mod rules;\npub mod engine;\n"),
            ("model.rs", "pub struct Sample;\n"),
            ("rules.rs", "use crate::model::Sample;\npub fn eval(_: &Sample) {}\n"),
            (
                "engine.rs",
                "use crate::{model, rules};\nfn tick() { rules::eval(&model::Sample) }\n",
            ),
        ]);
        assert!(cycles.is_empty(), "{cycles:?}");
    }

    #[test]
    fn a_cycle_through_a_folder_module_and_super_paths_is_named() {
        // engine/ is one node; its runner reaches autopilot by `super::super`, and
        // autopilot uses a constant of the engine's (issue 13's engine ↔ autopilot).
        let cycles = found(&[
            ("lib.rs", "pub mod autopilot;\npub mod engine;\npub mod model;\n"),
            ("engine/mod.rs", "mod runner;\npub const ORPHANS: &str = \"orphans\";\n"),
            ("engine/runner.rs", "fn run() { super::super::autopilot::step(); }\n"),
            ("autopilot.rs", "pub fn step() { let _ = crate::engine::ORPHANS; }\n"),
            ("model.rs", "use crate::engine as _unused_above;\n"),
        ]);
        // model → engine is an edge, not a cycle: only the pair is one.
        assert_eq!(cycles, vec![vec!["autopilot", "engine", "autopilot"]]);
    }

    #[test]
    fn a_three_module_cycle_through_a_reexport_and_a_macro_is_named() {
        let three = found(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\npub use c::Thing;\n"),
            ("a.rs", "pub fn f() -> String { format!(\"{}\", crate::b::g()) }\n"),
            ("b.rs", "pub fn g() -> u8 { let _ = crate::Thing; 1 }\n"),
            ("c.rs", "pub struct Thing;\nfn h() { crate::a::f(); }\n"),
        ]);
        assert_eq!(three, vec![vec!["a", "b", "c", "a"]]);
        let (_dir, lib) = fixture(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::X;\n"),
            ("b.rs", "pub struct X;\nfn f() { crate::a::y(); }\n"),
        ]);
        let graph = graph_of(&lib).unwrap();
        let text = describe(&graph, &cycles(&graph)[0]);
        assert_eq!(text, "a → b (in a.rs) → a (in b.rs)");
    }

    /// Issue 13: only the top-level modules were nodes, so two modules of one
    /// folder module using each other (`config::schema` ↔ `config::rule`) went
    /// unreported.
    #[test]
    fn a_cycle_between_siblings_inside_a_folder_module_is_named() {
        let (_dir, lib) = fixture(&[
            ("lib.rs", "pub mod config;\npub mod engine;\npub use config::Config;\n"),
            (
                "config/mod.rs",
                "mod rule;\nmod schema;\npub use schema::*;\npub use rule::Metric;\n\
                 pub fn helper() {}\nfn f() { let _ = self::schema::Config::default; }\n",
            ),
            (
                "config/schema.rs",
                "pub struct Config { pub m: super::rule::Metric }\nfn g() { super::helper() }\n",
            ),
            ("config/rule.rs", "pub struct Metric;\nfn f(_: &crate::Config) {}\n"),
            ("engine.rs", "use crate::config::Metric;\nfn g(_: &crate::Config) {}\n"),
        ]);
        let graphs = graphs_of(&lib).unwrap();
        // engine → config only, at the top; a parent and its children make none.
        let top = &graphs[&Vec::new()];
        assert!(cycles(top).is_empty(), "{top:?}");
        assert_eq!(top.edges["engine"].keys().collect::<Vec<_>>(), ["config"]);
        let config = &graphs[&vec!["config".to_owned()]];
        let found = cycles(config);
        // `crate::Config` leads through two re-exports (lib.rs, a glob) to schema.
        assert_eq!(found, vec![vec!["config::rule", "config::schema", "config::rule"]]);
        assert_eq!(
            describe(config, &found[0]),
            "config::rule → config::schema (in config/rule.rs) → config::rule (in \
             config/schema.rs)"
        );
    }

    /// Issue 13: `status` (layer 6) used `owner`, documented in layer 7, and
    /// nothing checked the documented layers.
    #[test]
    fn a_use_of_a_layer_above_and_a_module_in_no_layer_are_named() {
        let (_dir, lib) = fixture(&[
            ("lib.rs", "pub mod model;\npub mod engine;\npub mod stray;\n"),
            ("model.rs", "fn f() { crate::engine::tick() }\n"),
            ("engine.rs", "pub fn tick() {}\nfn g() { let _ = crate::model::f; }\n"),
            ("stray.rs", "\n"),
        ]);
        let graph = graph_of(&lib).unwrap();
        let found = upward_edges(&graph, &[&["model"], &["engine"]]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("`stray` is in no layer"), "{found:?}");
        assert_eq!(
            found[1],
            "crates/core: model (layer 1) uses engine (layer 2, above it) in model.rs"
        );
    }

    /// The layers the check enforces are the ones core's `lib.rs` documents.
    #[test]
    fn the_core_layers_are_the_documented_ones() {
        let lib = crate::util::workspace_root().join("crates/core/src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        let mut documented: Vec<String> = Vec::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("//!")) {
            let line = line.trim();
            if line.starts_with(|c: char| c.is_ascii_digit()) && line.contains(". ") {
                documented.push(String::new());
            }
            if let Some(layer) = documented.last_mut() {
                layer.push_str(line);
                layer.push(' ');
            }
        }
        assert_eq!(documented.len(), CORE_LAYERS.len(), "{documented:#?}");
        for (layer, modules) in documented.iter().zip(CORE_LAYERS) {
            for module in modules {
                assert!(layer.contains(&format!("`{module}`")), "`{module}` not in: {layer}");
            }
        }
        let graph = graph_of(&lib).unwrap();
        assert!(upward_edges(&graph, &CORE_LAYERS).is_empty());
    }

    #[test]
    fn test_code_and_visibilities_make_no_edge() {
        let cycles = found(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a.rs", "pub(crate) fn f() { crate::b::g() }\n"),
            (
                "b.rs",
                "pub(crate) fn g() {}\npub(super) struct S;\n\
                 #[cfg(test)]\nmod tests { use crate::a::f; }\n\
                 #[cfg(test)]\nfn helper() { crate::a::f() }\n",
            ),
        ]);
        assert!(cycles.is_empty(), "{cycles:?}");
    }

    #[test]
    fn the_workspace_crates_parse() {
        // Every crate root of this workspace can be read (the check itself may
        // fail while a cycle exists; parsing must not).
        let root = crate::util::workspace_root();
        for krate in crate_dirs(&root).unwrap() {
            for crate_root in crate_roots(&krate) {
                graph_of(&crate_root).unwrap();
            }
        }
    }
}
