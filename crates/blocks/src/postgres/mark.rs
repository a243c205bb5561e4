//! The mark of a schema the block made for a port, kept in the schema's comment: the
//! installation that made it, the resource it is the port of (domain, contract, uid), and the
//! fencing token of the last reconcile that wrote into it.
//!
//! The block works only in schemas it made for the resource at hand (same installation,
//! domain and contract): any other schema — someone's own, another contract's, another
//! installation's — is refused before anything is read or changed in it. A resource of the
//! same domain and name made again (a new uid) takes its retained schema back; a purge of
//! what an earlier incarnation left is refused once a newer one uses the schema. Every write
//! into a schema runs under a transaction-scoped advisory lock on it, and is refused when the
//! mark holds a larger fencing token than the call's: a replica whose lease passed to another
//! cannot overwrite its successor's work.

use meshplane_core::block::Call;
use meshplane_core::store::Record;
use sqlx::PgConnection;

use super::sql::{run, schema_comment, schema_exists};

/// How a mark begins.
const PREFIX: &str = "meshplane port";

/// How the comments of schemas made by releases before marks carried an installation began.
const LEGACY: &str = "meshplane: output port of contract ";

/// A schema's mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    pub installation: String,
    pub domain: String,
    pub contract: String,
    pub uid: String,
    pub fence: i64,
}

impl Mark {
    /// The mark of `record`'s port, written by `call`.
    pub fn of(record: &Record, call: &Call) -> Mark {
        Mark {
            installation: call.installation.clone(),
            domain: record.domain.clone(),
            contract: record.name.clone(),
            uid: record.uid.clone(),
            fence: call.token(),
        }
    }

    pub fn text(&self) -> String {
        format!(
            "{PREFIX} installation={} domain={} contract={} uid={} fence={}",
            self.installation, self.domain, self.contract, self.uid, self.fence
        )
    }

    /// A mark's text read back (ids, domains and names hold no spaces or `=`).
    pub fn parse(text: &str) -> Option<Mark> {
        let fields = text.strip_prefix(PREFIX)?;
        let value = |key: &str| {
            fields.split_whitespace().find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')).map(str::to_string)
        };
        Some(Mark {
            installation: value("installation")?,
            domain: value("domain")?,
            contract: value("contract")?,
            uid: value("uid")?,
            fence: value("fence")?.parse().ok()?,
        })
    }

    /// Whether the schema is the port of `record` for this installation (whichever
    /// incarnation of it made it).
    pub fn is_for(&self, record: &Record, call: &Call) -> bool {
        self.installation == call.installation && self.domain == record.domain && self.contract == record.name
    }
}

/// What a schema is, for one resource.
pub(super) enum Standing {
    /// There is no such schema.
    Absent,
    /// The resource's own port; `None` for a schema an earlier release made for a contract
    /// of the same name, which is taken as its own (and marked anew).
    Ours(Option<Mark>),
    /// Anything else, with why it is not the resource's.
    Foreign(String),
}

/// What `schema` is for `record`.
pub(super) async fn standing(
    conn: &mut PgConnection,
    schema: &str,
    record: &Record,
    call: &Call,
) -> Result<Standing, String> {
    if !schema_exists(conn, schema).await? {
        return Ok(Standing::Absent);
    }
    let comment = schema_comment(conn, schema).await?.unwrap_or_default();
    let refused = |why: String| {
        Ok(Standing::Foreign(format!(
            "schema {schema} exists and was not created by meshplane for {} {} ({why}); choose another schema",
            record.kind, record.name
        )))
    };
    if let Some(mark) = Mark::parse(&comment) {
        if mark.is_for(record, call) {
            return Ok(Standing::Ours(Some(mark)));
        }
        if mark.installation != call.installation {
            return refused("another meshplane installation made it".into());
        }
        return refused(format!("it is the port of DataContract {} of domain `{}`", mark.contract, mark.domain));
    }
    if comment.strip_prefix(LEGACY) == Some(record.name.as_str()) {
        return Ok(Standing::Ours(None));
    }
    refused("meshplane did not make it".into())
}

/// Serializes writes into `schema` until the transaction ends.
pub(super) async fn lock(conn: &mut PgConnection, installation: &str, schema: &str) -> Result<(), String> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("meshplane/{installation}/{schema}"))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Refuses a call whose lease is older than the last one that wrote into the schema.
pub(super) fn fenced(found: Option<&Mark>, schema: &str, call: &Call) -> Result<(), String> {
    match found {
        Some(mark) if mark.fence > call.token() => Err(format!(
            "schema {schema}: a newer reconcile (lease token {}) has written into it since this one's lease \
             (token {}) was taken; nothing was changed",
            mark.fence,
            call.token()
        )),
        _ => Ok(()),
    }
}

/// Marks `schema` as `record`'s port, with the call's token (never a smaller one than found).
pub(super) async fn write(
    conn: &mut PgConnection,
    schema: &str,
    record: &Record,
    call: &Call,
    found: Option<&Mark>,
) -> Result<(), String> {
    let mut mark = Mark::of(record, call);
    mark.fence = mark.fence.max(found.map_or(0, |m| m.fence));
    if found == Some(&mark) {
        return Ok(());
    }
    run(conn, "SELECT format('COMMENT ON SCHEMA %I IS %L', $1, $2)", &[schema, &mark.text()]).await
}

#[cfg(test)]
mod tests {
    use super::Mark;

    #[test]
    fn a_mark_reads_back_as_written_and_nothing_else_is_a_mark() {
        let mark = Mark {
            installation: "ab12".into(),
            domain: "finance".into(),
            contract: "ledger@v1".into(),
            uid: "f00d".into(),
            fence: 7,
        };
        assert_eq!(Mark::parse(&mark.text()), Some(mark));
        for text in [
            "",
            "meshplane: output port of contract ledger@v1",
            "meshplane port installation=ab12 domain=finance contract=ledger@v1 uid=f00d",
            "meshplane port installation=ab12 domain=finance contract=ledger@v1 uid=f00d fence=x",
            "a comment of someone's own",
        ] {
            assert_eq!(Mark::parse(text), None, "{text}");
        }
    }
}
