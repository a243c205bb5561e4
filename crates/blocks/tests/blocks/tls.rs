//! The PostgreSQL block and a test run's login over TLS (verify-full) with SCRAM, against a
//! private cluster the test makes with `initdb`: `ssl = on`, every TCP connection
//! `hostssl ... scram-sha-256`, its server certificate signed by a CA the test makes with
//! `openssl`. A block that does not encrypt, or that does not trust the server's certificate,
//! or that has the wrong password, gets nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use meshplane_blocks::platform::Platform;
use meshplane_blocks::postgres::PostgresBlock;
use meshplane_blocks::storage::Storage;
use meshplane_core::block::{Call, Provisioner};
use meshplane_core::checking::TestTarget;
use meshplane_quality::postgres::{Connection, Tls};
use meshplane_quality::run::{Options, Outcome};
use meshplane_quality::target::{Target, plan_of, test_on};

use crate::postgres::record;

/// A PostgreSQL cluster of the test's own, stopped and removed when dropped.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
}

/// Runs `program` with `args`, as the `postgres` user when the test runs as root (PostgreSQL
/// refuses to run as root); panics with its output when it fails.
fn run(program: &Path, args: &[&str]) -> String {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = command.args(args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`NAME.crt`, `NAME.key`) in `dir`.
fn authority(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=meshplane test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

impl Cluster {
    fn start() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("mptls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        authority(&dir, "ca");
        authority(&dir, "other");
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "server.crt",
                "-extfile",
                "server.ext",
            ],
        );
        let password = meshplane_core::store::identity::random_hex(12);
        std::fs::write(dir.join("password"), &password).unwrap();
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
        let _ = Command::new("chmod").arg("0600").arg(dir.join("server.key")).status();
        let data = dir.join("data");
        let pwfile = format!("--pwfile={}", dir.join("password").display());
        run(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &pwfile,
            ],
        );
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\nssl = on\n\
             ssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\npassword_encryption = 'scram-sha-256'\n",
            d = dir.display()
        );
        let mut existing = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        existing.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), existing).unwrap();
        // Only TLS over TCP, and only SCRAM.
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
            .unwrap();
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
        let log = dir.join("log");
        run(&bin.join("pg_ctl"), &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "start"]);
        let cluster = Cluster { dir, bin, port, password };
        cluster.psql("postgres", "CREATE DATABASE data");
        cluster
    }

    /// Runs `sql` in `database` over the cluster's socket (trusted), as `postgres`.
    fn psql(&self, database: &str, sql: &str) -> String {
        let (dir, port) = (self.dir.display().to_string(), self.port.to_string());
        run(&self.bin.join("psql"), &["-h", &dir, "-p", &port, "-U", "postgres", "-d", database, "-XAtc", sql])
    }

    fn ca(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "stop"])
            .output();
        let _ = Command::new(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL block on the cluster, with `tls` (YAML) and `password`.
fn block(cluster: &Cluster, tls: &str, password: &str) -> Storage<PostgresBlock> {
    let text = format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: warehouse\n    type: postgres\n\
         \x20   host: 127.0.0.1\n    port: {}\n    database: data\n    user: postgres\n    password: \"{password}\"\n    tls: {tls}\n",
        cluster.port
    );
    let platform = Arc::new(Platform::from_yaml(&text).unwrap());
    let config = platform.blocks[0].typed::<meshplane_blocks::platform::PostgresConfig>().unwrap();
    Storage(PostgresBlock::new("warehouse", config, Arc::clone(&platform)).unwrap())
}

fn contract(port: u16) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: ledger\nversion: 1.0.0\nstatus: active\ndomain: finance\n\
         servers:\n  - {{ server: warehouse, type: postgres, environment: dev, host: 127.0.0.1, port: {port}, database: data, schema: ledger_v1 }}\n\
         schema:\n  - name: entries\n    properties:\n      - {{ name: id, logicalType: string, logicalTypeOptions: {{ pattern: \"^[a-z]$\" }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_and_test_logins_speak_tls_and_scram_to_a_cluster_that_demands_them() {
    let cluster = Cluster::start();
    let call = Call::unfenced("tls1");
    let verified = format!("{{ mode: verify-full, rootCert: \"{}\" }}", cluster.ca("ca").display());
    let warehouse = block(&cluster, &verified, &cluster.password);
    let ledger = record(&contract(cluster.port));
    let done = warehouse.provision(&ledger, &call).await.unwrap();
    assert_eq!(done.summary, "created schema ledger_v1, created table ledger_v1.entries");
    cluster.psql("data", "INSERT INTO ledger_v1.entries VALUES ('a'), ('BAD')");
    assert_eq!(cluster.psql("data", "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = 'postgres' AND client_addr IS NOT NULL LIMIT 1").trim(), "t", "the block's connection is encrypted");

    // A test run's login, over the same TLS, authenticated with SCRAM.
    let target = warehouse.test_target(&ledger, "warehouse", Duration::from_secs(60), &call).await.unwrap();
    let TestTarget::Postgres { user, password, tls, .. } = &target else { panic!("{target:?}") };
    assert_eq!(tls.mode, "verify-full");
    let stored =
        cluster.psql("postgres", &format!("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = '{user}'"));
    assert_eq!(stored.trim(), "SCRAM-SHA-256$");
    let meshplane_spec::Document::Contract(contract) =
        meshplane_spec::load(&contract(cluster.port)).documents.remove(0).document.unwrap()
    else {
        panic!()
    };
    let options = Options::now(0);
    let plan = plan_of(&contract, None, &options).unwrap();
    let connection = |tls: Tls| Connection {
        host: "127.0.0.1".into(),
        port: cluster.port,
        database: "data".into(),
        user: user.clone(),
        password: Some(password.clone()),
        schema: "ledger_v1".into(),
        sandboxed: true,
        tls,
    };
    let verify = Tls::VerifyFull { root_cert: Some(cluster.ca("ca")) };
    let report = test_on(&contract, ("warehouse", "postgres"), &plan, Target::Postgres(connection(verify)), &options)
        .await
        .unwrap();
    let required = report.results.iter().find(|r| r.key == "entries.id.pattern").unwrap();
    assert_eq!((required.outcome, required.value), (Outcome::Fail, Some(1.0)), "{report:?}");
    // The same login without TLS, or trusting another CA, is refused.
    for (tls, why) in
        [(Tls::Disable, "no encryption"), (Tls::VerifyFull { root_cert: Some(cluster.ca("other")) }, "certificate")]
    {
        let refused =
            test_on(&contract, ("warehouse", "postgres"), &plan, Target::Postgres(connection(tls)), &options).await;
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(why), "{message}");
    }
    warehouse.end_test(&target, &call).await.unwrap();

    // A block that does not encrypt, does not trust the server, or has the wrong password.
    for (tls, password, why) in [
        ("{ mode: disable }".to_string(), cluster.password.clone(), "no encryption"),
        (
            format!("{{ mode: verify-full, rootCert: \"{}\" }}", cluster.ca("other").display()),
            cluster.password.clone(),
            "certificate",
        ),
        (verified.clone(), "wrong".to_string(), "password authentication failed"),
    ] {
        let refused = block(&cluster, &tls, &password).provision(&ledger, &call).await.unwrap_err().to_string();
        assert!(refused.contains(why), "{tls}: {refused}");
    }
}
