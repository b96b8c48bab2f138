//! `cargo xtask cycles`: fails when the top-level modules of a crate depend on each
//! other in a cycle (issue 13). The layering of the README ("Layout") only holds
//! if nothing checks it by hand: a module may use the ones below or beside it,
//! never above, and two modules that use each other are one concern split in two
//! (or a type living in the wrong one).
//!
//! Each crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*`) is parsed with `syn`;
//! the nodes are its top-level modules (a folder module is one node with all its
//! files), and an edge `a → b` is any path in `a`'s non-test code that names `b`:
//! `crate::b::…`, `super::…::b` climbing to the root, or a name the root re-exports
//! from `b` (`crate::Config` when `lib.rs` says `pub use config::Config`). Paths
//! inside macro calls are read from their tokens. Code under `#[cfg(test)]` is
//! left out: tests may reach across layers.

use anyhow::{Context, Result, bail};
use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module graph of one crate root: node → (node it uses → first evidence).
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) nodes: BTreeSet<String>,
    pub(crate) edges: BTreeMap<String, BTreeMap<String, PathBuf>>,
}

/// Runs the check over every crate of the workspace; fails naming each cycle.
pub(crate) fn run() -> Result<()> {
    let root = crate::util::workspace_root();
    let mut failures = Vec::new();
    let mut checked = 0;
    for krate in crate_dirs(&root)? {
        for crate_root in crate_roots(&krate) {
            let graph = graph_of(&crate_root)?;
            checked += 1;
            let name = crate_root.strip_prefix(&root).unwrap_or(&crate_root).display().to_string();
            for (members, cycle) in tangles(&graph) {
                failures.push(format!(
                    "{name}: {} use each other; e.g. {}",
                    members.join(", "),
                    describe(&graph, &cycle)
                ));
            }
        }
    }
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

/// Parses the crate whose root file is `crate_root` into its module graph.
pub(crate) fn graph_of(crate_root: &Path) -> Result<Graph> {
    let file = parse(crate_root)?;
    let dir = crate_root.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let base = dir.clone();
    let mut graph = Graph::default();
    // Names the root re-exports, and the module they come from.
    let mut reexports = BTreeMap::new();
    let mut modules = Vec::new();
    for item in &file.items {
        match item {
            syn::Item::Mod(module) if !is_test_only(&module.attrs) => {
                graph.nodes.insert(module.ident.to_string());
                modules.push(module.clone());
            }
            syn::Item::Use(item_use) if !is_test_only(&item_use.attrs) => {
                let mut leaves = Vec::new();
                use_leaves(&item_use.tree, &mut Vec::new(), &mut leaves);
                for (path, name) in leaves {
                    // `pub use config::Config`: `crate::Config` is config's.
                    if let (Some(first), true) = (path.first(), name != "*") {
                        reexports.insert(name, first.clone());
                    }
                }
            }
            _ => {}
        }
    }
    // A re-export of something that is not a module of this crate (a dependency's)
    // adds no edge.
    reexports.retain(|_, module| graph.nodes.contains(module));
    let mut collector = Collector { graph: &mut graph, reexports: &reexports, base: &base };
    for module in modules {
        let node = module.ident.to_string();
        collector.module(&node, &module, &dir, 1, crate_root)?;
    }
    Ok(graph)
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
        syn::UseTree::Name(name) => out.push((with(prefix, &name.ident), name.ident.to_string())),
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

struct Collector<'a> {
    graph: &'a mut Graph,
    reexports: &'a BTreeMap<String, String>,
    base: &'a Path,
}

impl Collector<'_> {
    /// Walks module `module` of node `node`, `depth` levels below the crate root;
    /// `dir` is where its parent's child modules live.
    /// `file` is the one that declares it (an inline module's own).
    fn module(
        &mut self,
        node: &str,
        module: &syn::ItemMod,
        dir: &Path,
        depth: usize,
        file: &Path,
    ) -> Result<()> {
        let name = module.ident.to_string();
        if let Some((_, items)) = &module.content {
            // An inline module: its children's files live in `dir/name/`.
            return self.items(node, items, &dir.join(&name), depth, file);
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
        let (path, child_dir) = if let Some(explicit) = explicit {
            let path = dir.join(explicit);
            let child_dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
            (path, child_dir)
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
        let file = parse(&path)?;
        self.items(node, &file.items, &child_dir, depth, &path)
    }

    fn items(
        &mut self,
        node: &str,
        items: &[syn::Item],
        child_dir: &Path,
        depth: usize,
        file: &Path,
    ) -> Result<()> {
        for item in items {
            match item {
                syn::Item::Mod(module) => {
                    if !is_test_only(&module.attrs) {
                        self.module(node, module, child_dir, depth + 1, file)?;
                    }
                }
                syn::Item::Use(item_use) => {
                    if is_test_only(&item_use.attrs) {
                        continue;
                    }
                    let mut leaves = Vec::new();
                    use_leaves(&item_use.tree, &mut Vec::new(), &mut leaves);
                    for (path, _) in leaves {
                        self.path(node, &path, depth, file);
                    }
                }
                other => {
                    if item_attrs(other).is_some_and(is_test_only) {
                        continue;
                    }
                    self.tokens(node, other.to_token_stream(), depth, file);
                }
            }
        }
        Ok(())
    }

    /// Finds the paths in `tokens` (macro bodies included) that start at `crate`
    /// or `super`.
    fn tokens(&mut self, node: &str, tokens: TokenStream, depth: usize, file: &Path) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            if let TokenTree::Group(group) = &tokens[i] {
                self.tokens(node, group.stream(), depth, file);
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
                        self.path(node, &with, depth, file);
                    }
                }
            }
            self.path(node, &path, depth, file);
            i = j.max(i + 1);
        }
    }

    /// Records the edge a path from `node` (at `depth`) implies, if it leaves it.
    fn path(&mut self, node: &str, path: &[String], depth: usize, file: &Path) {
        let target = match path.first().map(String::as_str) {
            Some("crate") => path.get(1),
            Some("super") => {
                let supers = path.iter().take_while(|s| *s == "super").count();
                if supers < depth {
                    return; // still inside this top-level module
                }
                path.get(supers)
            }
            _ => None,
        };
        let Some(target) = target else { return };
        let to = if self.graph.nodes.contains(target) {
            target.clone()
        } else if let Some(module) = self.reexports.get(target) {
            module.clone()
        } else {
            return;
        };
        if to == node {
            return;
        }
        let shown = file.strip_prefix(self.base).unwrap_or(file).to_path_buf();
        self.graph.edges.entry(node.to_owned()).or_default().entry(to).or_insert(shown);
    }
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
