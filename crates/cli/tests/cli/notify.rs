//! Events delivered at least once: the `webhook` sink end to end, against a receiver that
//! verifies every signature with the Standard Webhooks reference library
//! (`fixtures/notify/receiver.py`, run by the Python of the venv `test.sh` makes), through a
//! receiver answering 500, a receiver refusing an event, a forged signature, a receiver down
//! for 30 s, and a server killed with SIGKILL between a change and its delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Served, free_port, meshplane, serve_with, token_for, wait_ready};

/// The receiver's secret, and another one (a sink that signs with it forges).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8G";
const OTHER_SECRET: &str = "whsec_c29tZSBvdGhlciBzZWNyZXQgb2YgMjQgYnl0ZXMh";

/// The Python with `standardwebhooks` (test.sh's venv, or `MESHPLANE_PYTHON`).
fn python() -> PathBuf {
    let venv = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/meshplane-venv/bin/python");
    let python = std::env::var_os("MESHPLANE_PYTHON").map_or(venv, PathBuf::from);
    assert!(python.exists(), "{} is missing: ./test.sh makes the venv with standardwebhooks", python.display());
    python
}

/// A receiver process on `port`, logging to `log`; killed when dropped.
struct Receiver {
    child: Child,
    log: PathBuf,
}

impl Receiver {
    fn start(port: u16, log: &Path, env: &[(&str, &str)]) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notify/receiver.py");
        let child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(log)
            .env("SECRET", SECRET)
            .envs(env.iter().copied())
            .spawn()
            .unwrap();
        // Killed (and waited for) when dropped, also when it never listens.
        let receiver = Receiver { child, log: log.to_path_buf() };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return receiver;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the receiver did not listen on {port}");
    }

    /// Every request it got, in order.
    fn lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of the test's own: the platform file, the secrets, the receivers' logs.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mpcli-notify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A platform with the embedded lake and a webhook sink `name` to each port, signing with
    /// its secret, taking the catalog's events, retrying quickly.
    fn platform(&self, sinks: &[(&str, u16, &str)]) -> PathBuf {
        let mut yaml = format!(
            "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: lake\n    type: lake\n    root: {}\n",
            self.0.join("data").display()
        );
        for (name, port, secret) in sinks {
            let file = self.0.join(format!("{name}.secret"));
            std::fs::write(&file, secret).unwrap();
            yaml.push_str(&format!(
                "  - name: {name}\n    type: webhook\n    url: http://127.0.0.1:{port}/hook?token=hidden\n    secret: {{ file: {} }}\n    \
                 events: {{ types: [io.meshplane.datacontract.*, io.meshplane.dataproduct.*] }}\n    \
                 retry: {{ initialMs: 100, maxMs: 500, forSeconds: 600 }}\n",
                file.display()
            ));
        }
        let path = self.0.join("platform.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn get(url: &str, path: &str, accept: &str) -> reqwest::blocking::Response {
    let res = reqwest::blocking::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(token_for(url).unwrap())
        .header("accept", accept)
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{path}");
    res
}

fn json(url: &str, path: &str) -> Value {
    get(url, path, "application/json").json().unwrap()
}

/// Every catalog change as the pull feed gives it in CloudEvents form, by id.
fn feed(url: &str) -> BTreeMap<String, Value> {
    let (mut out, mut after) = (BTreeMap::new(), 0);
    loop {
        let res = get(url, &format!("/api/v1/events?after={after}&limit=1000"), "application/cloudevents-batch+json");
        assert_eq!(res.headers()["content-type"], "application/cloudevents-batch+json");
        let page: Vec<Value> = res.json().unwrap();
        let Some(last) = page.last().map(|e| e["data"]["seq"].as_i64().unwrap()) else { return out };
        for event in page {
            out.insert(event["id"].as_str().unwrap().to_string(), event);
        }
        after = last;
    }
}

/// Waits until the server's sinks have taken their place in the feed.
fn wait_for_sinks(url: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sinks = json(url, "/api/v1/sinks");
        if sinks.as_array().unwrap().iter().filter(|s| s["position"].is_i64()).count() == count {
            return;
        }
        assert!(Instant::now() < deadline, "the sinks never started: {sinks}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The ids a receiver acknowledged.
fn acknowledged(lines: &[Value]) -> BTreeSet<String> {
    lines.iter().filter(|l| l["answer"] == 204).map(|l| l["id"].as_str().unwrap().to_string()).collect()
}

/// Waits until `done` holds of the receiver's lines and the feed (read again each time: the
/// reconcilers keep adding status changes for a while), and for the feed to stand still.
fn wait_until(url: &str, receiver: &Receiver, done: impl Fn(&[Value], &BTreeMap<String, Value>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut settled = 0;
    loop {
        let events = feed(url);
        let lines = receiver.lines();
        settled = if done(&lines, &events) { settled + 1 } else { 0 };
        if settled == 3 {
            return;
        }
        let missing: Vec<_> = events.keys().filter(|id| !acknowledged(&lines).contains(*id)).collect();
        assert!(Instant::now() < deadline, "not delivered in 60 s: {missing:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The receiver got each event in the order of the feed per subject (a repeat, after a crash
/// or a retry, carries the id of the first), with its id as `webhook-id`, as a structured
/// CloudEvent equal to the pull feed's.
fn assert_in_order_and_as_the_feed(lines: &[Value], events: &BTreeMap<String, Value>) {
    let mut first_seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for line in lines.iter().filter(|l| l["answer"] != 401) {
        let id = line["id"].as_str().unwrap();
        assert_eq!(line["webhookId"], line["id"], "{line}");
        assert!(line["contentType"].as_str().unwrap().starts_with("application/cloudevents+json"), "{line}");
        assert_eq!(Some(&line["event"]), events.get(id), "the delivered event is the pull feed's");
        if seen.insert(id.to_string()) {
            first_seen
                .entry(line["subject"].as_str().unwrap().to_string())
                .or_default()
                .push(line["seq"].as_i64().unwrap());
        }
    }
    for (subject, seqs) in &first_seen {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{subject} out of order: {seqs:?}");
    }
}

fn apply(url: &str, dir: &str) {
    let mesh = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh").join(dir);
    let out = meshplane(&["apply", "--server", url, "-f", mesh.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

fn delete(url: &str, product: &str) {
    let out = meshplane(&["delete", "products", product, "--server", url]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

fn post(url: &str, path: &str) -> (u16, Value) {
    let res = reqwest::blocking::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(token_for(url).unwrap())
        .send()
        .unwrap();
    (res.status().as_u16(), res.json().unwrap())
}

fn served(db: &Path, platform: &Path) -> Served {
    let mut s = serve_with(
        &format!("sqlite://{}", db.display()),
        &["--platform", platform.to_str().unwrap(), "--lease-seconds", "2"],
    );
    s.db = Some(db.to_path_buf());
    s
}

#[test]
fn a_webhook_gets_every_event_signed_in_order_through_errors_refusals_and_forgeries() {
    let scratch = Scratch::new("faults");
    let (port, forged_port) = (free_port(), free_port());
    let log = scratch.0.join("hook.log");
    let refused = "io.meshplane.dataproduct.deleted";
    let receiver = Receiver::start(port, &log, &[("FAIL_FIRST", "3"), ("REFUSE_TYPE", refused)]);
    let forged_receiver = Receiver::start(forged_port, &scratch.0.join("forged.log"), &[]);
    let platform = scratch.platform(&[("hook", port, SECRET), ("forged", forged_port, OTHER_SECRET)]);
    let s = served(&scratch.0.join("store.db"), &platform);
    wait_for_sinks(&s.url, 2);

    apply(&s.url, "sales");
    apply(&s.url, "finance");
    delete(&s.url, "finance-forecast");
    // Every event arrives but the refused one, which is the one dead letter.
    wait_until(&s.url, &receiver, |lines, events| {
        let expected: BTreeSet<_> =
            events.iter().filter(|(_, e)| e["type"] != refused).map(|(id, _)| id.clone()).collect();
        events.values().any(|e| e["type"] == refused) && acknowledged(lines) == expected
    });
    let (lines, events) = (receiver.lines(), feed(&s.url));
    assert_in_order_and_as_the_feed(&lines, &events);
    let answers: Vec<i64> = lines.iter().map(|l| l["answer"].as_i64().unwrap()).collect();
    assert_eq!(answers[..4], [500, 500, 500, 204], "three 500s, then the same event again: {answers:?}");
    assert!(lines[..4].iter().all(|l| l["id"] == lines[0]["id"]), "retried with the same id");

    let letters = json(&s.url, "/api/v1/sinks/hook/dead-letters");
    let letters = letters["items"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!((letters[0]["event"]["type"].as_str(), letters[0]["state"].as_str()), (Some(refused), Some("dead")));
    assert!(letters[0]["error"].as_str().unwrap().contains("400"), "{}", letters[0]);
    assert_eq!(letters[0]["event"], events[letters[0]["event"]["id"].as_str().unwrap()]);
    // The deletion's event carries the document before it.
    assert_eq!(letters[0]["event"]["data"]["before"]["id"], "finance-forecast");

    // A forged signature is refused by the reference library, and each event becomes a dead
    // letter at once (a 401 is not retried).
    let forged = forged_receiver.lines();
    assert!(!forged.is_empty() && forged.iter().all(|l| l["answer"] == 401), "{forged:?}");
    let forged_letters = json(&s.url, "/api/v1/sinks/forged/dead-letters?limit=1000");
    assert_eq!(forged_letters["items"].as_array().unwrap().len(), forged.len());

    let sinks = json(&s.url, "/api/v1/sinks");
    let hook = sinks.as_array().unwrap().iter().find(|x| x["name"] == "hook").unwrap().clone();
    assert_eq!((hook["type"].as_str(), hook["deadLetters"].as_i64()), (Some("webhook"), Some(1)), "{hook}");
    assert!(hook["config"]["secret"].as_str().unwrap().starts_with("file:"), "only the reference: {hook}");
    assert_eq!(hook["config"]["url"], format!("http://127.0.0.1:{port}/hook"), "no query: it may hold a token");
    let (status, zero) = post(&s.url, "/api/v1/sinks/hook/redeliver?id=0");
    assert_eq!((status, zero["code"].as_str()), (400, Some("malformed-request")), "{zero}");
    // Each acknowledgement the receiver logged is counted once as sent (at least once: a
    // repeat is counted too), with its lag; the feed may still be moving, so both are read
    // until they agree.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = get(&s.url, "/metrics", "text/plain").text().unwrap();
        let sample = |series: &str| -> f64 {
            metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
        };
        assert_eq!(sample(r#"meshplane_notifications_total{sink="hook",outcome="retried"}"#), 3.0);
        assert_eq!(sample(r#"meshplane_notifications_total{sink="hook",outcome="failed"}"#), 1.0);
        let sent = sample(r#"meshplane_notifications_total{sink="hook",outcome="sent"}"#);
        let answered = receiver.lines().iter().filter(|l| l["answer"] == 204).count();
        if sent as usize == answered {
            assert_eq!(sample(r#"meshplane_notification_lag_seconds_count{sink="hook"}"#), sent);
            break;
        }
        assert!(Instant::now() < deadline, "sent {sent}, while the receiver acknowledged {answered}: {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Once the receiver takes it, the dead letter is sent again on request.
    drop(receiver);
    let receiver = Receiver::start(port, &log, &[]);
    assert_eq!(post(&s.url, "/api/v1/sinks/hook/redeliver"), (200, serde_json::json!({ "redelivering": 1 })));
    let id = letters[0]["id"].as_i64().unwrap();
    let (status, again) = post(&s.url, &format!("/api/v1/sinks/hook/redeliver?id={id}"));
    assert_eq!((status, again["code"].as_str()), (409, Some("wrong-state")), "{again}");
    let (status, missing) = post(&s.url, "/api/v1/sinks/nothing/redeliver");
    assert_eq!((status, missing["code"].as_str()), (404, Some("not-found")), "{missing}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !receiver.lines().iter().any(|l| l["type"] == refused && l["answer"] == 204) {
        assert!(Instant::now() < deadline, "the dead letter was not sent again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let bogus = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/sinks/hook/dead-letters?state=bogus", s.url))
        .bearer_auth(token_for(&s.url).unwrap())
        .send()
        .unwrap();
    assert_eq!(bogus.status().as_u16(), 400, "a state that is none of the three");
    // The sink marks it once the receiver's answer is back, a moment after the receiver logs it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let letters = json(&s.url, "/api/v1/sinks/hook/dead-letters?state=redelivered");
        if letters["items"][0]["id"].as_i64() == Some(id) {
            break;
        }
        assert!(Instant::now() < deadline, "the letter was never marked redelivered: {letters}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn webhook_delivery_survives_a_receiver_down_for_30_s_and_a_server_killed_with_sigkill() {
    let scratch = Scratch::new("crash");
    let port = free_port();
    let log = scratch.0.join("hook.log");
    let platform = scratch.platform(&[("hook", port, SECRET)]);
    let db = scratch.0.join("store.db");
    let receiver = Receiver::start(port, &log, &[]);
    let mut first = served(&db, &platform);
    wait_for_sinks(&first.url, 1);
    apply(&first.url, "sales");
    wait_until(&first.url, &receiver, |lines, events| acknowledged(lines) == events.keys().cloned().collect());

    // The receiver is down for 30 s while changes go on; they arrive once it is back.
    drop(receiver);
    apply(&first.url, "customers");
    std::thread::sleep(Duration::from_secs(30));
    let receiver = Receiver::start(port, &log, &[]);
    wait_until(&first.url, &receiver, |lines, events| acknowledged(lines) == events.keys().cloned().collect());

    // A change is committed while the receiver is down, and the server is killed before it
    // could deliver it; the next server delivers it.
    drop(receiver);
    apply(&first.url, "finance");
    let before_kill = feed(&first.url);
    std::thread::sleep(Duration::from_millis(500));
    let pid = first.child.id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let _ = first.child.wait();
    first.keep_db = true;
    let receiver = Receiver::start(port, &log, &[]);
    let acknowledged_at_kill = acknowledged(&receiver.lines());
    let left: Vec<&String> = before_kill.keys().filter(|id| !acknowledged_at_kill.contains(*id)).collect();
    assert!(!left.is_empty(), "the finance change was committed and left for the next server");
    let second = served(&db, &platform);
    delete(&second.url, "finance-forecast");
    wait_until(&second.url, &receiver, |lines, events| acknowledged(lines) == events.keys().cloned().collect());
    let (lines, events) = (receiver.lines(), feed(&second.url));
    assert!(left.iter().all(|id| acknowledged(&lines).contains(*id)), "what the killed server left");
    let deleted = events.values().find(|e| e["type"] == "io.meshplane.dataproduct.deleted");
    assert!(deleted.is_some_and(|e| acknowledged(&lines).contains(e["id"].as_str().unwrap())), "and what came after");
    assert_in_order_and_as_the_feed(&lines, &events);
}

/// A message of a stream: subject, `Nats-Msg-Id` and the event.
type Message = (String, String, Value);

/// The machine's NATS server.
const NATS: &str = "127.0.0.1:4222";

/// Every message of JetStream stream `stream` on the NATS server at `nats`.
fn stream_messages(nats: &str, stream: &str) -> Vec<Message> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let client = async_nats::connect(nats).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let Ok(mut held) = jetstream.get_stream(stream).await else { return Vec::new() };
        let last = held.info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            let m = held.get_raw_message(seq).await.unwrap();
            let id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string()).unwrap_or_default();
            out.push((m.subject.to_string(), id, serde_json::from_slice(&m.payload).unwrap()));
        }
        out
    })
}

fn delete_stream(stream: &str) {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let client = async_nats::connect(NATS).await.unwrap();
        let _ = async_nats::jetstream::new(client).delete_stream(stream).await;
    });
}

/// Waits until the stream on `nats` holds every catalog event of the feed.
fn wait_for_stream(url: &str, nats: &str, stream: &str) -> (Vec<Message>, BTreeMap<String, Value>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut settled = 0;
    loop {
        let (messages, events) = (stream_messages(nats, stream), feed(url));
        let ids: BTreeSet<String> = messages.iter().map(|(_, id, _)| id.clone()).collect();
        settled = if ids == events.keys().cloned().collect() { settled + 1 } else { 0 };
        if settled == 3 {
            return (messages, events);
        }
        assert!(Instant::now() < deadline, "the stream never held every event: {} of {}", ids.len(), events.len());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn nats_jetstream_holds_every_event_once_in_order_across_a_sigkill() {
    let scratch = Scratch::new("nats");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let (stream, prefix) = (format!("MP_TEST_{}_{nanos}", std::process::id()), format!("mp{nanos}"));
    let platform = scratch.0.join("platform.yaml");
    std::fs::write(
        &platform,
        format!(
            "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: lake\n    type: lake\n    root: {}\n  \
             - name: bus\n    type: nats\n    url: nats://127.0.0.1:4222\n    subjectPrefix: {prefix}\n    stream: {stream}\n    \
             events: {{ types: [io.meshplane.datacontract.*, io.meshplane.dataproduct.*] }}\n    \
             retry: {{ initialMs: 100, maxMs: 500 }}\n",
            scratch.0.join("data").display()
        ),
    )
    .unwrap();
    let db = scratch.0.join("store.db");
    let mut first = served(&db, &platform);
    wait_for_sinks(&first.url, 1);
    apply(&first.url, "sales");
    wait_for_stream(&first.url, NATS, &stream);

    // Killed right after a change: the next server publishes what was left, and the stream
    // keeps one message per event (a repeat has the same Nats-Msg-Id).
    apply(&first.url, "customers");
    let pid = first.child.id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let _ = first.child.wait();
    first.keep_db = true;
    let second = served(&db, &platform);
    delete(&second.url, "customer-360");
    let (messages, events) = wait_for_stream(&second.url, NATS, &stream);
    delete_stream(&stream);

    assert_once_in_order(&messages, &events, &prefix);
    assert!(messages.iter().any(|(_, _, e)| e["type"] == "io.meshplane.dataproduct.deleted"));
}

/// The stream holds one message per event of the feed, each the pull feed's CloudEvent, on
/// its subject, in feed order per subject.
fn assert_once_in_order(messages: &[Message], events: &BTreeMap<String, Value>, prefix: &str) {
    assert_eq!(messages.len(), events.len(), "one message per event");
    let mut last_of_subject: BTreeMap<String, i64> = BTreeMap::new();
    for (subject, id, event) in messages {
        assert_eq!(Some(event), events.get(id), "the message is the pull feed's CloudEvent");
        let kind_action = event["type"].as_str().unwrap().trim_start_matches("io.meshplane.");
        assert_eq!(*subject, format!("{prefix}.{kind_action}.{}", event["data"]["domain"].as_str().unwrap()));
        let seq = event["data"]["seq"].as_i64().unwrap();
        let before = last_of_subject.insert(event["subject"].as_str().unwrap().to_string(), seq);
        assert!(before.is_none_or(|b| b < seq), "{subject} out of order");
    }
}

/// A NATS server of the test's own with JetStream, on `port`, keeping its streams in `dir`
/// (a restarted one has them as before); killed when dropped.
struct PrivateNats(Child);

impl PrivateNats {
    fn start(dir: &Path, port: u16) -> PrivateNats {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs (./test.sh installs it)");
        let nats = PrivateNats(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server never listened on {port}");
            std::thread::sleep(Duration::from_millis(25));
        }
        nats
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn nats_delivery_survives_the_nats_server_down_for_30_s() {
    let scratch = Scratch::new("nats-down");
    let (port, store) = (free_port(), scratch.0.join("nats"));
    let nats_address = format!("127.0.0.1:{port}");
    let nats = PrivateNats::start(&store, port);
    let prefix = "meshplane";
    let platform = scratch.0.join("platform.yaml");
    std::fs::write(
        &platform,
        format!(
            "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - {{ name: lake, type: lake, root: {} }}\n  \
             - name: bus\n    type: nats\n    url: nats://{nats_address}\n    subjectPrefix: {prefix}\n    stream: EVENTS\n    \
             events: {{ types: [io.meshplane.datacontract.*, io.meshplane.dataproduct.*] }}\n    \
             retry: {{ initialMs: 100, maxMs: 1000 }}\n",
            scratch.0.join("data").display()
        ),
    )
    .unwrap();
    let s = served(&scratch.0.join("store.db"), &platform);
    wait_for_sinks(&s.url, 1);
    apply(&s.url, "sales");
    wait_for_stream(&s.url, &nats_address, "EVENTS");

    // NATS is down for 30 s while changes go on; once it is back, they arrive, once each.
    drop(nats);
    apply(&s.url, "customers");
    std::thread::sleep(Duration::from_secs(30));
    let _nats = PrivateNats::start(&store, port);
    delete(&s.url, "customer-360");
    let (messages, events) = wait_for_stream(&s.url, &nats_address, "EVENTS");
    assert_once_in_order(&messages, &events, prefix);
    let metrics = get(&s.url, "/metrics", "text/plain").text().unwrap();
    let retried = r#"meshplane_notifications_total{sink="bus",outcome="retried"} "#;
    let count: f64 = metrics.lines().find_map(|l| l.strip_prefix(retried)?.parse().ok()).unwrap_or(0.0);
    assert!(count > 0.0, "the publishes were retried while NATS was down: {metrics}");
}

/// A private Alertmanager (Debian's `prometheus-alertmanager`) on a free port, without
/// clustering, that keeps an alert for an hour unless told it ended (so that only meshplane
/// ends alerts in these tests); killed when dropped.
struct Alertmanager {
    child: Child,
    url: String,
}

impl Alertmanager {
    fn start(dir: &Path) -> Alertmanager {
        let port = free_port();
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "global:\n  resolve_timeout: 1h\nroute:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
        )
        .unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("alertmanager").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap())
            .spawn()
            .expect("prometheus-alertmanager runs (./test.sh installs it)");
        let am = Alertmanager { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reqwest::blocking::get(format!("{}/-/ready", am.url)).is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "alertmanager never got ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    /// The alerts it holds as firing.
    fn firing(&self) -> Vec<Value> {
        reqwest::blocking::get(format!("{}/api/v2/alerts", self.url)).unwrap().json().unwrap()
    }

    /// Waits until `holds` of the firing alerts; returns them.
    fn wait_for(&self, what: &str, holds: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let firing = self.firing();
            if holds(&firing) {
                return firing;
            }
            assert!(Instant::now() < deadline, "{what}: {firing:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A platform with a lake under the scratch directory and an Alertmanager taking the alerts of
/// `domains`, said to resolve alerts after 4 s (so they are posted again every 2 s).
fn alerting_platform(scratch: &Scratch, am: &Alertmanager, domains: &str) -> PathBuf {
    let path = scratch.0.join(format!("platform-{domains}.yaml"));
    let yaml = format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - {{ name: lake, type: lake, root: {} }}\n  \
         - name: am\n    type: alertmanager\n    url: {}\n    resolveTimeoutSeconds: 4\n    alerts: {{ domains: [{domains}] }}\n",
        scratch.0.join("data").display(),
        am.url
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A contract `id` of `domain` on CSV files in the lake, wanting more than two rows
/// (severity critical) and its newest row at most a day old (an SLA), and the product
/// offering it.
fn stocked(scratch: &Scratch, id: &str, domain: &str) -> String {
    let dir = scratch.0.join("data").join(id);
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: 1.0.0\nstatus: active\ndomain: {domain}\n\
         servers:\n  - {{ server: lake, type: local, environment: dev, path: {}/, format: csv }}\n\
         schema:\n  - name: items\n    properties:\n      - {{ name: sku, logicalType: string }}\n      \
         - {{ name: at, logicalType: timestamp }}\n    \
         quality:\n      - {{ id: enough-rows, metric: rowCount, mustBeGreaterThan: 2, severity: Critical }}\n\
         slaProperties:\n  - {{ property: latency, value: 1, unit: d, element: items.at }}\n\
         ---\napiVersion: v1.0.0\nkind: DataProduct\nid: shelf-{id}\nstatus: active\ndomain: {domain}\nversion: 1.0.0\n\
         outputPorts:\n  - {{ name: items, version: 1.0.0, contractId: {id} }}\n",
        dir.display()
    )
}

/// Rows written at these times are fresh and a day old and more.
const FRESH: &str = "2999-01-01T00:00:00Z";
const STALE: &str = "2001-01-01T00:00:00Z";

/// Writes `rows` rows written `at` into the contract's files and has the server test it;
/// whether it failed.
fn test_with_rows(scratch: &Scratch, url: &str, id: &str, rows: usize, at: &str) -> bool {
    let dir = scratch.0.join("data").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = (0..rows).map(|i| format!("sku-{i},{at}\n")).collect();
    std::fs::write(dir.join("items.csv"), format!("sku,at\n{body}")).unwrap();
    let (status, run) = post(url, &format!("/api/v1/contracts/{id}@v1/tests"));
    assert_eq!(status, 200, "{run}");
    run["failed"].as_bool().unwrap()
}

fn ours(firing: &[Value]) -> Vec<&Value> {
    firing.iter().filter(|a| a["labels"]["meshplane_alerter"] == "am").collect()
}

#[test]
fn alertmanager_shows_a_failing_check_firing_while_it_fails_and_resolved_once_it_passes() {
    let scratch = Scratch::new("alerts");
    let am = Alertmanager::start(&scratch.0);
    let db = scratch.0.join("store.db");
    let mut first = served(&db, &alerting_platform(&scratch, &am, "ops"));
    let documents = [stocked(&scratch, "stock", "ops"), stocked(&scratch, "elsewhere", "sales")].join("---\n");
    let applied = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/apply", first.url))
        .bearer_auth(token_for(&first.url).unwrap())
        .body(documents)
        .send()
        .unwrap();
    assert_eq!(applied.status().as_u16(), 200, "{}", applied.text().unwrap());
    wait_ready(&first.url, "contracts", "stock@v1");
    wait_ready(&first.url, "contracts", "elsewhere@v1");

    // One row: the check fails, and its alert fires with where and how bad; the other
    // domain's failing check is not this alerter's.
    assert!(test_with_rows(&scratch, &first.url, "stock", 1, FRESH));
    assert!(test_with_rows(&scratch, &first.url, "elsewhere", 1, FRESH));
    let firing = am.wait_for("the failing check's alert fires", |f| !ours(f).is_empty());
    let alerts = ours(&firing);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let labels = &alerts[0]["labels"];
    for (label, value) in [
        ("alertname", "MeshplaneContractCheckFailing"),
        ("domain", "ops"),
        ("product", "shelf-stock"),
        ("contract", "stock@v1"),
        ("server", "lake"),
        ("severity", "critical"),
    ] {
        assert_eq!(labels[label], value, "{label}: {labels}");
    }
    assert!(labels["check"].as_str().unwrap().contains("rowCount"), "{labels}");
    assert_eq!(alerts[0]["annotations"]["rule"], "enough-rows");
    assert_eq!(alerts[0]["status"]["state"], "active");

    // While it fires it is posted again (every 2 s: half the resolve timeout the platform
    // gives), each time pushing its end further.
    let (updated, ends) = (alerts[0]["updatedAt"].clone(), alerts[0]["endsAt"].clone());
    let again =
        am.wait_for("the alert is posted again", |f| ours(f).first().is_some_and(|a| a["updatedAt"] != updated));
    assert_ne!(ours(&again)[0]["endsAt"], ends);
    assert_eq!(ours(&again)[0]["startsAt"], alerts[0]["startsAt"], "the same alert, firing since the failure");
    let metrics = get(&first.url, "/metrics", "text/plain").text().unwrap();
    assert!(metrics.contains("meshplane_alerts_firing{sink=\"am\"} 1"), "{metrics}");
    let compliance = r#"meshplane_contract_sla_compliance{domain="ops",contract="stock@v1"}"#;
    assert!(metrics.contains(&format!("{compliance} 1")), "{metrics}");

    // Three rows: the check passes, and meshplane ends the alert (Alertmanager alone would
    // keep it for an hour).
    assert!(!test_with_rows(&scratch, &first.url, "stock", 3, FRESH));
    am.wait_for("the alert is resolved", |f| ours(f).is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(&first.url, "/metrics", "text/plain").text().unwrap().contains("meshplane_alerts_firing{sink=\"am\"} 0")
    {
        assert!(Instant::now() < deadline, "the gauge says no alert fires");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The newest row is years old: the SLA is breached, and that alert fires.
    assert!(test_with_rows(&scratch, &first.url, "stock", 3, STALE));
    let firing = am.wait_for("the SLA alert fires", |f| ours(f).len() == 1);
    assert_eq!(ours(&firing)[0]["labels"]["alertname"], "MeshplaneContractSlaBreached");
    assert!(get(&first.url, "/metrics", "text/plain").text().unwrap().contains(&format!("{compliance} 0")));

    // The server is killed while it fires: the next one, no longer taking this domain's
    // alerts, asks Alertmanager what the alerter left firing, and ends it.
    assert!(Command::new("kill").args(["-KILL", &first.child.id().to_string()]).status().unwrap().success());
    let _ = first.child.wait();
    first.keep_db = true;
    let second = served(&db, &alerting_platform(&scratch, &am, "finance"));
    am.wait_for("the alert the killed server left is ended", |f| ours(f).is_empty());
    drop(second);
}

/// Copies the example mesh to `dir`, giving the sales orders' row count rule a schedule of
/// every minute: the orders port holds no data, so the check fails when it runs.
fn scheduled_mesh(dir: &Path) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh");
    for domain in ["customers", "finance", "sales"] {
        std::fs::create_dir_all(dir.join(domain)).unwrap();
        for file in std::fs::read_dir(examples.join(domain)).unwrap() {
            let file = file.unwrap().path();
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(dir.join(domain).join(file.file_name().unwrap()), text).unwrap();
        }
    }
    let orders = dir.join("sales/orders.odcs.yaml");
    let text = std::fs::read_to_string(&orders).unwrap();
    let rule = "      - metric: rowCount\n        mustBeGreaterThan: 0\n";
    assert!(text.contains(rule), "the example's row count rule");
    let scheduled =
        format!("{rule}        scheduler: cron\n        schedule: '* * * * *'\n        severity: critical\n");
    std::fs::write(&orders, text.replace(rule, &scheduled)).unwrap();
    dir.to_path_buf()
}

/// The condition `type` of a stored resource, when it has one: (status, message).
fn condition(url: &str, path: &str, type_: &str) -> Option<(String, String)> {
    let body = json(url, path);
    let conditions = body["reconciled"]["conditions"].as_array().cloned().unwrap_or_default();
    let found = conditions.into_iter().find(|c| c["type"] == type_)?;
    Some((found["status"].as_str()?.to_string(), found["message"].as_str()?.to_string()))
}

#[test]
fn a_failing_scheduled_check_reaches_status_metrics_webhook_nats_and_alertmanager_by_itself() {
    let scratch = Scratch::new("scheduled");
    let am = Alertmanager::start(&scratch.0);
    let port = free_port();
    let receiver = Receiver::start(port, &scratch.0.join("hook.log"), &[]);
    std::fs::write(scratch.0.join("hook.secret"), SECRET).unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let (stream, prefix) = (format!("MP_TEST_{}_{nanos}", std::process::id()), format!("mp{nanos}"));
    let tested = "io.meshplane.datacontract.tested";
    let platform = scratch.0.join("platform.yaml");
    std::fs::write(
        &platform,
        format!(
            "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - {{ name: lake, type: lake, root: ./data }}\n  \
             - name: hook\n    type: webhook\n    url: http://127.0.0.1:{port}/hook\n    secret: {{ file: {} }}\n    \
             events: {{ types: [{tested}] }}\n  \
             - name: bus\n    type: nats\n    url: nats://127.0.0.1:4222\n    subjectPrefix: {prefix}\n    stream: {stream}\n    \
             events: {{ types: [{tested}] }}\n  \
             - {{ name: am, type: alertmanager, url: '{}' }}\n",
            scratch.0.join("hook.secret").display(),
            am.url
        ),
    )
    .unwrap();
    let s = served(&scratch.0.join("store.db"), &platform);
    wait_for_sinks(&s.url, 2);
    let mesh = scheduled_mesh(&scratch.0.join("mesh"));
    let applied = meshplane(&["apply", "--server", &s.url, "-f", mesh.to_str().unwrap()]);
    assert_eq!(applied.status.code(), Some(0), "{}", String::from_utf8_lossy(&applied.stderr));

    // Nobody runs anything: within the next minute the schedule fires, and the check fails.
    let deadline = Instant::now() + Duration::from_secs(150);
    let failing = |c: Option<(String, String)>| c.is_some_and(|(status, _)| status == "False");
    while !failing(condition(&s.url, "/api/v1/products/sales-orders", "TestsPassing")) {
        assert!(Instant::now() < deadline, "the product never showed the failing check");
        std::thread::sleep(Duration::from_millis(500));
    }
    let runs = json(&s.url, "/api/v1/contracts/orders@v2/tests");
    let run = &runs.as_array().unwrap()[0];
    assert_eq!(
        (run["failed"].as_bool(), run["report"]["trigger"]["by"].as_str()),
        (Some(true), Some("schedule")),
        "{run}"
    );
    let (_, why) = condition(&s.url, "/api/v1/contracts/orders@v2", "TestsPassing").unwrap();
    assert!(why.contains("rowCount"), "{why}");
    let (_, product_why) = condition(&s.url, "/api/v1/products/sales-orders", "TestsPassing").unwrap();
    assert!(product_why.contains("orders@v2") && product_why.contains("rowCount"), "{product_why}");

    // The metric, the webhook, the stream and Alertmanager say so too.
    let metrics = get(&s.url, "/metrics", "text/plain").text().unwrap();
    assert!(
        metrics.contains(r#"meshplane_contract_quality{domain="sales",contract="orders@v2",verdict="failing"} 1"#),
        "{metrics}"
    );
    let is_the_run = |e: &Value| {
        e["type"] == tested && e["subject"] == "DataContract/orders@v2" && e["data"]["after"]["run"] == run["seq"]
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !receiver.lines().iter().any(|l| l["answer"] == 204 && is_the_run(&l["event"])) {
        assert!(Instant::now() < deadline, "the webhook never got the failed run: {:?}", receiver.lines());
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let messages = stream_messages(NATS, &stream);
        let published = messages.iter().find(|(_, _, event)| is_the_run(event));
        if let Some((subject, _, event)) = published {
            assert_eq!(subject, &format!("{prefix}.datacontract.tested.sales"));
            assert_eq!(event["data"]["failed"], true, "{event}");
            break;
        }
        assert!(Instant::now() < deadline, "the stream never held the failed run: {messages:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let firing = am.wait_for("the alert fires", |f| {
        ours(f).iter().any(|a| a["labels"]["contract"] == "orders@v2" && a["labels"]["product"] == "sales-orders")
    });
    let alert = ours(&firing).into_iter().find(|a| a["labels"]["contract"] == "orders@v2").unwrap().clone();
    assert!(alert["labels"]["domain"] == "sales" && alert["labels"]["severity"] == "critical", "{alert}");
    delete_stream(&stream);
}
