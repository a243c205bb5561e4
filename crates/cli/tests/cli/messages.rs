//! The messages people read most, as snapshots: `--help` of the commands used every day and
//! the common errors, so that a change of wording (or a grammar slip) shows in review.

use super::{meshplane, serve};

fn both(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn help_of_the_everyday_commands() {
    for command in [&["--help"][..], &["apply", "--help"], &["get", "--help"], &["test", "--help"], &["diff", "--help"]]
    {
        let out = meshplane(command);
        assert_eq!(out.status.code(), Some(0), "{command:?}");
        insta::assert_snapshot!(command.join("_").replace("--", ""), String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn the_common_errors_say_what_is_wrong_and_what_to_do() {
    let s = serve();
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "no_token",
            vec!["get".into(), "contracts".into(), "--server".into(), s.url.clone(), "--token".into(), String::new()],
        ),
        (
            "bad_token",
            vec!["get".into(), "contracts".into(), "--server".into(), s.url.clone(), "--token".into(), "nope".into()],
        ),
        ("no_scheme", vec!["get".into(), "contracts".into(), "--server".into(), format!("127.0.0.1:{port}")]),
        ("unreachable", vec!["get".into(), "contracts".into(), "--server".into(), "http://127.0.0.1:9".into()]),
        ("unknown_subcommand", vec!["aply".into()]),
        ("unknown_kind", vec!["get".into(), "contrats".into(), "--server".into(), s.url.clone()]),
        ("missing_file", vec!["lint".into(), "no/such.odcs.yaml".into()]),
        ("junit_outside_test", vec!["lint".into(), "-o".into(), "junit".into(), "mesh".into()]),
        ("two_servers", vec!["test".into(), "test/two-servers.odcs.yaml".into()]),
    ];
    for (name, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = both(&meshplane(&args)).replace(&port, "PORT");
        insta::assert_snapshot!(name, text);
    }
}
