//! `cargo xtask cask`: fills `packaging/homebrew/leakwatch.rb.template` with a
//! release's version and the .dmg's SHA-256, so the cask that goes to a tap is
//! made from the template in the repository and never edited by hand.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const TEMPLATE: &str = "packaging/homebrew/leakwatch.rb.template";
const OUTPUT: &str = "packaging/homebrew/leakwatch.rb";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The release's version, X.Y.Z (the tag is vX.Y.Z).
    #[arg(long)]
    version: String,
    /// The .dmg's SHA-256, 64 hex digits.
    #[arg(long, conflicts_with = "dmg", required_unless_present = "dmg")]
    sha256: Option<String>,
    /// The .dmg itself: its SHA-256 is computed.
    #[arg(long, value_name = "PATH")]
    dmg: Option<PathBuf>,
    /// The GitHub repository the release is on.
    #[arg(long, value_name = "OWNER/NAME", default_value = "leakwatch/leakwatch")]
    repository: String,
    /// Print the cask instead of writing packaging/homebrew/leakwatch.rb.
    #[arg(long)]
    stdout: bool,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let root = crate::util::workspace_root();
    let template = std::fs::read_to_string(root.join(TEMPLATE))
        .with_context(|| format!("reading {TEMPLATE}"))?;
    let sha256 = match (&args.sha256, &args.dmg) {
        (Some(hex), _) => hex.to_ascii_lowercase(),
        (None, Some(dmg)) => sha256_of(dmg)?,
        (None, None) => bail!("give --sha256 HEX or --dmg PATH"),
    };
    let cask = fill(&template, &args.version, &sha256, &args.repository)?;
    if args.stdout {
        print!("{cask}");
    } else {
        std::fs::write(root.join(OUTPUT), &cask).with_context(|| format!("writing {OUTPUT}"))?;
        eprintln!("wrote {OUTPUT} (version {}, sha256 {sha256})", args.version);
    }
    Ok(())
}

/// The template with its placeholders filled, after checking each value.
fn fill(template: &str, version: &str, sha256: &str, repository: &str) -> Result<String> {
    let numbers: Vec<&str> = version.split('.').collect();
    if numbers.len() != 3
        || numbers.iter().any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
    {
        bail!("--version {version:?}: expected X.Y.Z, three numbers (the tag is vX.Y.Z)");
    }
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--sha256 {sha256:?}: expected 64 hexadecimal digits");
    }
    let valid_part = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match repository.split_once('/') {
        Some((owner, name)) if valid_part(owner) && valid_part(name) => {}
        _ => bail!("--repository {repository:?}: expected OWNER/NAME"),
    }
    let cask = template
        .replace("@VERSION@", version)
        .replace("@SHA256@", &sha256.to_ascii_lowercase())
        .replace("@REPOSITORY@", repository);
    if let Some(left) = placeholder(&cask) {
        bail!("{TEMPLATE} has a placeholder this script does not fill: {left}");
    }
    Ok(cask)
}

/// The first `@NAME@` (capitals and underscores) left in `text`.
fn placeholder(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        let after = &rest[start + 1..];
        let name_len = after.bytes().take_while(|b| b.is_ascii_uppercase() || *b == b'_').count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b'@') {
            return Some(&rest[start..start + name_len + 2]);
        }
        rest = after;
    }
    None
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SHA: &str = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b";

    fn template() -> String {
        std::fs::read_to_string(crate::util::workspace_root().join(TEMPLATE)).unwrap()
    }

    #[test]
    fn fills_every_placeholder() {
        let cask = fill(&template(), "1.2.3", &SHA.to_uppercase(), "me/leakwatch").unwrap();
        assert!(cask.contains("version \"1.2.3\""));
        assert!(cask.contains(&format!("sha256 \"{SHA}\"")));
        assert!(cask.contains("https://github.com/me/leakwatch/releases/download/v#{version}/"));
        assert!(!cask.contains('@'), "{cask}");
    }

    #[test]
    fn refuses_malformed_values() {
        let t = template();
        for (version, sha, repo) in [
            ("1.2", SHA, "a/b"),
            ("1.2.x", SHA, "a/b"),
            ("v1.2.3", SHA, "a/b"),
            ("1.2.3", &SHA[1..], "a/b"),
            ("1.2.3", &SHA.replace('a', "g"), "a/b"),
            ("1.2.3", SHA, "ab"),
            ("1.2.3", SHA, "a/b\"; system \"x"),
        ] {
            assert!(fill(&t, version, sha, repo).is_err(), "{version} {sha} {repo}");
        }
    }

    #[test]
    fn hashes_a_file() {
        let dir = std::env::temp_dir().join(format!("xtask-cask-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dmg = dir.join("x.dmg");
        std::fs::write(&dmg, b"leakwatch").unwrap();
        let hex = sha256_of(&dmg).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // `printf leakwatch | sha256sum`
        assert_eq!(hex, "348a689d0a4e34c292befca9b4c1a25b2802df544fc8f1e890bd24d38b93c9af");
    }

    #[test]
    fn finds_a_placeholder_left() {
        assert_eq!(placeholder("a @NEW_THING@ b"), Some("@NEW_THING@"));
        assert_eq!(placeholder("mail@example.com, @ lone, @x@"), None);
    }
}
