//! The repository as someone who clones it alone finds it: every link between its documents
//! leads to a file and a heading it holds, the licence the manifests name is there, and no
//! store file is committed.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The documents a reader follows links between.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> =
        ["README.md", "CHANGELOG.md", "bench/BENCHMARKS.md"].iter().map(|p| root.join(p)).collect();
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
    found
}

/// The targets of the Markdown links `[text](target)` of `text`, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    targets
}

/// The anchor GitHub gives a heading: lower case, spaces as `-`, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with('#')).map(|l| anchor(l.trim_start_matches('#'))).collect()
}

#[test]
fn every_link_between_the_documents_leads_to_a_file_and_heading_of_the_repository() {
    let root = root();
    let mut broken = Vec::new();
    let mut followed = 0;
    for document in documents(&root) {
        let text = std::fs::read_to_string(&document).unwrap();
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                continue;
            }
            followed += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() { document.clone() } else { document.parent().unwrap().join(file) };
            let inside = path.canonicalize().ok().filter(|p| p.starts_with(&root));
            let Some(path) = inside else {
                broken.push(format!("{}: {target}: no such file in the repository", document.display()));
                continue;
            };
            if !fragment.is_empty()
                && !anchors(&std::fs::read_to_string(&path).unwrap_or_default()).iter().any(|a| a == fragment)
            {
                broken.push(format!("{}: {target}: no heading `#{fragment}` there", document.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(followed > 10, "only {followed} links found: the reader is broken");
}

#[test]
fn the_anchor_of_a_heading_is_the_one_github_makes() {
    assert_eq!(
        anchor(" The block's database user and the test `logins` "),
        "the-blocks-database-user-and-the-test-logins"
    );
    assert_eq!(anchor("Readiness at a glance"), "readiness-at-a-glance");
    assert_eq!(links("see [a](x.md#b) and [c](https://e) \n```\n[no](link)\n```"), ["x.md#b", "https://e"]);
}

#[test]
fn the_licence_the_manifests_name_is_in_the_repository() {
    let root = root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""), "the workspace's licence changed: change LICENSE with it");
    let licence = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0, January 2004"));
    assert!(licence.contains("END OF TERMS AND CONDITIONS"), "the licence text is cut short");
}

#[test]
fn no_store_or_build_file_is_committed() {
    let root = root();
    let listed = std::process::Command::new("git").arg("-C").arg(&root).args(["ls-files", "-z"]).output();
    let Some(listed) = listed.ok().filter(|o| o.status.success()) else {
        eprintln!("not a git checkout: nothing to check");
        return;
    };
    let committed: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split('\0')
        .filter(|p| {
            [".db", ".db-wal", ".db-shm", ".sqlite", "-journal"].iter().any(|end| p.ends_with(end))
                || p.starts_with("target/")
        })
        .map(str::to_string)
        .collect();
    assert!(committed.is_empty(), "store or build files in git: {committed:?}");
}
