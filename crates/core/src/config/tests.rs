//! The parser's tests: every error names file, line and key; the example file
//! parses as written and with every option turned on.

use super::document::{join_key, key_at_line};
use super::load::resolve_dir;
use super::parser::{parse_health, parse_socket_addr};
use super::schema::home_dir;
use super::*;
use crate::model::Severity;
use leakwatch_probe::{FdClass, FdKind};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/leakwatch/config.toml"))
}

#[track_caller]
fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts the error's line, key and a fragment of its message, and that the
/// rendered text carries all three with the file.
#[track_caller]
fn assert_err(text: &str, line: usize, key: &str, fragment: &str) {
    let err = parse_err(text);
    let rendered = err.to_string();
    assert_eq!((err.line, err.key.as_str()), (line, key), "{rendered}");
    assert!(err.message.contains(fragment), "{rendered}");
    assert!(
        rendered.starts_with(&format!("/etc/leakwatch/config.toml:{line}: {key}: ")),
        "{rendered}"
    );
}

/// The example with its commented-out option lines (`#key`, `#[table]`) enabled.
fn example_uncommented() -> String {
    Config::EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with(' ') && !rest.starts_with('#') => {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_parses_as_written_and_does_nothing_by_surprise() {
    let config = parse(Config::EXAMPLE).unwrap();
    assert!(config.watch.is_empty());
    assert!(config.metrics.listen.is_none());
    assert!(config.orphans.idle_reap_after.is_none());
    assert_eq!(config.defaults.interval, DEFAULT_INTERVAL);
    assert_eq!(config.defaults.window, DEFAULT_WINDOW);
    assert_eq!(config.defaults.rules, builtin_rules());
    assert_eq!(config.orphans.patterns.len(), 4);
}

#[test]
fn example_with_every_option_enabled_parses() {
    let text = example_uncommented();
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.protect.len(), 2);
    assert!(!config.allow_other_users);
    assert_eq!(config.defaults.fd_limit, Some(256));
    assert_eq!(config.watch.len(), 2);
    let copilot = &config.watch[0];
    assert_eq!(copilot.name, "copilot");
    assert!(matches!(copilot.selector, Selector::Port(4321)));
    assert_eq!(copilot.interval, Some(Duration::from_secs(5)));
    assert_eq!(config.interval(copilot), Duration::from_secs(5));
    assert_eq!(config.window(copilot), Duration::from_secs(3600));
    assert_eq!(config.fd_limit(copilot), Some(10240));
    let kqueue = copilot.rules["kqueue"].as_ref().unwrap();
    assert_eq!(kqueue.warn, Some(Threshold::Count(500.0)));
    assert_eq!(kqueue.critical, Some(Threshold::Percent(50.0)));
    assert_eq!(kqueue.clear, Some(Threshold::Count(400.0)));
    assert_eq!(kqueue.samples, 3);
    let Some(Some(state_db)) = copilot.rules.get("path:*state.db*") else {
        panic!("no path rule");
    };
    assert!(matches!(&state_db.metric, Metric::Path(g) if g.is_match("/srv/state.db-wal")));
    assert_eq!(copilot.rules["rss"].as_ref().unwrap().critical, Some(Threshold::Bytes(8 << 30)));
    assert_eq!(copilot.rules["slope"].as_ref().unwrap().warn, Some(Threshold::PerHour(50.0)));
    assert_eq!(copilot.rules["sockets"].as_ref().unwrap().metric, Metric::Class(FdClass::Sockets));
    let Some(Restart::Command { argv, cwd, env, log, health, health_timeout, grace }) =
        &copilot.restart
    else {
        panic!("no command restart");
    };
    assert_eq!(argv, &["python3", "server.py"]);
    assert_eq!(cwd.as_deref(), Some(Path::new("/srv/app")));
    assert_eq!(env["PORT"], "8787");
    assert_eq!(log.as_deref(), Some(Path::new("/tmp/app.log")));
    assert_eq!(health, &Some(Health::Http("http://127.0.0.1:8787/health".into())));
    assert_eq!(*health_timeout, Duration::from_secs(30));
    assert_eq!(*grace, Duration::from_secs(3));
    assert_eq!(
        copilot.auto_restart,
        Some(AutoRestart { on: Severity::Critical, max: 3, per: Duration::from_secs(3600) })
    );
    let gateway = &config.watch[1];
    assert!(
        matches!(&gateway.selector, Selector::Argv(re) if re.is_match("python -m hermes gateway run"))
    );
    assert_eq!(gateway.restart, Some(Restart::Launchd("com.example.gateway".into())));
    assert_eq!(config.orphans.idle_reap_after, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(config.orphans.rules.len(), 2);
    assert_eq!(config.orphans.rules[0].metric, Metric::OrphanCount);
    assert!(config.notify.enabled);
    assert_eq!(config.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
}

#[test]
fn empty_file_is_the_default() {
    let config = parse("").unwrap();
    assert!(config.watch.is_empty());
    assert_eq!(config.defaults.rules, builtin_rules());
    let defaults = Config::default();
    assert!(defaults.source.is_none());
    let keys: Vec<String> = defaults.auto_rules().iter().map(|r| r.metric.key()).collect();
    assert_eq!(keys, ["eta", "fds"]);
}

#[test]
fn bad_duration_names_line_and_key() {
    let text = "[defaults]\ninterval = \"2s\"\n\n[[watch]]\nname = \"a\"\nport = 1\n\n[[watch]]\nname = \"b\"\nport = 2\ninterval = \"2x\"\n";
    assert_err(
        text,
        11,
        "watch[1].interval",
        "expected a duration like \"2s\" or \"1h\", found \"2x\"",
    );
    assert_err(
        "[defaults]\nwindow = 30\n",
        2,
        "defaults.window",
        "expected a duration like \"2s\" or \"1h\", found 30",
    );
}

#[test]
fn home_is_shown_as_tilde() {
    let Some(home) = home_dir() else { return };
    let path = home.join(".config/leakwatch/config.toml");
    let err = Config::parse("[defaults]\ninterval = \"2x\"\n", &path).unwrap_err();
    assert_eq!(
        err.to_string(),
        "~/.config/leakwatch/config.toml:2: defaults.interval: expected a duration like \"2s\" or \"1h\", found \"2x\""
    );
}

#[test]
fn syntax_errors_name_line_and_key() {
    assert_err("[defaults]\ninterval = 2s\n", 2, "defaults.interval", "invalid TOML");
    assert_err(
        "[[watch]]\nname = \"a\"\nport = 1\n[[watch]]\nname = \"b\"\n[watch.rules]\nfds = { warn = }\n",
        7,
        "watch[1].rules.fds",
        "invalid TOML",
    );
    let err = parse_err("a = 1\na = 2\n");
    assert_eq!(err.line, 2);
    assert_eq!(err.key, "a");
    // Issue 13: an unclosed array-of-tables header named the key `watch]`.
    assert_err("[[watch]\nname = \"a\"\n", 1, "watch", "invalid TOML");
}

#[test]
fn unknown_keys_are_errors_with_suggestions() {
    assert_err(
        "[defaults]\nintreval = \"2s\"\n",
        2,
        "defaults.intreval",
        "did you mean \"interval\"",
    );
    assert_err("colour = 1\n", 1, "colour", "expected one of: protect");
    assert_err(
        "[[watch]]\nname = \"a\"\nport = 1\n[watch.rules]\nfds = { warn = 10, crit = 20 }\n",
        5,
        "watch[0].rules.fds.crit",
        "did you mean \"critical\"",
    );
    assert_err("[notify]\nenable = true\n", 2, "notify.enable", "did you mean \"enabled\"");
}

#[test]
fn selectors_exactly_one() {
    assert_err(
        "[[watch]]\nname = \"a\"\nport = 80\npidfile = \"/run/a.pid\"\n",
        4,
        "watch[0].pidfile",
        "both port and pidfile",
    );
    assert_err(
        "[[watch]]\nname = \"a\"\ninterval = \"5s\"\n",
        1,
        "watch[0]",
        "exactly one selector",
    );
    assert_err("[[watch]]\nport = 80\n", 1, "watch[0]", "needs a name");
    assert_err(
        "[[watch]]\nname = \"a\"\nport = 70000\n",
        3,
        "watch[0].port",
        "between 1 and 65535",
    );
    assert_err(
        "[[watch]]\nname = \"a\"\nprocess = \"(node\"\n",
        3,
        "watch[0].process",
        "invalid regex",
    );
}

#[test]
fn each_selector_parses() {
    let text = r#"
[[watch]]
name = "pid"
pidfile = "run/app.pid"
[[watch]]
name = "port"
port = 8787
[[watch]]
name = "agent"
launchd = "com.example.agent"
[[watch]]
name = "unit"
systemd = "app.service"
[[watch]]
name = "proc"
process = "^node$"
[[watch]]
name = "cmd"
argv = "copilot --headless"
"#;
    let config = parse(text).unwrap();
    let keys: Vec<&str> = config.watch.iter().map(|t| t.selector.key()).collect();
    assert_eq!(keys, ["pidfile", "port", "launchd", "systemd", "process", "argv"]);
    // Relative to the config file's directory.
    assert!(
        matches!(&config.watch[0].selector, Selector::Pidfile(p) if p == Path::new("/etc/leakwatch/run/app.pid"))
    );
    assert_eq!(config.watch[1].selector.to_string(), "port 8787");
    assert!(
        matches!(&config.watch[4].selector, Selector::Process(re) if re.is_match("node") && !re.is_match("nodejs"))
    );
    assert_eq!(
        config.target("unit").map(|t| t.selector.to_string()),
        Some("systemd app.service".into())
    );
}

#[test]
fn duplicate_names_are_rejected() {
    assert_err(
        "[[watch]]\nname = \"a\"\nport = 1\n\n[[watch]]\nname = \"a\"\nport = 2\n",
        6,
        "watch[1].name",
        "watch[0] already uses it",
    );
}

#[test]
fn rule_errors_name_line_and_key() {
    let head = "[[watch]]\nname = \"a\"\nport = 1\n[watch.rules]\n";
    assert_err(
        &format!("{head}kqueues = {{ warn = 5 }}\n"),
        5,
        "watch[0].rules.kqueues",
        "did you mean \"kqueue\"",
    );
    assert_err(
        &format!("{head}\"path:[x\" = {{ warn = 5 }}\n"),
        5,
        "watch[0].rules.\"path:[x\"",
        "invalid glob",
    );
    assert_err(
        &format!("{head}rss = {{ warn = \"80%\" }}\n"),
        5,
        "watch[0].rules.rss.warn",
        "percentage means nothing for rss",
    );
    assert_err(
        &format!("{head}fds = {{ warn = \"6h\" }}\n"),
        5,
        "watch[0].rules.fds.warn",
        "expected a descriptor count",
    );
    assert_err(
        &format!("{head}eta = {{ warn = 500 }}\n"),
        5,
        "watch[0].rules.eta.warn",
        "expected a duration like \"6h\"",
    );
    assert_err(
        &format!("{head}fds = {{ warn = \"120%\" }}\n"),
        5,
        "watch[0].rules.fds.warn",
        "between 0 and 100",
    );
    assert_err(
        &format!("{head}fds = {{ samples = 3 }}\n"),
        5,
        "watch[0].rules.fds",
        "needs warn, critical or both",
    );
    assert_err(
        &format!("{head}fds = {{ warn = 500,\n  critical = 400 }}\n"),
        6,
        "watch[0].rules.fds.critical",
        "must be above warn",
    );
    assert_err(
        &format!("{head}eta = {{ warn = \"1h\", critical = \"6h\" }}\n"),
        5,
        "watch[0].rules.eta.critical",
        "must be below warn",
    );
    assert_err(
        &format!("{head}fds = {{ warn = 500, clear = 600 }}\n"),
        5,
        "watch[0].rules.fds.clear",
        "must be below warn",
    );
    assert_err(
        &format!("{head}eta = {{ warn = \"6h\", clear = \"2h\" }}\n"),
        5,
        "watch[0].rules.eta.clear",
        "must be above warn",
    );
    assert_err(
        &format!("{head}down = {{ critical = true, clear = false }}\n"),
        5,
        "watch[0].rules.down.clear",
        "takes no clear",
    );
    assert_err(
        &format!("{head}fds = {{ warn = 5, samples = 0 }}\n"),
        5,
        "watch[0].rules.fds.samples",
        "1 or more",
    );
    assert_err(&format!("{head}fds = 500\n"), 5, "watch[0].rules.fds", "or false to turn it off");
    assert_err(
        &format!("{head}rss = {{ warn = \"2 GiBs\" }}\n"),
        5,
        "watch[0].rules.rss.warn",
        "expected a size like \"2GiB\"",
    );
    assert_err(
        "[orphans.rules]\nfds = { warn = 5 }\n",
        2,
        "orphans.rules.fds",
        "expected count or rss",
    );
}

#[test]
fn restart_errors() {
    let head = "[[watch]]\nname = \"a\"\nport = 1\n";
    assert_err(
        &format!("{head}[watch.restart]\nlaunchd = \"x\"\ncommand = [\"y\"]\n"),
        6,
        "watch[0].restart.command",
        "both launchd and command",
    );
    assert_err(
        &format!("{head}[watch.restart]\ncwd = \"/srv\"\n"),
        4,
        "watch[0].restart",
        "needs one of",
    );
    assert_err(
        &format!("{head}[watch.restart]\nsystemd = \"x\"\ngrace = \"3s\"\n"),
        6,
        "watch[0].restart.grace",
        "only goes with command",
    );
    assert_err(
        &format!("{head}[watch.restart]\ncommand = []\n"),
        5,
        "watch[0].restart.command",
        "array of strings",
    );
    assert_err(
        &format!("{head}[watch.restart]\ncommand = [\"x\"]\nhealth = \"https://x/\"\n"),
        6,
        "watch[0].restart.health",
        "http:// URL",
    );
    assert_err(
        &format!("{head}[watch.auto_restart]\non = \"critical\"\n"),
        4,
        "watch[0].auto_restart",
        "needs a [watch.restart]",
    );
    assert_err(
        &format!("{head}[watch.restart]\ncommand = [\"x\"]\n[watch.auto_restart]\non = \"ok\"\n"),
        7,
        "watch[0].auto_restart.on",
        "\"warning\" or \"critical\"",
    );
}

#[test]
fn other_sections_errors() {
    assert_err("protect = \"sshd\"\n", 1, "protect", "an array of regexes");
    assert_err("protect = [\"ok\", \"(bad\"]\n", 1, "protect[1]", "invalid regex");
    assert_err("[metrics]\nlisten = \"0.0.0.0\"\n", 2, "metrics.listen", "127.0.0.1:9464");
    assert_err(
        "[orphans]\nidle_reap_after = \"0s\"\n",
        2,
        "orphans.idle_reap_after",
        "longer than zero",
    );
    assert_err("[defaults]\ninterval = \"10ms\"\n", 2, "defaults.interval", "at least 100ms");
    assert_err(
        "[defaults]\ninterval = \"10s\"\nwindow = \"15s\"\n",
        3,
        "defaults.window",
        "twice the interval",
    );
    assert_err("[defaults]\nfd_limit = 0\n", 2, "defaults.fd_limit", "a descriptor limit");
    assert_err(
        "allow_other_users = \"yes\"\n",
        1,
        "allow_other_users",
        "expected true or false, found \"yes\"",
    );
    assert_err(
        "[[watch]]\nname = \"a\"\nport = 1\ninterval = \"20m\"\n",
        4,
        "watch[0].interval",
        "under half the window",
    );
}

#[test]
fn read_errors_name_the_file() {
    let err = Config::load(Path::new("/nonexistent/leakwatch.toml")).unwrap_err();
    assert_eq!(err.line, 0);
    assert!(err.to_string().starts_with("/nonexistent/leakwatch.toml: cannot read"), "{err}");
}

#[test]
fn rules_merge_defaults_with_target() {
    let text = r#"
[defaults.rules]
fds = { warn = 900, critical = 1000 }
kqueue = { warn = 500 }
[[watch]]
name = "a"
port = 1
[watch.rules]
kqueue = { warn = 50 }
eta = false
[[watch]]
name = "b"
port = 2
"#;
    let config = parse(text).unwrap();
    let a = config.effective_rules(&config.watch[0]);
    let keys: Vec<String> = a.iter().map(|r| r.metric.key()).collect();
    assert_eq!(keys, ["down", "fds", "kqueue"]);
    assert_eq!(a[1].warn, Some(Threshold::Count(900.0)));
    assert_eq!(a[2].warn, Some(Threshold::Count(50.0)));
    let b = config.effective_rules(&config.watch[1]);
    let keys: Vec<String> = b.iter().map(|r| r.metric.key()).collect();
    assert_eq!(keys, ["down", "eta", "fds", "kqueue"]);
    assert_eq!(b[3].warn, Some(Threshold::Count(500.0)));
    assert_eq!(b[0].critical, Some(Threshold::Flag(true)));
    assert_eq!(b[0].samples, DEFAULT_SAMPLES);
    assert_eq!(b[0].cooldown, DEFAULT_COOLDOWN);
}

#[test]
fn down_false_turns_it_off() {
    let text = "[defaults.rules]\ndown = { critical = false }\n[[watch]]\nname = \"a\"\nport = 1\n";
    let config = parse(text).unwrap();
    assert!(config.effective_rules(&config.watch[0]).iter().all(|r| r.metric != Metric::Down));
}

#[test]
fn thresholds_and_sizes() {
    assert_eq!(parse_bytes("500MB"), Some(500_000_000));
    assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
    assert_eq!(parse_bytes("1.5 GB"), Some(1_500_000_000));
    assert_eq!(parse_bytes("2G"), Some(2 << 30));
    assert_eq!(parse_bytes("1024"), Some(1024));
    assert_eq!(parse_bytes("lots"), None);
    assert_eq!(parse_bytes("0"), None);
    assert_eq!(Threshold::Percent(50.0).resolve(Some(1024)), Some(512.0));
    assert_eq!(Threshold::Percent(50.0).resolve(None), None);
    assert_eq!(Threshold::Flag(false).resolve(None), None);
    assert_eq!(Threshold::Duration(Duration::from_secs(3600)).to_string(), "1h");
    assert_eq!(Threshold::Percent(80.0).to_string(), "80%");
    let text = "[[watch]]\nname = \"a\"\nport = 1\n[watch.rules]\nrss = { warn = 1073741824, critical = \"8 GiB\" }\nslope = { warn = \"50/h\" }\nother = { warn = 3 }\nevent_loops = { warn = 3 }\n";
    let config = parse(text).unwrap();
    let rules = &config.watch[0].rules;
    assert_eq!(rules["rss"].as_ref().unwrap().warn, Some(Threshold::Bytes(1 << 30)));
    assert_eq!(rules["slope"].as_ref().unwrap().warn, Some(Threshold::PerHour(50.0)));
    assert_eq!(rules["other"].as_ref().unwrap().metric, Metric::Kind(FdKind::Other));
    assert_eq!(rules["event_loops"].as_ref().unwrap().metric, Metric::Class(FdClass::EventLoops));
}

#[test]
fn health_and_addresses() {
    assert_eq!(
        parse_health("tcp:127.0.0.1:8787"),
        Some(Health::Tcp("127.0.0.1:8787".parse().unwrap()))
    );
    assert_eq!(
        parse_health("tcp:localhost:8787"),
        Some(Health::Tcp("127.0.0.1:8787".parse().unwrap()))
    );
    assert_eq!(
        parse_health("http://[::1]:8787/h"),
        Some(Health::Http("http://[::1]:8787/h".into()))
    );
    assert_eq!(parse_health("http://"), None);
    assert_eq!(parse_socket_addr("[::1]:9464"), Some("[::1]:9464".parse().unwrap()));
    assert_eq!(parse_socket_addr("127.0.0.1:0"), None);
}

#[test]
fn protect_matches_name_and_argv0() {
    let config = parse("protect = [\"^sshd$\", \"^launchd$\"]\n").unwrap();
    let protected =
        |name: &str, argv0: Option<&str>| protect_match(&config.protect, name, argv0).is_some();
    assert!(protected("sshd", None));
    assert!(protected("sshd-session", Some("/usr/sbin/sshd")));
    assert!(!protected("sshd-session", Some("/usr/sbin/sshd-session")));
}

#[test]
fn default_paths_honour_env() {
    assert_eq!(
        resolve_dir(Some("/x/config.toml".into()), |_| PathBuf::from("/unused")),
        Some(PathBuf::from("/x/config.toml"))
    );
    if let Some(path) = resolve_dir(None, |d| d.config_dir().join("config.toml")) {
        assert!(path.ends_with("config.toml"));
        #[cfg(target_os = "linux")]
        assert!(path.to_string_lossy().contains("leakwatch"), "{}", path.display());
    }
}

#[test]
fn key_paths_quote_non_bare_keys() {
    assert_eq!(join_key("watch[0].rules", "path:*x*"), "watch[0].rules.\"path:*x*\"");
    assert_eq!(join_key("", "fds"), "fds");
    assert_eq!(
        key_at_line("[[watch]]\na=1\n[[watch]]\n[watch.rules]\nfds = x\n", 5),
        "watch[1].rules.fds"
    );
}

/// Regression (issue 10, item 17): a 60,000-target config took 27 s and
/// 928 MB to check. Past the documented limits it is a clear error; at them
/// it is accepted.
#[test]
fn configs_past_the_documented_limits_are_refused_and_at_them_accepted() {
    let targets = |n: usize| {
        (0..n)
            .map(|i| format!("[[watch]]\nname = \"t{i}\"\nprocess = \"^server-{i}$\"\n"))
            .collect::<String>()
    };
    let at_limit = parse(&targets(MAX_TARGETS)).unwrap();
    assert_eq!(at_limit.watch.len(), MAX_TARGETS);
    assert!(at_limit.watch[MAX_TARGETS - 1].selector.to_string().contains("server-999"));

    let error = parse(&targets(MAX_TARGETS + 1)).unwrap_err();
    assert_eq!(error.key, "watch", "{error}");
    assert!(error.message.contains("1001 targets: a config may watch at most 1000"), "{error}");

    // Duplicates are still found, the last against the first.
    let mut text = targets(MAX_TARGETS - 1);
    text.push_str("[[watch]]\nname = \"t0\"\nport = 1\n");
    let error = parse(&text).unwrap_err();
    assert!(error.message.contains("watch[0] already uses it"), "{error}");

    let huge = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
    let error = parse(&huge).unwrap_err();
    assert!(error.message.contains("larger than 1024 KiB"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    std::fs::write(&path, &huge).unwrap();
    let error = Config::load(&path).unwrap_err();
    assert!(error.to_string().contains("larger than 1024 KiB"), "{error}");

    let error = parse("[[watch]]\nname = \"x\"\nprocess = \"\\\\w{1000}{1000}\"\n").unwrap_err();
    assert_eq!(error.key, "watch[0].process", "{error}");
    assert!(error.message.contains("too big"), "{error}");
}
