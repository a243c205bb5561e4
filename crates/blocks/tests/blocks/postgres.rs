//! The PostgreSQL block against the real server: provision, observe, drift, evolution,
//! hostile names, views, and cleanup by deletion policy; every step idempotent.

use std::sync::Arc;

use meshplane_blocks::platform::Platform;
use meshplane_blocks::postgres::PostgresBlock;
use meshplane_blocks::storage::Storage;
use meshplane_core::block::{Call, Fence};
use meshplane_core::block::{Leftover, Provisioner};
use meshplane_core::resource::Resource;
use meshplane_core::store::Record;
use meshplane_core::testing::{Place, postgres};
use sqlx::{Connection, Executor, PgConnection, Row};

/// A stored-like record of a contract text.
pub fn record(text: &str) -> Record {
    let resource = Resource::from_loaded(&meshplane_spec::load(text).documents.remove(0)).unwrap();
    Record::created(resource, "u1")
}

/// A call of the tests' installation, outside any lease.
pub fn call() -> Call {
    Call::unfenced("t1")
}

/// A call under a lease with fencing token `token`.
fn fenced(token: i64) -> Call {
    Call { installation: "t1".into(), fence: Some(Fence { owner: "replica".into(), token }) }
}

/// What the leftovers say, for people.
pub fn notes(left: Vec<Leftover>) -> Vec<String> {
    left.into_iter().map(|l| l.note).collect()
}

fn database(place: &Place) -> String {
    place.url.rsplit('/').next().unwrap().to_string()
}

fn platform(place: &Place, policy: &str) -> Arc<Platform> {
    let text = format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: warehouse\n    type: postgres\n\
         \x20   host: 127.0.0.1\n    database: {}\n    user: postgres\n    deletionPolicy: {policy}\n",
        database(place)
    );
    Arc::new(Platform::from_yaml(&text).unwrap())
}

fn block(place: &Place, policy: &str) -> Storage<PostgresBlock> {
    let platform = platform(place, policy);
    let config = platform.blocks[0].typed::<meshplane_blocks::platform::PostgresConfig>().unwrap();
    Storage(PostgresBlock::new("warehouse", config, Arc::clone(&platform)).unwrap())
}

/// A contract on the test database, in `schema`.
fn contract(place: &Place, version: &str, schema: &str, properties: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: orders\nversion: {version}\nstatus: active\ndomain: sales\n\
         servers:\n  - {{ server: warehouse, type: postgres, environment: dev, host: 127.0.0.1, port: 5432, \
         database: {}, schema: {schema} }}\n\
         schema:\n  - name: orders\n    description: \"One row per order; it's the book of record\"\n    properties:\n{properties}",
        database(place)
    )
}

const ORDERS: &str = "      - { name: id, logicalType: integer, primaryKey: true, description: the key }\n\
                      \x20     - { name: email, logicalType: string, required: true, unique: true }\n\
                      \x20     - { name: amount, physicalType: 'numeric(12, 2)' }\n\
                      \x20     - { name: placed_at, logicalType: timestamp }\n";

async fn connect(place: &Place) -> PgConnection {
    PgConnection::connect(&place.url).await.unwrap()
}

/// (column, type, nullable) of a table, in order.
async fn table(conn: &mut PgConnection, schema: &str, table: &str) -> Vec<(String, String, bool)> {
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_creates_the_port_and_a_second_run_changes_nothing() {
    let place = postgres().await;
    let block = block(&place, "retain");
    let orders = record(&contract(&place, "1.0.0", "orders_v1", ORDERS));
    assert!(block.concerns(&orders));
    let first = block.provision(&orders, &call()).await.unwrap();
    assert_eq!(first.summary, "created schema orders_v1, created table orders_v1.orders");
    assert!(first.drift.is_empty(), "{:?}", first.drift);
    let mut conn = connect(&place).await;
    assert_eq!(
        table(&mut conn, "orders_v1", "orders").await,
        [
            ("id".into(), "bigint".into(), false),
            ("email".into(), "text".into(), false),
            ("amount".into(), "numeric(12,2)".into(), true),
            ("placed_at".into(), "timestamp with time zone".into(), true),
        ]
    );
    let constraints: Vec<String> = sqlx::query(
        "SELECT contype::text FROM pg_constraint WHERE conrelid = 'orders_v1.orders'::regclass ORDER BY contype",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(constraints, ["p", "u"], "a primary key and a unique constraint");
    let comment: String =
        sqlx::query("SELECT obj_description('orders_v1.orders'::regclass)").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(comment, "One row per order; it's the book of record");
    let again = block.provision(&orders, &call()).await.unwrap();
    assert_eq!((again.summary.as_str(), again.drift.len()), ("schema orders_v1 is as declared", 0));
    // Another major version is its own schema, beside the first.
    let v2 = record(&contract(&place, "2.0.0", "orders_v2", ORDERS));
    assert_eq!(
        block.provision(&v2, &call()).await.unwrap().summary,
        "created schema orders_v2, created table orders_v2.orders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_never_altered_and_optional_columns_are_added() {
    let place = postgres().await;
    let block = block(&place, "retain");
    block.provision(&record(&contract(&place, "1.0.0", "orders_v1", ORDERS)), &call()).await.unwrap();
    let mut conn = connect(&place).await;
    conn.execute("INSERT INTO orders_v1.orders VALUES (1, 'a@example.com', 10.50, now())").await.unwrap();
    conn.execute("ALTER TABLE orders_v1.orders ADD COLUMN note text, ALTER COLUMN placed_at TYPE date").await.unwrap();
    let with_more = format!(
        "{ORDERS}      - {{ name: channel, logicalType: string }}\n      - {{ name: region, logicalType: string, required: true }}\n"
    );
    let evolved = block.provision(&record(&contract(&place, "1.1.0", "orders_v1", &with_more)), &call()).await.unwrap();
    assert_eq!(evolved.summary, "added column orders_v1.orders.channel");
    assert_eq!(
        evolved.drift,
        [
            "orders_v1.orders: column `placed_at` is date, declared timestamp with time zone",
            "orders_v1.orders: column `region` is missing (not added: it is required, unique or in a view)",
            "orders_v1.orders: column `note` is not declared",
        ]
    );
    let columns: Vec<String> = table(&mut conn, "orders_v1", "orders").await.into_iter().map(|c| c.0).collect();
    assert_eq!(columns, ["id", "email", "amount", "placed_at", "note", "channel"], "nothing else was altered");
    let kept: i64 = sqlx::query("SELECT count(*) FROM orders_v1.orders").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(kept, 1, "the data is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_quoted_and_bad_types_refused_before_anything_is_made() {
    let place = postgres().await;
    let block = block(&place, "retain");
    let mut conn = connect(&place).await;
    conn.execute("CREATE TABLE public.victim (x int)").await.unwrap();
    let hostile = "      - { name: \"a\\\"; DROP TABLE public.victim; --\", logicalType: string }\n\
                   \x20     - { name: \"O'Brien col\", logicalType: integer, description: \"it's '; DROP TABLE public.victim; --\" }\n";
    let text = contract(&place, "1.0.0", "\"we\\\"ird; drop\"", hostile);
    block.provision(&record(&text), &call()).await.unwrap();
    let columns: Vec<String> = table(&mut conn, "we\"ird; drop", "orders").await.into_iter().map(|c| c.0).collect();
    assert_eq!(columns, ["a\"; DROP TABLE public.victim; --", "O'Brien col"]);
    assert_eq!(table(&mut conn, "public", "victim").await.len(), 1, "the victim table is still there");

    let bad = contract(
        &place,
        "1.0.0",
        "never_made",
        "      - { name: x, physicalType: \"text); DROP TABLE public.victim; --\" }\n",
    );
    let err = block.provision(&record(&bad), &call()).await.unwrap_err().to_string();
    assert!(err.contains("is not one meshplane creates in PostgreSQL"), "{err}");
    let exotic = contract(&place, "1.0.0", "never_made", "      - { name: x, physicalType: money }\n");
    assert!(block.provision(&record(&exotic), &call()).await.unwrap_err().to_string().contains("`money`"));
    let made: Option<i32> = sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = 'never_made'")
        .fetch_optional(&mut conn)
        .await
        .unwrap()
        .map(|r| r.get(0));
    assert_eq!(made, None, "a refused contract makes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_is_made_only_over_a_table_the_contract_declares() {
    let place = postgres().await;
    let block = block(&place, "retain");
    let mut conn = connect(&place).await;
    conn.execute("CREATE TABLE public.raw_orders (id bigint, email text, secret text)").await.unwrap();
    // A view of the contract's own table, in its own schema, exposing two of its columns.
    let text = contract(&place, "1.0.0", "orders_v1", ORDERS).replace(
        "schema:\n  - name: orders\n",
        "schema:\n  - name: public_orders\n    physicalName: orders_v1.orders\n    properties:\n\
         \x20     - { name: id, logicalType: integer }\n      - { name: email, logicalType: string }\n  - name: orders\n",
    );
    let done = block.provision(&record(&text), &call()).await.unwrap();
    assert_eq!(
        done.summary,
        "created schema orders_v1, created table orders_v1.orders, created view orders_v1.public_orders"
    );
    conn.execute("INSERT INTO orders_v1.orders (id, email, amount) VALUES (1, 'a@b', 3)").await.unwrap();
    let row = sqlx::query("SELECT * FROM orders_v1.public_orders").fetch_one(&mut conn).await.unwrap();
    assert_eq!(row.columns().len(), 2, "only the declared columns are exposed");
    // Over anything else — another schema's table, a catalog — nothing is made.
    for source in ["public.raw_orders", "pg_catalog.pg_authid", "orders_v1.nothing", "other_v1.orders"] {
        let elsewhere = text.replace("physicalName: orders_v1.orders", &format!("physicalName: {source}"));
        let elsewhere = elsewhere.replace("schema: orders_v1", "schema: views_v1");
        let err = block.provision(&record(&elsewhere), &call()).await.unwrap_err().to_string();
        assert!(err.contains(&format!("physicalName `{source}` is not a table of this contract")), "{err}");
    }
    let made: Option<i32> = sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = 'views_v1'")
        .fetch_optional(&mut conn)
        .await
        .unwrap()
        .map(|r| r.get(0));
    assert_eq!(made, None);
}

/// A schema the block did not make for this contract — someone's own, another contract's,
/// another installation's — is refused before anything is read or changed in it; cleaning up
/// leaves nothing, and no purge reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_schemas_made_for_the_contract_are_touched() {
    let place = postgres().await;
    let block = block(&place, "delete");
    let mut conn = connect(&place).await;
    conn.execute("CREATE SCHEMA theirs; CREATE TABLE theirs.orders (id bigint)").await.unwrap();
    let ledger = record(&contract(&place, "1.0.0", "ledger_v1", ORDERS).replace("id: orders", "id: ledger"));
    block.provision(&ledger, &call()).await.unwrap();
    let other_installation = Call::unfenced("t2");
    for (schema, by, why) in [
        ("theirs", &call(), "meshplane did not make it"),
        ("ledger_v1", &call(), "it is the port of DataContract ledger@v1 of domain `sales`"),
        ("ledger_v1", &other_installation, "another meshplane installation made it"),
    ] {
        let grab = record(&contract(&place, "1.0.0", schema, ORDERS).replace("id: orders", "id: grab"));
        let err = block.provision(&grab, by).await.unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "schema {schema} exists and was not created by meshplane for DataContract grab@v1 ({why}); choose another schema"
            )
        );
        assert_eq!(block.cleanup(&grab, by).await.unwrap(), [], "nothing of it is left");
        let access = meshplane_core::access::AccessSync {
            installation: by.installation.clone(),
            grants: vec![],
            releasing: false,
        };
        assert!(block.sync_access(&grab, &access, by).await.is_err(), "no grant is made or taken back there");
        let forged = serde_json::json!({ "schema": schema, "table": null, "domain": "sales", "contract": "grab@v1", "uid": "u1" });
        let refused = block.purge(&forged.to_string(), by).await.unwrap_err().to_string();
        assert!(refused.contains("it is not purged"), "{refused}");
    }
    assert_eq!(table(&mut conn, "theirs", "orders").await.len(), 1, "their table is untouched");
    assert_eq!(table(&mut conn, "ledger_v1", "orders").await.len(), 4, "the ledger's table is untouched");
}

/// The same contract made again (a new uid, same domain) takes its retained schema back; a
/// purge of what the earlier one left is then refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_contract_takes_its_schema_back_and_the_old_orphan_is_not_purged() {
    let place = postgres().await;
    let block = block(&place, "retain");
    let first = record(&contract(&place, "1.0.0", "orders_v1", ORDERS));
    block.provision(&first, &call()).await.unwrap();
    let left = block.cleanup(&first, &call()).await.unwrap();
    let mut again = first.clone();
    again.uid = "u2".into();
    assert_eq!(block.provision(&again, &call()).await.unwrap().summary, "schema orders_v1 is as declared");
    let refused = block.purge(&left[0].place, &call()).await.unwrap_err().to_string();
    assert!(refused.contains("a newer resource uses it now"), "{refused}");
    let mut conn = connect(&place).await;
    assert_eq!(table(&mut conn, "orders_v1", "orders").await.len(), 4);
}

/// A call under an older lease than the last one that wrote into the schema changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_under_a_stale_lease_is_refused() {
    let place = postgres().await;
    let block = block(&place, "retain");
    let orders = record(&contract(&place, "1.0.0", "orders_v1", ORDERS));
    block.provision(&orders, &fenced(5)).await.unwrap();
    let more = format!("{ORDERS}      - {{ name: channel, logicalType: string }}\n");
    let evolved = record(&contract(&place, "1.1.0", "orders_v1", &more));
    let err = block.provision(&evolved, &fenced(4)).await.unwrap_err().to_string();
    assert!(err.contains("a newer reconcile (lease token 5)"), "{err}");
    assert!(block.cleanup(&orders, &fenced(4)).await.is_err());
    let mut conn = connect(&place).await;
    assert_eq!(table(&mut conn, "orders_v1", "orders").await.len(), 4, "the stale call added nothing");
    assert_eq!(block.provision(&evolved, &fenced(6)).await.unwrap().summary, "added column orders_v1.orders.channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_keeps_data_under_retain_and_drops_only_its_own_under_delete() {
    let place = postgres().await;
    let orders = record(&contract(&place, "1.0.0", "orders_v1", ORDERS));
    assert_eq!(block(&place, "retain").cleanup(&orders, &call()).await.unwrap(), [], "never provisioned");
    let retain = block(&place, "retain");
    retain.provision(&orders, &call()).await.unwrap();
    let kept = notes(retain.cleanup(&orders, &call()).await.unwrap());
    assert_eq!(kept, [format!("schema orders_v1 on 127.0.0.1/{} (the retain policy keeps it)", database(&place))]);
    let mut conn = connect(&place).await;
    assert_eq!(table(&mut conn, "orders_v1", "orders").await.len(), 4, "retained");

    let delete = block(&place, "delete");
    conn.execute("INSERT INTO orders_v1.orders (id, email) VALUES (1, 'a@example.com')").await.unwrap();
    let with_data = delete.cleanup(&orders, &call()).await.unwrap();
    assert_eq!(notes(with_data.clone()), ["table orders_v1.orders (it holds data: purge it to drop it)"]);
    assert_eq!(table(&mut conn, "orders_v1", "orders").await.len(), 4, "data is never dropped by a cleanup");
    // A purge is what drops data: the table, then the schema meshplane made, now empty.
    delete.purge(&with_data[0].place, &call()).await.unwrap();
    assert!(table(&mut conn, "orders_v1", "orders").await.is_empty(), "purged");
    let schema: Option<i32> = sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = 'orders_v1'")
        .fetch_optional(&mut conn)
        .await
        .unwrap()
        .map(|r| r.get(0));
    assert_eq!(schema, None);
    delete.purge(&with_data[0].place, &call()).await.unwrap();
    // An empty table is dropped by the cleanup itself.
    delete.provision(&orders, &call()).await.unwrap();
    assert_eq!(delete.cleanup(&orders, &call()).await.unwrap(), []);
    assert!(table(&mut conn, "orders_v1", "orders").await.is_empty(), "an empty table is dropped");
    assert_eq!(delete.cleanup(&orders, &call()).await.unwrap(), [], "idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_endpoint_is_not_the_blocks_is_not_bound_and_never_reached() {
    let place = postgres().await;
    let block = block(&place, "retain");
    let platform = platform(&place, "retain");
    let text = contract(&place, "1.0.0", "orders_v1", ORDERS);
    let other = text.replace(&format!("database: {}", database(&place)), "database: elsewhere");
    for (changed, message) in [
        (
            text.replace("host: 127.0.0.1", "host: db.example.com"),
            "server `warehouse` (type postgres): host db.example.com is not block `warehouse`'s (127.0.0.1)"
                .to_string(),
        ),
        (
            text.replace("port: 5432", "port: 6543"),
            "server `warehouse` (type postgres): port 6543 is not block `warehouse`'s (5432)".to_string(),
        ),
        (
            other,
            format!(
                "server `warehouse` (type postgres): database elsewhere is not block `warehouse`'s ({})",
                database(&place)
            ),
        ),
    ] {
        let orders = record(&changed);
        assert_eq!(meshplane_blocks::binding::problems(&platform, orders.contract().unwrap()), [message]);
        assert!(!block.concerns(&orders), "the block is not handed a server it does not hold");
    }
}

#[test]
fn servers_bind_by_name_or_type_and_only_in_the_platform_environment() {
    let platform = Platform::from_yaml(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n\
         \x20 - { name: a, type: postgres, host: h, database: d, user: u }\n\
         \x20 - { name: b, type: postgres, host: h, database: d, user: u }\n",
    )
    .unwrap();
    let text = |servers: &str| {
        format!(
            "apiVersion: v3.1.0\nkind: DataContract\nid: c\nversion: 1.0.0\nstatus: active\ndomain: d\nservers:\n{servers}"
        )
    };
    let problems =
        |servers: &str| meshplane_blocks::binding::problems(&platform, record(&text(servers)).contract().unwrap());
    let pg = "type: postgres, host: h, port: 5432, database: d, schema: s";
    assert!(problems(&format!("  - {{ server: a, {pg}, environment: dev }}\n")).is_empty());
    assert!(problems(&format!("  - {{ server: x, {pg}, environment: prod }}\n")).is_empty(), "another environment");
    assert_eq!(
        problems(&format!("  - {{ server: x, {pg}, environment: dev }}\n")),
        ["server `x` (type postgres): several blocks could take it (a, b); name the server after one of them"]
    );
    assert_eq!(
        problems("  - { server: x, type: s3, location: 's3://b/k', environment: dev }\n"),
        ["server `x` (type s3): no block of this platform takes s3 servers"]
    );
}
