//! The files executor: Parquet, CSV and NDJSON (one file, a directory or a glob) read with
//! Apache DataFusion, measured by meshplane's kernels in one scan per schema object.
//!
//! DataFusion does the reading: listing, schema inference, projection, and splitting a file
//! into partitions that decode in parallel. Each partition feeds its own set of kernels on its
//! own task; the kernels are merged at the end, so every metric of an object costs one pass.
//!
//! SQL rules run in the same session, which holds only the contract's objects: DDL, DML and
//! statements (COPY, SET, ...) are refused by DataFusion's `SQLOptions`, URL tables are off,
//! so a rule can read nothing but those objects. A rule that only counts the object's rows
//! under a condition is measured inside the object's scan instead ([`crate::counted`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::stats::Precision;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{
    SendableRecordBatchStream, StatisticsArgs, StatisticsContext, execute_stream_partitioned,
};
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::counted::{self, CountedKernel};
use crate::dictionary::{self, Dictionaries};
use crate::kernel::{Kernel, Measured};
use crate::plan::{Measure, lead_partners};
use crate::source::{Ask, ColumnKind, Scan, Source};

/// A file format meshplane reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    NdJson,
}

impl Format {
    /// The format of an ODCS server's `format`, or of a path's extension.
    pub fn parse(name: &str) -> Option<Format> {
        match name.trim().trim_start_matches('.').to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            "json" | "ndjson" | "jsonl" => Some(Format::NdJson),
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => ".parquet",
            Format::Csv => ".csv",
            Format::NdJson => ".json",
        }
    }

    /// The format's name, as [`Format::parse`] reads it.
    pub fn name(self) -> &'static str {
        &self.extension()[1..]
    }

    /// How DataFusion lists and reads the format; CSV and NDJSON types are inferred from the
    /// first `infer_records` records.
    fn listing(self, delimiter: u8, infer_records: usize) -> ListingOptions {
        let format: Arc<dyn FileFormat> = match self {
            Format::Parquet => Arc::new(ParquetFormat::default()),
            Format::Csv => Arc::new(
                CsvFormat::default()
                    .with_has_header(true)
                    .with_delimiter(delimiter)
                    .with_schema_infer_max_rec(infer_records),
            ),
            Format::NdJson => Arc::new(JsonFormat::default().with_schema_infer_max_rec(infer_records)),
        };
        ListingOptions::new(format).with_file_extension(self.extension())
    }
}

/// Where one object's data is: a file, a directory, or a glob; local or `s3://bucket/...`.
#[derive(Clone, Debug)]
pub struct Location {
    pub path: String,
    pub format: Format,
}

/// How to reach an S3-compatible object store. Credentials come from the environment, never
/// from the contract.
#[derive(Clone, Debug, Default)]
pub struct S3Config {
    /// `endpointUrl` of the server; AWS when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The bucket of an `s3://bucket/key` path, and the key.
fn split_s3(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("s3://")?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// Files of a contract's server, read with DataFusion.
pub struct FileSource {
    ctx: SessionContext,
    /// Table name (physical name) to its location.
    locations: Vec<(String, Location)>,
    delimiter: u8,
    registered: Vec<String>,
    /// Tables whose Parquet files store text columns as dictionaries, read as such.
    dictionaries: HashMap<String, Dictionaries>,
    /// The cores a scan runs on.
    cores: usize,
    pub sql_timeout: Duration,
    /// How many CSV or NDJSON records type inference reads. A test reads them all: a wrong
    /// value after the first thousand rows must make the column text (and the type check
    /// fail), not break the scan.
    pub infer_records: usize,
}

impl FileSource {
    /// A source over `locations`; `s3` reaches the buckets of `s3://` locations.
    pub fn new(locations: Vec<(String, Location)>, delimiter: u8, s3: Option<&S3Config>) -> Result<Self, String> {
        // Files split into more partitions than cores, so that tasks of unequal size (row
        // groups do not divide evenly) still keep every core busy to the end. Partitions are
        // merged in order, which keeps ordered keys ordered (see the duplicate kernel).
        // Each partition reads one contiguous range of the file, in order: DataFusion's work
        // stealing would hand row groups to whichever partition is idle, and a partition's keys
        // would then come with gaps that another partition fills (see the duplicate kernel).
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut config = SessionConfig::new().with_target_partitions(cores * 4).with_information_schema(false);
        config.options_mut().execution.enable_file_stream_work_stealing = false;
        let ctx = SessionContext::new_with_config(config);
        let mut buckets: Vec<&str> = locations.iter().filter_map(|(_, l)| split_s3(&l.path)).map(|(b, _)| b).collect();
        buckets.dedup();
        for bucket in buckets {
            let store = s3_store(bucket, s3.cloned().unwrap_or_default())?;
            let url = url::Url::parse(&format!("s3://{bucket}")).map_err(|e| e.to_string())?;
            ctx.register_object_store(&url, store);
        }
        Ok(FileSource {
            ctx,
            locations,
            delimiter,
            registered: vec![],
            dictionaries: HashMap::new(),
            cores,
            sql_timeout: Duration::from_secs(30),
            infer_records: usize::MAX,
        })
    }

    /// Whether a location holds any file: a local path (or any match of a glob), or any
    /// object under an S3 prefix.
    async fn exists(&self, path: &str) -> Result<bool, String> {
        let Some((bucket, key)) = split_s3(path) else { return Ok(local_exists(path)) };
        let url = ObjectStoreUrl::parse(format!("s3://{bucket}")).map_err(|e| e.to_string())?;
        let store = self.ctx.runtime_env().object_store(url).map_err(|e| e.to_string())?;
        let prefix = key[..key.find(['*', '?', '[']).unwrap_or(key.len())].trim_end_matches('/');
        let prefix = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix));
        match store.list(prefix.as_ref()).next().await {
            Some(Ok(_)) => Ok(true),
            None => Ok(false),
            Some(Err(e)) => Err(format!("cannot list {path}: {e}")),
        }
    }

    fn location(&self, table: &str) -> Option<&Location> {
        self.locations.iter().find(|(t, _)| t == table).map(|(_, l)| l)
    }

    /// Registers every object whose files exist, so a SQL rule may join them.
    async fn register_all(&mut self) -> Result<(), String> {
        let tables: Vec<String> = self.locations.iter().map(|(t, _)| t.clone()).collect();
        for table in tables {
            self.register(&table).await?;
        }
        Ok(())
    }

    /// Registers `table` when its files exist; false when they do not.
    async fn register(&mut self, table: &str) -> Result<bool, String> {
        if self.registered.iter().any(|t| t == table) {
            return Ok(true);
        }
        let Some(location) = self.location(table).cloned() else { return Ok(false) };
        if !self.exists(&location.path).await? {
            return Ok(false);
        }
        let url = table_url(&location.path).map_err(|e| format!("cannot read {}: {e}", location.path))?;
        let options = location.format.listing(self.delimiter, self.infer_records);
        let state = self.ctx.state();
        let read = async {
            let mut schema = options.infer_schema(&state, &url).await?;
            // A footer that cannot be read here fails the scan below, with its reason.
            let dictionaries = match location.format {
                Format::Parquet => dictionary::find(&state, &url, &schema).await.ok().flatten(),
                _ => None,
            };
            if let Some(d) = &dictionaries {
                schema = Arc::clone(&d.table);
            }
            let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
            self.ctx.register_table(table, Arc::new(ListingTable::try_new(config)?))?;
            Ok::<_, DataFusionError>(dictionaries)
        };
        let dictionaries = read.await.map_err(|e| format!("cannot read {}: {e}", location.path))?;
        if let Some(d) = dictionaries {
            self.dictionaries.insert(table.to_string(), d);
        }
        self.registered.push(table.to_string());
        Ok(true)
    }
}

impl FileSource {
    /// What the Parquet footers of a table's files say exactly, so a scan need not read it:
    /// a finished kernel per measure they answer (null counts, newest and oldest dates and
    /// timestamps), and the row count. Other formats keep no statistics.
    async fn statistics(
        &self,
        table: &str,
        measures: &[Measure],
        samples: usize,
    ) -> (Vec<Option<Kernel>>, Option<u64>) {
        let none = || (measures.iter().map(|_| None).collect(), None);
        if self.location(table).is_none_or(|l| l.format != Format::Parquet) {
            return none();
        }
        let Ok(df) = self.ctx.table(table).await else { return none() };
        let schema = df.schema().as_arrow().clone();
        let Ok(plan) = df.create_physical_plan().await else { return none() };
        let Ok(stats) = StatisticsContext::new().compute(plan.as_ref(), &StatisticsArgs::new()) else { return none() };
        let rows = match stats.num_rows {
            Precision::Exact(n) => Some(n as u64),
            _ => None,
        };
        let known = measures
            .iter()
            .map(|m| match m.columns().as_slice() {
                [column] => {
                    let stats = stats.column_statistics.get(schema.index_of(column).ok()?)?;
                    Kernel::from_statistics(m, &schema, stats, samples)
                }
                _ => None,
            })
            .collect();
        (known, rows)
    }
}

/// What one scan of an object measures.
struct Pass<'a> {
    table: &'a str,
    measures: &'a [Measure],
    /// Per measure: the condition of a SQL rule counted in the scan.
    conditions: &'a [Option<Option<Expr>>],
    ask: &'a Ask<'a>,
    /// Per measure: the measure it also answers (see [`lead_partners`]).
    leads: &'a [Option<usize>],
}

impl FileSource {
    /// One pass over the columns the `wanted` measures read: each partition feeds its own
    /// kernels on its own task, and the partitions' kernels are merged. Per measure: its
    /// kernel (or why it failed), `None` when not wanted. `rescan`: kernels for a second
    /// pass ([`Kernel::rescan`]).
    async fn pass(
        &self,
        pass: &Pass<'_>,
        wanted: &[bool],
        rescan: bool,
    ) -> Result<(u64, Vec<Option<Result<Kernel, String>>>), String> {
        let (table, measures, samples) = (pass.table, pass.measures, pass.ask.samples);
        let mut columns: Vec<String> = Vec::new();
        for i in (0..measures.len()).filter(|&i| wanted[i]) {
            let condition = &pass.conditions[i];
            let read = measures[i]
                .columns()
                .into_iter()
                .map(str::to_string)
                .chain(condition.iter().flat_map(counted::columns));
            for c in read {
                if !columns.contains(&c) {
                    columns.push(c);
                }
            }
        }
        let df = self.ctx.table(table).await.map_err(|e| e.to_string())?;
        let df =
            df.select_columns(&columns.iter().map(String::as_str).collect::<Vec<_>>()).map_err(|e| e.to_string())?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let build = |i: usize| match &pass.conditions[i] {
            Some(condition) => CountedKernel::new(&self.ctx, table, &schema, condition.clone()).map(Kernel::Counted),
            None if pass.leads[i].is_some() => Kernel::with_lead(&measures[i], &schema, samples, !rescan),
            None if rescan => Kernel::rescan(&measures[i], &schema, samples),
            None => Kernel::new(&measures[i], &schema, samples),
        };
        let streams = match self.dictionaries.get(table) {
            Some(dictionaries) => {
                let plan = df.create_physical_plan().await.map_err(|e| e.to_string())?;
                let plan = dictionaries.apply(plan).map_err(|e| e.to_string())?;
                execute_stream_partitioned(plan, self.ctx.task_ctx()).map_err(|e| e.to_string())?
            }
            None => df.execute_stream_partitioned().await.map_err(|e| e.to_string())?,
        };
        let mut tasks = Vec::new();
        // Partitions are read a few at a time, one more than there are cores (so that none
        // sits idle while another ends): each holds the bytes of the row group it reads, and
        // reading more of them at once would cost memory and page faults, not time.
        let reading = Arc::new(Semaphore::new(self.cores + 1));
        // Kernels that cannot be built (a bad rule) report their error once, below.
        let first: Vec<Option<Kernel>> = wanted.iter().enumerate().map(|(i, w)| w.then(|| build(i).ok())?).collect();
        for stream in streams {
            let kernels = first
                .iter()
                .zip(measures)
                .map(|(k, m)| k.as_ref().and_then(|k| k.fork(m, &schema, samples).ok()))
                .collect::<Vec<_>>();
            tasks.push(tokio::spawn(feed(stream, kernels, Arc::clone(pass.ask.progress), Arc::clone(&reading))));
        }
        let mut rows = 0u64;
        let mut merged: Vec<Option<Kernel>> = Vec::new();
        let mut errors: Vec<Option<String>> = vec![None; measures.len()];
        for task in tasks {
            let (n, kernels, errs) = task.await.map_err(|e| e.to_string())??;
            rows += n;
            for (i, e) in errs.into_iter().enumerate() {
                if e.is_some() {
                    errors[i] = e;
                }
            }
            if merged.is_empty() {
                merged = kernels;
                continue;
            }
            for ((slot, k), error) in merged.iter_mut().zip(kernels).zip(errors.iter_mut()) {
                match (slot.as_mut(), k) {
                    (Some(a), Some(b)) => {
                        if let Err(e) = a.merge(b) {
                            *error = Some(e);
                            *slot = None;
                        }
                    }
                    _ => *slot = None,
                }
            }
        }
        let kernels = (0..measures.len())
            .map(|i| {
                if !wanted[i] {
                    return None;
                }
                Some(match (errors[i].take(), merged.get_mut(i).and_then(Option::take)) {
                    (Some(e), _) => Err(e),
                    (None, Some(k)) => Ok(k),
                    // No partition ran (an empty table), or the kernel could not be built.
                    (None, None) => build(i),
                })
            })
            .collect();
        Ok((rows, kernels))
    }
}

/// One partition's batches into its kernels, once `reading` lets it start: its rows, the
/// kernels, and the error of each kernel that failed (which then stops).
async fn feed(
    mut stream: SendableRecordBatchStream,
    mut kernels: Vec<Option<Kernel>>,
    progress: Arc<AtomicU64>,
    reading: Arc<Semaphore>,
) -> Result<(u64, Vec<Option<Kernel>>, Vec<Option<String>>), String> {
    let _turn = reading.acquire_owned().await.map_err(|e| e.to_string())?;
    let mut rows = 0u64;
    let mut errors: Vec<Option<String>> = vec![None; kernels.len()];
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        rows += batch.num_rows() as u64;
        progress.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        for (k, err) in kernels.iter_mut().zip(errors.iter_mut()) {
            if let Some(kernel) = k
                && let Err(e) = kernel.update(&batch)
            {
                *err = Some(e);
                *k = None;
            }
        }
    }
    Ok((rows, kernels, errors))
}

/// What contract SQL may do: query, nothing else.
fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

impl FileSource {
    /// The condition of a SQL rule on `table` that counts its rows (see [`counted`]), planned
    /// under the same read-only options as any contract SQL; `None` for any other rule.
    async fn counted_condition(&self, table: &str, query: &str) -> Option<Option<Expr>> {
        if !self.registered.iter().any(|t| t == table) {
            return None;
        }
        let plan = self.ctx.state().create_logical_plan(query).await.ok()?;
        read_only().verify_plan(&plan).ok()?;
        counted::condition(&plan, table)
    }
}

/// The listing URL of a location. DataFusion reads globs in local paths itself; in an
/// `s3://` URL the glob is split off here: the prefix is listed, the glob filters what follows.
fn table_url(path: &str) -> datafusion::error::Result<ListingTableUrl> {
    let Some(rest) = path.strip_prefix("s3://") else { return ListingTableUrl::parse(absolute(path)) };
    let Some(star) = rest.find(['*', '?', '[']) else {
        return ListingTableUrl::parse(path);
    };
    let cut = rest[..star].rfind('/').map_or(0, |i| i + 1);
    let prefix =
        url::Url::parse(&format!("s3://{}", &rest[..cut])).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let glob = glob::Pattern::new(&rest[cut..]).map_err(|e| DataFusionError::External(Box::new(e)))?;
    ListingTableUrl::try_new(prefix, Some(glob))
}

/// An object store on one bucket of an S3-compatible server.
pub fn s3_store(bucket: &str, c: S3Config) -> Result<Arc<dyn object_store::ObjectStore>, String> {
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(c.region.unwrap_or_else(|| "us-east-1".into()));
    if let Some(endpoint) = c.endpoint {
        b = b.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
    }
    if let (Some(key), Some(secret)) = (c.access_key_id, c.secret_access_key) {
        b = b.with_access_key_id(key).with_secret_access_key(secret);
    }
    Ok(Arc::new(b.build().map_err(|e| format!("cannot reach bucket {bucket}: {e}"))?))
}

/// Whether a local path, or any file a glob names, exists.
fn local_exists(path: &str) -> bool {
    if path.contains(['*', '?', '[']) {
        let dir = path[..path.find(['*', '?', '[']).unwrap_or(0)].rsplit_once('/').map_or(".", |(d, _)| d);
        let dir = if dir.is_empty() { "/" } else { dir };
        return Path::new(dir).is_dir();
    }
    Path::new(path).exists()
}

fn absolute(path: &str) -> String {
    let p = Path::new(path);
    let joined = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
    let text = joined.to_string_lossy().into_owned();
    if p.is_dir() && !text.ends_with('/') { format!("{text}/") } else { text }
}

impl Source for FileSource {
    async fn columns(&mut self, table: &str) -> Result<Option<Vec<(String, ColumnKind)>>, String> {
        if !self.register(table).await? {
            return Ok(None);
        }
        let inferred = self.location(table).is_some_and(|l| l.format != Format::Parquet);
        let df = self.ctx.table(table).await.map_err(|e| e.to_string())?;
        let columns = df
            .schema()
            .fields()
            .iter()
            .map(|f| {
                // A dictionary is how meshplane reads the column, not what the file holds.
                let data_type = match f.data_type() {
                    DataType::Dictionary(_, value) => value.as_ref().clone(),
                    other => other.clone(),
                };
                (f.name().clone(), ColumnKind::Arrow { data_type, inferred })
            })
            .collect();
        Ok(Some(columns))
    }

    async fn scan(&mut self, table: &str, measures: &[Measure], ask: &Ask<'_>) -> Result<Scan, String> {
        let (known, exact_rows) = self.statistics(table, measures, ask.samples).await;
        if let Some(rows) = exact_rows
            && known.iter().all(Option::is_some)
        {
            let results = known.into_iter().flatten().map(|k| Ok(k.finish(ask.now_micros))).collect();
            return Ok(Scan { rows, results });
        }
        // SQL rules measured here count rows under a condition (see `scans_sql`).
        let mut conditions = Vec::new();
        for m in measures {
            conditions.push(match m {
                Measure::Sql { query } => self.counted_condition(table, query).await,
                _ => None,
            });
        }
        let unknown: Vec<bool> = known.iter().map(Option::is_none).collect();
        let leads = lead_partners(measures, &unknown);
        let answered: Vec<bool> = (0..measures.len()).map(|j| leads.contains(&Some(j))).collect();
        let wanted: Vec<bool> = unknown.iter().zip(&answered).map(|(u, a)| *u && !a).collect();
        let pass = Pass { table, measures, conditions: &conditions, ask, leads: &leads };
        let (rows, mut kernels) = self.pass(&pass, &wanted, false).await?;
        // Keys that came in order and then did not are counted again, by hash.
        let rescan: Vec<bool> = kernels.iter().map(|k| matches!(k, Some(Ok(k)) if k.needs_rescan())).collect();
        if rescan.contains(&true) {
            let (_, again) = self.pass(&pass, &rescan, true).await?;
            for ((slot, k), redo) in kernels.iter_mut().zip(again).zip(&rescan) {
                if *redo {
                    *slot = k;
                }
            }
        }
        let mut results: Vec<Result<Measured, String>> = vec![Err("not measured".to_string()); measures.len()];
        for (i, (k, known)) in kernels.into_iter().zip(known).enumerate() {
            let kernel = match (known, k) {
                (Some(k), _) => Ok(k),
                (None, Some(k)) => k,
                // Answered by a composite key's kernel, or not measured.
                (None, None) => continue,
            };
            match kernel {
                Ok(mut kernel) => {
                    if let Some(j) = leads[i] {
                        results[j] = kernel.finish_lead().ok_or_else(|| "not measured".to_string());
                    }
                    results[i] = Ok(kernel.finish(ask.now_micros));
                }
                Err(e) => {
                    if let Some(j) = leads[i] {
                        results[j] = Err(e.clone());
                    }
                    results[i] = Err(e);
                }
            }
        }
        Ok(Scan { rows, results })
    }

    async fn scans_sql(&mut self, table: &str, query: &str) -> bool {
        self.counted_condition(table, query).await.is_some()
    }

    async fn sql(&mut self, query: &str) -> Result<f64, String> {
        self.register_all().await?;
        let run = async {
            let df = self.ctx.sql_with_options(query, read_only()).await.map_err(|e| e.to_string())?;
            let batches =
                df.limit(0, Some(1)).map_err(|e| e.to_string())?.collect().await.map_err(|e| e.to_string())?;
            let batch = batches.iter().find(|b| b.num_rows() > 0).ok_or("the query returned no rows")?;
            let value = batch.column(0);
            if value.is_null(0) {
                return Err("the query returned null".into());
            }
            if value.data_type() == &DataType::Boolean {
                return Ok(f64::from(u8::from(value.as_boolean().value(0))));
            }
            let number = compute::cast(value, &DataType::Float64)
                .map_err(|_| format!("the query returned {}, not a number", value.data_type()))?;
            // A text that does not read as a number casts to null, not to an error.
            if number.is_null(0) {
                let text = datafusion::arrow::util::display::array_value_to_string(value, 0)
                    .unwrap_or_else(|_| value.data_type().to_string());
                return Err(format!("the query returned `{text}`, not a number"));
            }
            Ok(number.as_primitive::<Float64Type>().value(0))
        };
        tokio::time::timeout(self.sql_timeout, run)
            .await
            .map_err(|_| format!("the query ran past the limit of {:?}", self.sql_timeout))?
    }

    fn quote(&self, identifier: &str) -> String {
        format!("\"{}\"", identifier.replace('"', "\"\""))
    }
}
