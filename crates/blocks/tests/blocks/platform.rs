//! Reading platform.yaml: a good file, and every kind of bad one with where and what.

use meshplane_blocks::platform::{DeletionPolicy, LakeConfig, Platform, PostgresConfig, Secret};

const GOOD: &str = "apiVersion: meshplane/v1
kind: Platform
environment: dev
blocks:
  - name: warehouse
    type: postgres
    host: 127.0.0.1
    database: analytics
    user: meshplane
    password: { env: WAREHOUSE_PASSWORD }
    deletionPolicy: delete
  - name: lake
    type: lake
    root: s3://bucket/ports
    endpoint: http://127.0.0.1:9000
    accessKeyId: { file: /run/secrets/key }
    secretAccessKey: inline-secret
";

#[test]
fn a_good_platform_is_read_with_its_blocks() {
    let platform = Platform::from_yaml(GOOD).unwrap();
    assert_eq!(platform.environment, "dev");
    let pg = platform.blocks[0].typed::<PostgresConfig>().expect("postgres first");
    assert_eq!((pg.port, pg.deletion_policy), (5432, DeletionPolicy::Delete));
    assert_eq!(pg.password, Some(Secret::Env { env: "WAREHOUSE_PASSWORD".into() }));
    let lake = platform.blocks[1].typed::<LakeConfig>().expect("lake second");
    assert_eq!((lake.s3(), lake.deletion_policy), (Some(("bucket", "ports")), DeletionPolicy::Retain));
    // Secrets never show: not in Debug, not in JSON.
    let shown = format!("{platform:?} {}", serde_json::to_string(&platform).unwrap());
    assert!(!shown.contains("inline-secret"), "{shown}");
    assert!(shown.contains("env:WAREHOUSE_PASSWORD"), "{shown}");
    assert!(platform.oidc.is_none());
    let with_oidc =
        format!("{GOOD}oidc:\n  issuer: https://idp\n  audience: meshplane\n  jwks: {{ file: keys.json }}\n");
    let oidc = Platform::from_yaml(&with_oidc).unwrap().oidc.unwrap();
    assert_eq!((oidc.claim, oidc.audience.as_str(), oidc.max_token_days), (None, "meshplane", 30), "by iss and sub");
}

#[test]
fn every_problem_is_reported_with_its_place() {
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("kind: Platform\n  bad: [".into(), vec!["2:6: mapping values are not allowed"]),
        ("- a\n- b\n".into(), vec!["1:1: platform.yaml must be a mapping"]),
        (
            "apiVersion: meshplane/v2\nkind: Platfrom\nblocks: []\nextra: 1\n".into(),
            vec![
                "4:1: unknown field `extra`",
                "1:13: apiVersion `meshplane/v2` is not meshplane/v1",
                "2:7: kind `Platfrom` is not Platform",
                "`environment` is missing",
            ],
        ),
        (
            GOOD.replace("type: lake", "type: lakehouse"),
            vec!["13:11: unknown block type `lakehouse`; the types are postgres, lake"],
        ),
        (GOOD.replace("    host: 127.0.0.1\n", "    hots: 127.0.0.1\n"), vec!["7:5: unknown field `hots`"]),
        (GOOD.replace("name: lake", "name: warehouse"), vec!["12:5: two blocks are named `warehouse`"]),
        (GOOD.replace("name: lake", "name: my lake"), vec!["may hold only letters, digits"]),
        (GOOD.replace("root: s3://bucket/ports", "root: s3://"), vec!["`root` names no bucket"]),
        (GOOD.replace("database: analytics", "database: ''"), vec!["`database` must not be empty"]),
        (
            GOOD.replace("user: meshplane\n", "user: meshplane\n    port: 70000\n"),
            vec!["invalid value: integer `70000`"],
        ),
        (format!("{GOOD}---\nkind: Platform\n"), vec!["exactly one document"]),
        (
            format!(
                "{GOOD}  - {{ name: remote, type: http, url: 'ftp://x', credential: {{ env: T }}, serverTypes: [] }}\n"
            ),
            vec![
                "`url` must be http:// or https://, not `ftp://x`",
                "`serverTypes` must name at least one server type",
            ],
        ),
        (
            format!("{GOOD}  - {{ name: remote, type: http, url: 'http://x', serverTypes: [kafka] }}\n"),
            vec!["missing field `credential`"],
        ),
        (
            format!("{GOOD}oidc:\n  issuer: ''\n  audience: meshplane\n  jwks: {{ url: 'ldap://idp' }}\n"),
            vec!["`oidc.issuer` must not be empty", "`oidc.jwks.url` must be http:// or https://, not `ldap://idp`"],
        ),
        (
            format!("{GOOD}oidc:\n  issuer: https://idp\n  audeince: meshplane\n  jwks: {{ file: keys.json }}\n"),
            vec!["unknown field `audeince`"],
        ),
        (format!("{GOOD}oidc: [x]\n"), vec!["18:7: `oidc` must be a mapping"]),
    ];
    for (text, expected) in cases {
        let problems = Platform::from_yaml(&text).unwrap_err().to_string();
        for needle in expected {
            assert!(problems.contains(needle), "expected `{needle}` in:\n{problems}\nfor:\n{text}");
        }
    }
}

#[test]
fn secrets_resolve_from_where_they_are_and_say_which_is_missing() {
    let dir = std::env::temp_dir().join(format!("mpsecret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pw"), "s3cr3t\n").unwrap();
    assert_eq!(Secret::File { file: dir.join("pw") }.resolve().unwrap(), "s3cr3t");
    let missing = Secret::Env { env: "MESHPLANE_TEST_SURELY_UNSET".into() }.resolve().unwrap_err();
    assert_eq!(missing, "the environment variable MESHPLANE_TEST_SURELY_UNSET is not set");
    let unreadable = Secret::File { file: dir.join("nope") }.resolve().unwrap_err();
    assert!(unreadable.starts_with("cannot read the secret file"), "{unreadable}");
    std::fs::remove_dir_all(dir).unwrap();
}

proptest::proptest! {
    /// Whatever the text — a good file with a line dropped or a byte changed, or YAML-ish
    /// noise — reading never panics, and every problem points inside the text.
    #[test]
    fn any_text_is_read_or_refused_with_places(
        drop_line in 0usize..20,
        change_at in 0usize..400,
        with in proptest::char::range(' ', '~'),
        noise in "[a-z:{}\\[\\],\\- \n]{0,200}",
    ) {
        let lines: Vec<&str> = GOOD.lines().collect();
        let dropped: String = lines.iter().enumerate().filter(|(i, _)| *i != drop_line).map(|(_, l)| format!("{l}\n")).collect();
        let mut changed: Vec<char> = GOOD.chars().collect();
        if change_at < changed.len() {
            changed[change_at] = with;
        }
        let changed: String = changed.into_iter().collect();
        for text in [dropped, changed, noise] {
            if let Err(problems) = Platform::from_yaml(&text) {
                proptest::prop_assert!(!problems.0.is_empty());
                let last_line = text.lines().count() as u32 + 1;
                for p in &problems.0 {
                    proptest::prop_assert!(p.at.line >= 1 && p.at.line <= last_line, "{p} in\n{text}");
                }
            }
        }
    }
}
