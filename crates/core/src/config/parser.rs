//! The parser proper: reads each section of the document into the model,
//! checking every key, selector, rule, restart and limit, so that an error names
//! the key and line that caused it.

use super::document::{
    Doc, Item, Table, describe, integer, parse_bytes, parse_percent, positive_number,
};
use super::rule::{
    DEFAULT_COOLDOWN, DEFAULT_SAMPLES, Direction, Metric, RuleMap, RuleSpec, Threshold,
};
use super::schema::{
    AutoRestart, Config, ConfigError, DEFAULT_GRACE, DEFAULT_HEALTH_TIMEOUT, Defaults, Health,
    MAX_TARGETS, MIN_INTERVAL, OrphansConfig, Restart, Selector, Target, parse_duration,
};
use crate::model::Severity;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use toml::de::DeValue;

const ROOT_KEYS: &[&str] =
    &["protect", "allow_other_users", "defaults", "watch", "orphans", "notify", "metrics"];
const DEFAULTS_KEYS: &[&str] = &["interval", "window", "fd_limit", "rules"];
const SELECTOR_KEYS: &[&str] = &["pidfile", "port", "launchd", "systemd", "process", "argv"];
const TARGET_KEYS: &[&str] = &[
    "name",
    "pidfile",
    "port",
    "launchd",
    "systemd",
    "process",
    "argv",
    "interval",
    "window",
    "fd_limit",
    "rules",
    "restart",
    "auto_restart",
];
const RULE_KEYS: &[&str] = &["warn", "critical", "clear", "samples", "cooldown"];
const RESTART_KEYS: &[&str] =
    &["launchd", "systemd", "command", "cwd", "env", "log", "health", "health_timeout", "grace"];
const COMMAND_ONLY_KEYS: &[&str] = &["cwd", "env", "log", "health", "health_timeout", "grace"];
const AUTO_RESTART_KEYS: &[&str] = &["on", "max", "per"];
const ORPHANS_KEYS: &[&str] = &["match", "idle_reap_after", "rules"];

/// Which `rules` table is being read.
#[derive(Clone, Copy)]
enum RuleScope {
    Target,
    Orphans,
}

pub(super) struct Parser<'d, 't> {
    pub(super) doc: &'d Doc<'t>,
}

impl Parser<'_, '_> {
    pub(super) fn config(&self, root: &Table<'_, '_>) -> Result<Config, ConfigError> {
        let doc = self.doc;
        root.check_keys(doc, ROOT_KEYS)?;
        let mut config = Config { source: Some(doc.path.to_path_buf()), ..Config::default() };
        if let Some(item) = root.get("protect") {
            config.protect = item.regex_list(doc, "an array of regexes like [\"^sshd$\"]")?;
        }
        if let Some(item) = root.get("allow_other_users") {
            config.allow_other_users = item.bool(doc)?;
        }
        if let Some(item) = root.get("defaults") {
            self.defaults(&item.table(doc)?, &mut config.defaults)?;
        }
        if let Some(item) = root.get("watch") {
            config.watch = self.targets(&item, &config.defaults)?;
        }
        if let Some(item) = root.get("orphans") {
            config.orphans = self.orphans(&item.table(doc)?)?;
        }
        if let Some(item) = root.get("notify") {
            let table = item.table(doc)?;
            table.check_keys(doc, &["enabled"])?;
            if let Some(enabled) = table.get("enabled") {
                config.notify.enabled = enabled.bool(doc)?;
            }
        }
        if let Some(item) = root.get("metrics") {
            let table = item.table(doc)?;
            table.check_keys(doc, &["listen"])?;
            if let Some(listen) = table.get("listen") {
                let what = "an address like \"127.0.0.1:9464\"";
                let text = listen.string(doc, what)?;
                config.metrics.listen =
                    Some(parse_socket_addr(text).ok_or_else(|| listen.expected(doc, what))?);
            }
        }
        Ok(config)
    }

    fn defaults(&self, table: &Table<'_, '_>, defaults: &mut Defaults) -> Result<(), ConfigError> {
        let doc = self.doc;
        table.check_keys(doc, DEFAULTS_KEYS)?;
        if let Some(item) = table.get("interval") {
            defaults.interval = self.interval(&item)?;
        }
        if let Some(item) = table.get("window") {
            defaults.window = self.window(&item, defaults.interval)?;
        }
        if let Some(item) = table.get("fd_limit") {
            defaults.fd_limit = Some(self.fd_limit(&item)?);
        }
        if let Some(item) = table.get("rules") {
            for (key, spec) in self.rules(&item.table(doc)?, RuleScope::Target)? {
                defaults.rules.insert(key, spec);
            }
        }
        Ok(())
    }

    fn interval(&self, item: &Item<'_, '_>) -> Result<Duration, ConfigError> {
        let interval = item.positive_duration(self.doc)?;
        if interval < MIN_INTERVAL {
            return Err(item.error(self.doc, "the interval must be at least 100ms: polling faster costs more than a watchdog may"));
        }
        Ok(interval)
    }

    fn window(&self, item: &Item<'_, '_>, interval: Duration) -> Result<Duration, ConfigError> {
        let window = item.positive_duration(self.doc)?;
        if window < interval.saturating_mul(2) {
            return Err(item.error(
                self.doc,
                format!(
                    "the window must hold at least two samples: longer than twice the interval ({})",
                    humantime::format_duration(interval)
                ),
            ));
        }
        Ok(window)
    }

    fn fd_limit(&self, item: &Item<'_, '_>) -> Result<u64, ConfigError> {
        item.integer_in(self.doc, 1, i128::from(u64::MAX), "a descriptor limit like 256")
            .map(|n| u64::try_from(n).unwrap_or(u64::MAX))
    }

    fn targets(
        &self,
        item: &Item<'_, '_>,
        defaults: &Defaults,
    ) -> Result<Vec<Target>, ConfigError> {
        let doc = self.doc;
        let DeValue::Array(entries) = item.value() else {
            return Err(item.expected(doc, "[[watch]] tables"));
        };
        if entries.len() > MAX_TARGETS {
            return Err(item.error(
                doc,
                format!("{} targets: a config may watch at most {MAX_TARGETS}", entries.len()),
            ));
        }
        let mut targets: Vec<Target> = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::with_capacity(entries.len());
        for (index, value) in entries.iter().enumerate() {
            let entry = Item {
                path: format!("watch[{index}]"),
                name: item.name,
                key_span: value.span(),
                value,
            };
            let table = entry.table(doc)?;
            let target = self.target(&table, defaults)?;
            if let Some(&first) = names.get(&target.name) {
                let name = table.get("name");
                let (span, key) =
                    name.as_ref().map_or((table.span.clone(), table.path.clone()), |n| {
                        (n.span(), n.path.clone())
                    });
                return Err(doc.error(
                    &span,
                    &key,
                    format!(
                        "duplicate target name {:?}: watch[{first}] already uses it",
                        target.name
                    ),
                ));
            }
            names.insert(target.name.clone(), index);
            targets.push(target);
        }
        Ok(targets)
    }

    fn target(&self, table: &Table<'_, '_>, defaults: &Defaults) -> Result<Target, ConfigError> {
        let doc = self.doc;
        table.check_keys(doc, TARGET_KEYS)?;
        let name = match table.get("name") {
            Some(item) => {
                item.non_empty_string(doc, "a non-empty name like \"copilot\"")?.trim().to_owned()
            }
            None => {
                return Err(doc.error(
                    &table.span,
                    &table.path,
                    "a target needs a name, like name = \"copilot\"",
                ));
            }
        };
        let selectors: Vec<Item<'_, '_>> =
            table.entries().into_iter().filter(|item| SELECTOR_KEYS.contains(&item.name)).collect();
        let selector = match selectors.as_slice() {
            [] => {
                return Err(doc.error(
                    &table.span,
                    &table.path,
                    "a target needs exactly one selector: pidfile, port, launchd, systemd, process or argv",
                ));
            }
            [one] => self.selector(one)?,
            [first, second, ..] => {
                return Err(second.key_error(
                    doc,
                    format!(
                        "a target takes exactly one selector, but both {} and {} are given",
                        first.name, second.name
                    ),
                ));
            }
        };
        let interval = table.get("interval").map(|i| self.interval(&i)).transpose()?;
        let window = match table.get("window") {
            Some(item) => Some(self.window(&item, interval.unwrap_or(defaults.interval))?),
            None => {
                if let (Some(interval), Some(item)) = (interval, table.get("interval"))
                    && defaults.window < interval.saturating_mul(2)
                {
                    return Err(item.error(
                        doc,
                        format!(
                            "the interval must be under half the window ({}) so the trend has two samples",
                            humantime::format_duration(defaults.window)
                        ),
                    ));
                }
                None
            }
        };
        let fd_limit = table.get("fd_limit").map(|i| self.fd_limit(&i)).transpose()?;
        let rules = match table.get("rules") {
            Some(item) => self.rules(&item.table(doc)?, RuleScope::Target)?.into_iter().collect(),
            None => RuleMap::new(),
        };
        let restart = table.get("restart").map(|i| self.restart(&i)).transpose()?;
        let auto_restart = match table.get("auto_restart") {
            Some(item) => {
                if restart.is_none() {
                    return Err(item.key_error(
                        doc,
                        "auto_restart needs a [watch.restart] table saying how to restart (launchd, systemd or command)",
                    ));
                }
                Some(self.auto_restart(&item.table(doc)?)?)
            }
            None => None,
        };
        Ok(Target { name, selector, interval, window, fd_limit, rules, restart, auto_restart })
    }

    fn selector(&self, item: &Item<'_, '_>) -> Result<Selector, ConfigError> {
        let doc = self.doc;
        Ok(match item.name {
            "pidfile" => Selector::Pidfile(
                doc.resolve_path(item.non_empty_string(doc, "the path of a pid file")?),
            ),
            "port" => Selector::Port(
                u16::try_from(item.integer_in(doc, 1, 65535, "a TCP port between 1 and 65535")?)
                    .unwrap_or(u16::MAX),
            ),
            "launchd" => Selector::Launchd(
                item.non_empty_string(doc, "a launchd label like \"com.example.app\"")?.to_owned(),
            ),
            "systemd" => Selector::Systemd(
                item.non_empty_string(doc, "a systemd unit like \"app.service\"")?.to_owned(),
            ),
            "process" => Selector::Process(item.regex(doc, "a regex on the process name")?),
            _ => Selector::Argv(item.regex(doc, "a regex on the command line")?),
        })
    }

    fn rules(
        &self,
        table: &Table<'_, '_>,
        scope: RuleScope,
    ) -> Result<Vec<(String, Option<RuleSpec>)>, ConfigError> {
        let doc = self.doc;
        let mut rules = Vec::new();
        for item in table.entries() {
            let metric = match scope {
                RuleScope::Target => Metric::from_key(item.name),
                RuleScope::Orphans => Metric::from_orphan_key(item.name),
            }
            .map_err(|message| item.key_error(doc, message))?;
            let key = metric.key();
            let spec = self.rule(&item, metric)?;
            rules.push((key, spec));
        }
        Ok(rules)
    }

    /// One rule; `None` when it is turned off (`key = false`, or a `down` whose
    /// flags are all false).
    fn rule(&self, item: &Item<'_, '_>, metric: Metric) -> Result<Option<RuleSpec>, ConfigError> {
        let doc = self.doc;
        let table = match item.value() {
            DeValue::Boolean(false) => return Ok(None),
            DeValue::Table(_) => item.table(doc)?,
            _ => {
                return Err(item.expected(
                    doc,
                    "a rule like { warn = ..., critical = ... }, or false to turn it off",
                ));
            }
        };
        table.check_keys(doc, RULE_KEYS)?;
        let threshold = |name: &str| -> Result<Option<(Threshold, Item<'_, '_>)>, ConfigError> {
            let Some(item) = table.get(name) else {
                return Ok(None);
            };
            let threshold =
                metric.parse_threshold(item.value()).map_err(|message| item.error(doc, message))?;
            Ok(Some((threshold, item)))
        };
        let warn = threshold("warn")?;
        let critical = threshold("critical")?;
        let clear = threshold("clear")?;
        if warn.is_none() && critical.is_none() {
            return Err(doc.error(&table.span, &table.path, "a rule needs warn, critical or both"));
        }
        if metric == Metric::Down {
            if let Some((_, item)) = &clear {
                return Err(item.key_error(
                    doc,
                    "down clears when the target is found again; it takes no clear",
                ));
            }
            let on = |t: &Option<(Threshold, Item<'_, '_>)>| {
                matches!(t, Some((Threshold::Flag(true), _)))
            };
            if !on(&warn) && !on(&critical) {
                return Ok(None);
            }
        }
        let direction = metric.direction();
        let beyond = |a: f64, b: f64| match direction {
            Direction::Above => a > b,
            Direction::Below => a < b,
        };
        if let (Some((w, _)), Some((c, c_item))) = (&warn, &critical)
            && let (Some((wu, wv)), Some((cu, cv))) = (w.comparable(), c.comparable())
            && wu == cu
            && !beyond(cv, wv)
        {
            let side = match direction {
                Direction::Above => "above",
                Direction::Below => "below",
            };
            return Err(c_item.error(
                doc,
                format!("critical ({c}) must be {side} warn ({w}): it is the worse level"),
            ));
        }
        if let Some((clear_threshold, clear_item)) = &clear
            && let Some((cu, cv)) = clear_threshold.comparable()
        {
            for (t, name) in [(&warn, "warn"), (&critical, "critical")] {
                if let Some((t, _)) = t
                    && let Some((tu, tv)) = t.comparable()
                    && tu == cu
                    && !beyond(tv, cv)
                {
                    let side = match direction {
                        Direction::Above => "below",
                        Direction::Below => "above",
                    };
                    return Err(clear_item.error(
                        doc,
                        format!("clear ({clear_threshold}) must be {side} {name} ({t}), or the rule would flap"),
                    ));
                }
            }
        }
        let samples = match table.get("samples") {
            Some(item) => u32::try_from(item.integer_in(
                doc,
                1,
                10_000,
                "a number of consecutive samples, 1 or more",
            )?)
            .unwrap_or(DEFAULT_SAMPLES),
            None => DEFAULT_SAMPLES,
        };
        let cooldown = match table.get("cooldown") {
            Some(item) => item.duration(doc)?,
            None => DEFAULT_COOLDOWN,
        };
        Ok(Some(RuleSpec {
            metric,
            warn: warn.map(|(t, _)| t),
            critical: critical.map(|(t, _)| t),
            clear: clear.map(|(t, _)| t),
            samples,
            cooldown,
        }))
    }

    fn restart(&self, item: &Item<'_, '_>) -> Result<Restart, ConfigError> {
        let doc = self.doc;
        let table = item.table(doc)?;
        table.check_keys(doc, RESTART_KEYS)?;
        let ways: Vec<Item<'_, '_>> = table
            .entries()
            .into_iter()
            .filter(|i| matches!(i.name, "launchd" | "systemd" | "command"))
            .collect();
        let way = match ways.as_slice() {
            [] => {
                return Err(doc.error(
                    &table.span,
                    &table.path,
                    "a restart needs one of: launchd = \"label\", systemd = \"unit\" or command = [...]",
                ));
            }
            [one] => one,
            [first, second, ..] => {
                return Err(second.key_error(
                    doc,
                    format!(
                        "a restart takes one way, but both {} and {} are given",
                        first.name, second.name
                    ),
                ));
            }
        };
        match way.name {
            "launchd" | "systemd" => {
                if let Some(extra) =
                    table.entries().into_iter().find(|i| COMMAND_ONLY_KEYS.contains(&i.name))
                {
                    return Err(extra.key_error(
                        doc,
                        format!(
                            "{} only goes with command = [...]: {} starts the service itself",
                            extra.name, way.name
                        ),
                    ));
                }
                if way.name == "launchd" {
                    Ok(Restart::Launchd(
                        way.non_empty_string(doc, "a launchd label like \"com.example.app\"")?
                            .to_owned(),
                    ))
                } else {
                    Ok(Restart::Systemd(
                        way.non_empty_string(doc, "a systemd unit like \"app.service\"")?
                            .to_owned(),
                    ))
                }
            }
            _ => self.command(&table, way),
        }
    }

    fn command(&self, table: &Table<'_, '_>, way: &Item<'_, '_>) -> Result<Restart, ConfigError> {
        let doc = self.doc;
        let what = "a command as an array of strings, like [\"python3\", \"server.py\"]";
        let DeValue::Array(parts) = way.value() else {
            return Err(way.expected(doc, what));
        };
        let argv = parts
            .iter()
            .map(|part| match part.get_ref() {
                DeValue::String(s) => Ok(s.to_string()),
                _ => Err(way.expected(doc, what)),
            })
            .collect::<Result<Vec<String>, ConfigError>>()?;
        if argv.first().is_none_or(|program| program.trim().is_empty()) {
            return Err(way.expected(doc, what));
        }
        let cwd = table
            .get("cwd")
            .map(|i| i.non_empty_string(doc, "a directory").map(|s| doc.resolve_path(s)))
            .transpose()?;
        let log = table
            .get("log")
            .map(|i| {
                i.non_empty_string(doc, "a file path for the command's output")
                    .map(|s| doc.resolve_path(s))
            })
            .transpose()?;
        let mut env = BTreeMap::new();
        if let Some(item) = table.get("env") {
            for var in item.table(doc)?.entries() {
                let value = match var.value() {
                    DeValue::String(s) => s.to_string(),
                    // PORT = 8787 is what people write; the environment is text anyway.
                    DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                        describe(var.value())
                    }
                    _ => return Err(var.expected(doc, "a string value")),
                };
                env.insert(var.name.to_owned(), value);
            }
        }
        let health = table
            .get("health")
            .map(|i| {
                let what =
                    "an http:// URL or \"tcp:HOST:PORT\", like \"http://127.0.0.1:8787/health\"";
                parse_health(i.string(doc, what)?).ok_or_else(|| i.expected(doc, what))
            })
            .transpose()?;
        let health_timeout = match table.get("health_timeout") {
            Some(item) => item.positive_duration(doc)?,
            None => DEFAULT_HEALTH_TIMEOUT,
        };
        let grace = match table.get("grace") {
            Some(item) => item.duration(doc)?,
            None => DEFAULT_GRACE,
        };
        Ok(Restart::Command { argv, cwd, env, log, health, health_timeout, grace })
    }

    fn auto_restart(&self, table: &Table<'_, '_>) -> Result<AutoRestart, ConfigError> {
        let doc = self.doc;
        table.check_keys(doc, AUTO_RESTART_KEYS)?;
        let on = match table.get("on") {
            Some(item) => match item.string(doc, "\"warning\" or \"critical\"")? {
                "warning" => Severity::Warning,
                "critical" => Severity::Critical,
                _ => return Err(item.expected(doc, "\"warning\" or \"critical\"")),
            },
            None => Severity::Critical,
        };
        let max = match table.get("max") {
            Some(item) => u32::try_from(item.integer_in(
                doc,
                1,
                i128::from(u32::MAX),
                "a number of restarts, 1 or more",
            )?)
            .unwrap_or(u32::MAX),
            None => 3,
        };
        let per = match table.get("per") {
            Some(item) => item.positive_duration(doc)?,
            None => Duration::from_secs(3600),
        };
        Ok(AutoRestart { on, max, per })
    }

    fn orphans(&self, table: &Table<'_, '_>) -> Result<OrphansConfig, ConfigError> {
        let doc = self.doc;
        table.check_keys(doc, ORPHANS_KEYS)?;
        let mut orphans = OrphansConfig::default();
        if let Some(item) = table.get("match") {
            orphans.patterns = item.regex_list(
                doc,
                "an array of regexes on the command line, like [\"uv tool uvx\"]",
            )?;
        }
        if let Some(item) = table.get("idle_reap_after") {
            orphans.idle_reap_after = Some(item.positive_duration(doc)?);
        }
        if let Some(item) = table.get("rules") {
            orphans.rules = self
                .rules(&item.table(doc)?, RuleScope::Orphans)?
                .into_iter()
                .filter_map(|(_, spec)| spec)
                .collect();
        }
        Ok(orphans)
    }
}

pub(super) fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return (addr.port() != 0).then_some(addr);
    }
    // "localhost" is the one name resolved here: the rest would need DNS, which a
    // config parser must not wait on.
    let port: u16 = text.strip_prefix("localhost:")?.parse().ok()?;
    (port != 0).then_some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

pub(super) fn parse_health(text: &str) -> Option<Health> {
    let text = text.trim();
    if let Some(addr) = text.strip_prefix("tcp:") {
        return parse_socket_addr(addr).map(Health::Tcp);
    }
    let rest = text.strip_prefix("http://")?;
    let host = rest.split('/').next().unwrap_or("");
    (!host.is_empty()).then(|| Health::Http(text.to_owned()))
}

impl Metric {
    /// Reads a threshold written for this metric; the error says what was expected.
    fn parse_threshold(&self, value: &DeValue<'_>) -> Result<Threshold, String> {
        let found = describe(value);
        match self {
            Metric::Fds | Metric::Kind(_) | Metric::Class(_) | Metric::Path(_) => {
                let expected = "expected a descriptor count like 500 or a percentage of the FD limit like \"80%\"";
                match value {
                    DeValue::String(s) if s.trim_end().ends_with('%') => {
                        parse_percent(s).map(Threshold::Percent).ok_or_else(|| {
                            format!("expected a percentage of the FD limit between 0 and 100 like \"80%\", found {found}")
                        })
                    }
                    _ => positive_number(value).map(Threshold::Count).ok_or_else(|| format!("{expected}, found {found}")),
                }
            }
            Metric::OrphanCount => positive_number(value)
                .map(Threshold::Count)
                .ok_or_else(|| format!("expected a number of orphan trees like 5, found {found}")),
            Metric::Rss | Metric::OrphanRss => match value {
                DeValue::String(s) if s.contains('%') => Err(format!(
                    "a percentage means nothing for rss: expected a size like \"2GiB\" or \"500MB\", found {found}"
                )),
                DeValue::String(s) => parse_bytes(s)
                    .map(Threshold::Bytes)
                    .ok_or_else(|| format!("expected a size like \"2GiB\" or \"500MB\", or a byte count, found {found}")),
                _ => integer(value)
                    .filter(|n| *n > 0)
                    .and_then(|n| u64::try_from(n).ok())
                    .map(Threshold::Bytes)
                    .ok_or_else(|| format!("expected a size like \"2GiB\" or \"500MB\", or a byte count, found {found}")),
            },
            Metric::Slope => {
                let number = match value {
                    DeValue::String(s) => s
                        .trim()
                        .strip_suffix("/h")
                        .and_then(|n| n.trim().parse::<f64>().ok())
                        .filter(|n| n.is_finite() && *n > 0.0),
                    _ => positive_number(value),
                };
                number
                    .map(Threshold::PerHour)
                    .ok_or_else(|| format!("expected descriptors per hour like 50 or \"50/h\", found {found}"))
            }
            Metric::Eta => match value {
                DeValue::String(s) => parse_duration(s)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .map(Threshold::Duration)
                    .ok_or_else(|| format!("expected a duration like \"6h\" or \"30m\", found {found}")),
                _ => Err(format!("expected a duration like \"6h\" or \"30m\", found {found}")),
            },
            Metric::Down => match value {
                DeValue::Boolean(b) => Ok(Threshold::Flag(*b)),
                _ => Err(format!("expected true or false, found {found}")),
            },
        }
    }
}
