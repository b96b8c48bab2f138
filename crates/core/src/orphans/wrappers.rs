//! Launcher wrappers (`uv tool uvx X`, `npm exec X`, `npx X`, `pnpm dlx X`...):
//! recognised and folded together with the worker they start, so two processes
//! that are one thing show as one row.

use super::trees::OrphanMember;

/// A launcher (`uv tool uvx X`, `uvx X`, `npm exec X`, `npx X`, `pnpm dlx X`, ...)
/// that starts the real worker as its child and waits: two processes, one thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapper {
    /// How the launch is named in labels: `uvx`, `npm exec`, `npx`, `pnpm dlx`.
    pub tool: &'static str,
    /// The program that runs it: `uv`, `uvx`, `npm`, `npx`, `pnpm`, ...
    pub program: String,
    /// What it launches: the package or command.
    pub target: String,
}

/// Options of the launchers that take a value, so the value is not taken for the
/// package (`uvx --from git+https://... server`, `npx -p pkg cmd`).
const VALUE_FLAGS: &[&str] = &[
    "--from",
    "--with",
    "--with-editable",
    "--with-requirements",
    "--python",
    "-p",
    "--index",
    "--default-index",
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--constraints",
    "--overrides",
    "--build-constraints",
    "-b",
    "--env-file",
    "--directory",
    "--project",
    "--config-file",
    "--cache-dir",
    "--color",
    "--python-platform",
    "--exclude-newer",
    "--index-strategy",
    "--keyring-provider",
    "--resolution",
    "--prerelease",
    "--package",
    "--workspace",
    "-w",
    "--registry",
    "--cache",
    "--userconfig",
    "--prefix",
    "--spec",
    "--pip-args",
];

impl Wrapper {
    /// Recognises a launcher's command line. `argv` may also be one string with
    /// spaces: node programs like npm rewrite their title (`npm exec X`) over
    /// argv. `node .../npx-cli.js X` counts as `npx X`.
    pub fn parse(argv: &[String]) -> Option<Wrapper> {
        let words: Vec<&str> = match argv {
            [single] => single.split_whitespace().collect(),
            _ => argv.iter().map(String::as_str).collect(),
        };
        let (first, mut args) = words.split_first()?;
        let mut program = basename(first);
        if is_node(program) {
            let (script, rest) = args.split_first()?;
            program = node_script_tool(basename(script))?;
            args = rest;
        }
        let (tool, rest): (&'static str, &[&str]) = match (program, args) {
            ("uv", ["tool", "uvx" | "run", rest @ ..]) => ("uvx", rest),
            ("uvx", rest) => ("uvx", rest),
            ("npm", ["exec" | "x", rest @ ..]) => ("npm exec", rest),
            ("npx", rest) => ("npx", rest),
            ("pnpm", ["dlx", rest @ ..]) => ("pnpm dlx", rest),
            ("pnpx", rest) => ("pnpx", rest),
            ("bunx", rest) => ("bunx", rest),
            ("bun", ["x", rest @ ..]) => ("bunx", rest),
            ("pipx", ["run", rest @ ..]) => ("pipx run", rest),
            _ => return None,
        };
        let target = target_of(tool, rest)?;
        Some(Wrapper { tool, program: program.to_owned(), target })
    }

    /// `uvx microsoft-fabric-rti-mcp`.
    pub fn launch(&self) -> String {
        format!("{} {}", self.tool, self.target)
    }
}

/// The package or command a launcher runs: the first word that is not an option
/// (or an option's value), or the word after `--`.
fn target_of(tool: &str, args: &[&str]) -> Option<String> {
    let npm = matches!(tool, "npm exec" | "npx");
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if *word == "--" {
            return words.next().map(|w| (*w).to_owned());
        }
        if npm && matches!(*word, "-c" | "--call") {
            // `npx -c 'server --port 1'`: the command string (split by the title).
            return words.next().map(|w| (*w).to_owned());
        }
        if let Some(call) = word.strip_prefix("--call=").filter(|_| npm) {
            return Some(call.to_owned());
        }
        if word.starts_with('-') {
            if !word.contains('=') && VALUE_FLAGS.contains(word) {
                words.next();
            }
            continue;
        }
        return Some((*word).to_owned());
    }
    None
}

pub(super) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `node`, `nodejs`, `node22`.
fn is_node(program: &str) -> bool {
    program == "nodejs"
        || program.strip_prefix("node").is_some_and(|v| v.chars().all(|c| c.is_ascii_digit()))
}

/// The launcher a node script is: `npx-cli.js` is npx, and so on.
fn node_script_tool(script: &str) -> Option<&'static str> {
    let stem = script.split('.').next().unwrap_or(script);
    match stem {
        "npx" | "npx-cli" => Some("npx"),
        "npm" | "npm-cli" => Some("npm"),
        "pnpm" => Some("pnpm"),
        "pnpx" => Some("pnpx"),
        _ => None,
    }
}

/// A process a wrapper's chain goes through to reach the worker: a shell running
/// `-c` (npm exec runs `sh -c X`), or another launcher (`uvx` runs `uv tool uvx`).
pub(super) fn passes_through(argv: &[String]) -> bool {
    let shell = argv.first().is_some_and(|a| {
        matches!(basename(a), "sh" | "bash" | "dash" | "zsh" | "ash" | "ksh" | "fish")
    }) && argv.iter().skip(1).any(|a| a == "-c");
    shell || Wrapper::parse(argv).is_some()
}

/// The program name shown in a folded label's arrow: the launcher's own name for
/// a launcher, else argv\[0\]'s last component (`python`, `node`, `sh`), else the
/// process name.
fn program_name(member: &OrphanMember) -> String {
    if let Some(wrapper) = Wrapper::parse(&member.argv) {
        return wrapper.program;
    }
    let first = match &member.argv[..] {
        [single] => single.split_whitespace().next(),
        argv => argv.first().map(String::as_str),
    };
    match first.map(basename) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => member.name.clone(),
    }
}

/// Labels each launcher wrapper among `members` (depth first, parents first) and
/// folds into it the single child chain down to its worker: `uv tool uvx X` with
/// its python child becomes one row `uvx X (uv → python)`. A wrapper with several
/// children (or none yet) keeps them as rows of their own, with the label
/// `uvx X`.
pub(super) fn fold_wrappers(members: &mut [OrphanMember]) {
    for i in 0..members.len() {
        if members[i].folded_into.is_some() {
            continue;
        }
        let Some(wrapper) = Wrapper::parse(&members[i].argv) else { continue };
        let mut chain = vec![i];
        let mut current = i;
        loop {
            let parent = members[current].id.pid;
            let mut children = members.iter().enumerate().filter(|(_, m)| m.ppid == parent);
            let (Some((only, _)), None) = (children.next(), children.next()) else { break };
            chain.push(only);
            if !passes_through(&members[only].argv) {
                break;
            }
            current = only;
        }
        let label = if chain.len() > 1 {
            let names: Vec<String> = chain.iter().map(|&j| program_name(&members[j])).collect();
            format!("{} ({})", wrapper.launch(), names.join(" → "))
        } else {
            wrapper.launch()
        };
        let pid = members[i].id.pid;
        members[i].label = Some(label);
        for &j in &chain[1..] {
            members[j].folded_into = Some(pid);
        }
    }
}
