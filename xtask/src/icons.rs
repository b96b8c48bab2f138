//! `cargo xtask icons [--check]`: renders the designed sources in `icons/` (SVG)
//! into every file the app and its bundles use, so a change to a source is one
//! command away from all sizes, and CI (`--check`) fails when a source changed
//! without them. resvg renders (no system library, the same pixels on every
//! machine); PNG encoding is deterministic, so `--check` compares bytes.
//!
//! - `icons/app.svg` → `src-tauri/icons/{32x32,128x128,128x128@2x,icon}.png`,
//!   `icon.icns` (macOS bundle), `icon.ico` (Windows' format, which Tauri's
//!   bundler also takes).
//! - `icons/tray-{ok,warning,critical}.svg` → `src-tauri/icons/tray/*.png`, 44 px:
//!   the macOS menubar's 22 pt at 2x (the OS scales down for 1x screens; the
//!   Linux tray scales to its own size). Black with alpha only: macOS template
//!   images are tinted by the OS for light and dark menubars.

use crate::util::workspace_root;
use anyhow::{Context, Result, bail};
use resvg::{tiny_skia, usvg};
use std::path::Path;

/// The menubar icon's size in pixels (22 pt at 2x).
const TRAY_PX: u32 = 44;

/// One generated file: where it goes and its bytes.
struct Generated {
    path: &'static str,
    bytes: Vec<u8>,
}

pub(crate) fn run(check: bool) -> Result<()> {
    let root = workspace_root();
    let generated = render_all(&root)?;
    if check {
        let stale: Vec<&str> = generated
            .iter()
            .filter(|g| std::fs::read(root.join(g.path)).ok().as_deref() != Some(&g.bytes[..]))
            .map(|g| g.path)
            .collect();
        if !stale.is_empty() {
            bail!(
                "these icons do not match their sources in icons/: {}; run `cargo xtask icons`",
                stale.join(", ")
            );
        }
        eprintln!("xtask icons: {} files match their sources", generated.len());
        return Ok(());
    }
    for g in &generated {
        let path = root.join(g.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, &g.bytes).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {} ({} bytes)", g.path, g.bytes.len());
    }
    Ok(())
}

fn render_all(root: &Path) -> Result<Vec<Generated>> {
    let app = read(root, "icons/app.svg")?;
    let mut out = Vec::new();
    for (path, size) in [
        ("src-tauri/icons/32x32.png", 32),
        ("src-tauri/icons/128x128.png", 128),
        ("src-tauri/icons/128x128@2x.png", 256),
        ("src-tauri/icons/icon.png", 512),
    ] {
        out.push(Generated { path, bytes: png(&render(&app, size)?)? });
    }
    out.push(Generated { path: "src-tauri/icons/icon.icns", bytes: icns(&app)? });
    out.push(Generated { path: "src-tauri/icons/icon.ico", bytes: ico(&app)? });
    for (source, path) in [
        ("icons/tray-ok.svg", "src-tauri/icons/tray/ok.png"),
        ("icons/tray-warning.svg", "src-tauri/icons/tray/warning.png"),
        ("icons/tray-critical.svg", "src-tauri/icons/tray/critical.png"),
    ] {
        let svg = read(root, source)?;
        let pixmap = render(&svg, TRAY_PX)?;
        if let Some(p) = pixmap.pixels().iter().find(|p| p.red() + p.green() + p.blue() > 0) {
            bail!("{source} is not black with alpha (a template image): found {p:?}");
        }
        out.push(Generated { path, bytes: png(&pixmap)? });
    }
    Ok(out)
}

fn read(root: &Path, path: &str) -> Result<Vec<u8>> {
    std::fs::read(root.join(path)).with_context(|| format!("reading {path}"))
}

/// `svg` scaled to a `size` × `size` square.
fn render(svg: &[u8], size: u32) -> Result<tiny_skia::Pixmap> {
    let tree = usvg::Tree::from_data(svg, &usvg::Options::default()).context("parsing the SVG")?;
    let mut pixmap = tiny_skia::Pixmap::new(size, size).context("an empty icon size")?;
    let scale = size as f32 / tree.size().width().max(tree.size().height());
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    Ok(pixmap)
}

fn png(pixmap: &tiny_skia::Pixmap) -> Result<Vec<u8>> {
    pixmap.encode_png().context("encoding a PNG")
}

/// The ICNS container (Apple's icon family): the `icns` magic and the file's
/// length, then one entry per size, each a four-letter type, its length
/// (header included) and a PNG, all big-endian. The types are those of Apple's
/// `iconutil`: `icp4`/`icp5` 16 and 32 px, `ic11`..`ic14` the @2x sizes,
/// `ic07`..`ic10` 128 to 1024 px.
fn icns(svg: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    for (kind, size) in [
        (b"icp4", 16),
        (b"icp5", 32),
        (b"ic11", 32),
        (b"ic12", 64),
        (b"ic07", 128),
        (b"ic13", 256),
        (b"ic08", 256),
        (b"ic14", 512),
        (b"ic09", 512),
        (b"ic10", 1024),
    ] {
        let data = png(&render(svg, size)?)?;
        let len = u32::try_from(data.len() + 8).context("an icon too large for ICNS")?;
        body.extend_from_slice(kind);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&data);
    }
    let total = u32::try_from(body.len() + 8).context("an icon too large for ICNS")?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"icns");
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// A Windows icon with the sizes its shell picks from.
fn ico(svg: &[u8]) -> Result<Vec<u8>> {
    let mut dir = ico::IconDir::new(ico::ResourceType::Icon);
    for size in [16, 24, 32, 48, 64, 128, 256] {
        let pixmap = render(svg, size)?;
        // tiny-skia keeps premultiplied alpha; ICO wants it straight.
        let rgba: Vec<u8> = pixmap
            .pixels()
            .iter()
            .flat_map(|p| {
                let c = p.demultiply();
                [c.red(), c.green(), c.blue(), c.alpha()]
            })
            .collect();
        let image = ico::IconImage::from_rgba_data(size, size, rgba);
        dir.add_entry(ico::IconDirEntry::encode(&image).context("encoding an ICO entry")?);
    }
    let mut out = Vec::new();
    dir.write(&mut out).context("writing the ICO")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn icns_entries_add_up_and_hold_pngs() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8"><rect width="8" height="4"/></svg>"#;
        let data = icns(svg).unwrap();
        assert_eq!(&data[..4], b"icns");
        assert_eq!(u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize, data.len());
        let mut at = 8;
        let mut kinds = Vec::new();
        while at < data.len() {
            let len = u32::from_be_bytes(data[at + 4..at + 8].try_into().unwrap()) as usize;
            assert_eq!(&data[at + 8..at + 12], b"\x89PNG");
            kinds.push(String::from_utf8_lossy(&data[at..at + 4]).into_owned());
            at += len;
        }
        assert_eq!(at, data.len());
        assert_eq!(kinds.len(), 10);
    }

    #[test]
    fn the_tray_sources_are_templates_and_differ() {
        let root = workspace_root();
        let pixels: Vec<Vec<u8>> = ["ok", "warning", "critical"]
            .iter()
            .map(|v| {
                let svg = read(&root, &format!("icons/tray-{v}.svg")).unwrap();
                render(&svg, TRAY_PX).unwrap().data().to_vec()
            })
            .collect();
        assert_ne!(pixels[0], pixels[1]);
        assert_ne!(pixels[1], pixels[2]);
        // Ink grows with the severity: ok < warning < critical.
        let ink = |p: &Vec<u8>| p.chunks(4).map(|px| u32::from(px[3])).sum::<u32>();
        assert!(ink(&pixels[0]) < ink(&pixels[1]) && ink(&pixels[1]) < ink(&pixels[2]));
    }
}
