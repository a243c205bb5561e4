//! The README's Quick start, run as written, so that the front door cannot rot: its `sh`
//! block is read from README.md and every command in it runs, in order, in one shell, against
//! a fresh `meshplane serve` on the README's address (127.0.0.1:8080) and store
//! (./meshplane.db), in a directory of its own that holds the repository's `examples` and
//! `crates` (links), so every path in the README means what it means there.
//!
//! What stands in for the README: the binary under test is `meshplane` on the PATH, in place
//! of its first two lines (`cargo build` and the `alias` to `cargo run`). Every command must
//! exit 0, unless its line ends in a comment that starts with `exit N` (then N); a command
//! whose comment says Ctrl-C ends it runs for three seconds and is interrupted.

use std::path::Path;
use std::process::Command;

/// The commands of the README's Quick start: the lines of its first `sh` block that are not
/// comments, blank, or the two that make the binary.
fn quick_start(readme: &str) -> Vec<(usize, String)> {
    let start = readme.find("\n## Quick start").expect("README has a Quick start");
    let block = &readme[start..];
    let open = block.find("```sh\n").expect("the Quick start has an sh block") + 6;
    let first_line = readme[..start + open].lines().count() + 1;
    let body = &block[open..open + block[open..].find("```").unwrap()];
    body.lines()
        .enumerate()
        .map(|(i, l)| (first_line + i, l.to_string()))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter(|(_, l)| !l.starts_with("cargo build") && !l.starts_with("alias meshplane="))
        .collect()
}

/// The exit status a line declares (`# exit 1: ...`), 0 when it declares none.
fn expected_status(line: &str) -> i32 {
    line.split_once("  #")
        .and_then(|(_, comment)| comment.trim().strip_prefix("exit "))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The script that runs every command and stops at the first that exits otherwise than its
/// line says, naming it.
fn script(commands: &[(usize, String)]) -> String {
    let mut script = String::from("set -uo pipefail\n");
    for (number, line) in commands {
        let (run, expected) = if line.contains("Ctrl-C ends it") {
            (format!("timeout -s INT 3 {line}"), 124)
        } else {
            (line.clone(), expected_status(line))
        };
        let quoted = line.replace('\'', "'\\''");
        script.push_str(&format!(
            "echo '+ README.md:{number}: {quoted}'\n{run}\nstatus=$?\nif [ $status -ne {expected} ]; then echo \"README.md:{number} exited $status, not {expected}: {quoted}\" >&2; exit 1; fi\n"
        ));
    }
    script
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = quick_start(&readme);
    assert!(commands.len() > 20, "{commands:?}");
    let dir = std::env::temp_dir().join(format!("mpcli-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for linked in ["examples", "crates"] {
        std::os::unix::fs::symlink(root.join(linked), dir.join(linked)).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_meshplane"), dir.join("bin/meshplane")).unwrap();
    let path = format!("{}:{}", dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    if std::net::TcpListener::bind("127.0.0.1:8080").is_err() {
        panic!(
            "127.0.0.1:8080, the README's address, is taken: stop the meshplane serve (or whatever listens there) and run again"
        );
    }
    let mut server = Command::new(env!("CARGO_BIN_EXE_meshplane"))
        .arg("serve")
        .current_dir(&dir)
        .env_remove("MESHPLANE_TOKEN")
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect("127.0.0.1:8080").is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(script(&commands))
        .current_dir(&dir)
        .env("PATH", path)
        .env_remove("MESHPLANE_TOKEN")
        .env_remove("MESHPLANE_SERVER")
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}\n--- server log (last lines) ---\n{}", tail(&log, 40));
    // The walkthrough did what it says: the lake block provisioned the port, the grant exists.
    assert!(dir.join("data/orders").is_dir(), "{stdout}");
    assert!(stdout.contains("approved"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn a_line_declares_its_exit_status_in_its_comment() {
    assert_eq!(expected_status("meshplane lint --strict x   # exit 1: warnings fail"), 1);
    assert_eq!(expected_status("meshplane get products   # READY and REASON columns"), 0);
    assert_eq!(expected_status("meshplane apply -f x"), 0);
    let readme = "intro\n## Quick start\n\n```sh\ncargo build -p meshplane\n# a comment\nmeshplane get x   # exit 2: no\n\n```\n";
    assert_eq!(quick_start(readme), [(7, "meshplane get x   # exit 2: no".to_string())]);
}
