//! Parquet text columns stored as dictionaries are read as dictionaries.
//!
//! Status, currency or country columns are written by every Parquet writer as a small
//! dictionary plus one index per row. DataFusion's listing table decodes them to a string per
//! row, and every check then looks at every row's string. Read as Arrow dictionaries, the
//! reader only unpacks indices, and a check evaluates each dictionary value once (see
//! [`crate::rules::flagged_rows`]).
//!
//! A column qualifies when every row group of every file stores it with dictionary-encoded
//! data pages only (a writer falls back to plain pages when the dictionary grows too big: such
//! a column stays text). The table's schema then says `Dictionary(Int32, Utf8)`, and each
//! file of a scan is told its own schema with the same type, which is how DataFusion's Parquet
//! opener lets the reader keep the dictionary; without it, the reader would decode strings
//! and DataFusion would hash them back into a dictionary.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::context::SessionState;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::parquet::basic::{Encoding, PageType};
use datafusion::parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use datafusion::physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use object_store::path::Path;

/// What a table's files say about dictionaries: the table's schema with its dictionary
/// columns, and each file's own schema.
pub struct Dictionaries {
    pub table: SchemaRef,
    files: HashMap<Path, SchemaRef>,
}

/// The type a dictionary column is read as.
fn dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Whether every data page of a column chunk is dictionary-encoded.
fn all_dictionary(column: &ColumnChunkMetaData) -> bool {
    let dictionary = |e: Encoding| matches!(e, Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY);
    if column.dictionary_page_offset().is_none() {
        return false;
    }
    if let Some(mask) = column.page_encoding_stats_mask() {
        return mask.is_only(Encoding::PLAIN_DICTIONARY) || mask.is_only(Encoding::RLE_DICTIONARY);
    }
    column.page_encoding_stats().is_some_and(|stats| {
        stats
            .iter()
            .filter(|s| matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2))
            .all(|s| dictionary(s.encoding))
    })
}

/// The text columns (of a flat schema) that every row group of `metadata` stores as a dictionary.
fn dictionary_columns(metadata: &ParquetMetaData, file: &Schema) -> Option<Vec<String>> {
    let descriptor = metadata.file_metadata().schema_descr();
    if descriptor.num_columns() != file.fields().len() {
        return None;
    }
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let names = (0..descriptor.num_columns())
        .filter(|&c| text(file.field(c).data_type()))
        .filter(|&c| metadata.num_row_groups() > 0 && metadata.row_groups().iter().all(|g| all_dictionary(g.column(c))))
        .map(|c| file.field(c).name().clone())
        .collect();
    Some(names)
}

/// `schema` with the named columns as dictionaries.
fn with_dictionaries(schema: &Schema, columns: &[String]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match columns.contains(f.name()) {
            true => f.as_ref().clone().with_data_type(dictionary_type()),
            false => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Reads the footers of a table's Parquet files: `None` when no column qualifies (or a file
/// is not flat), so the table is read as before.
pub async fn find(state: &SessionState, url: &ListingTableUrl, table: &Schema) -> Result<Option<Dictionaries>> {
    let store = state.runtime_env().object_store(url)?;
    let objects: Vec<_> = url.list_all_files(state, store.as_ref(), ".parquet").await?.try_collect().await?;
    let mut per_file = Vec::new();
    let mut common: Option<Vec<String>> = None;
    for object in &objects {
        let metadata = DFParquetMetadata::new(store.as_ref(), object).fetch_metadata().await?;
        let file_metadata = metadata.file_metadata();
        let file = parquet_to_arrow_schema(file_metadata.schema_descr(), file_metadata.key_value_metadata())?;
        let Some(columns) = dictionary_columns(&metadata, &file) else { return Ok(None) };
        common = Some(match common {
            None => columns,
            Some(c) => c.into_iter().filter(|n| columns.contains(n)).collect(),
        });
        per_file.push((object.location.clone(), file));
    }
    let columns: Vec<String> =
        common.unwrap_or_default().into_iter().filter(|c| table.field_with_name(c).is_ok()).collect();
    if columns.is_empty() {
        return Ok(None);
    }
    let files = per_file.into_iter().map(|(path, file)| (path, with_dictionaries(&file, &columns))).collect();
    Ok(Some(Dictionaries { table: with_dictionaries(table, &columns), files }))
}

impl Dictionaries {
    /// The scan plan with each Parquet file told its schema (dictionary columns included).
    pub fn apply(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            let Some(config) = node
                .downcast_ref::<DataSourceExec>()
                .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
            else {
                return Ok(Transformed::no(node));
            };
            let mut config = config.clone();
            for group in &mut config.file_groups {
                for i in 0..group.len() {
                    if let Some(schema) = self.files.get(&group[i].object_meta.location) {
                        group[i] = group[i].clone().with_arrow_schema(Arc::clone(schema));
                    }
                }
            }
            let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
            Ok(Transformed::yes(exec))
        })
        .map(|t| t.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use datafusion::parquet::schema::types::ColumnPath;
    use datafusion::prelude::SessionContext;

    /// A column stored with dictionary pages only is found; one written without a
    /// dictionary, and one whose dictionary overflowed into plain pages, are not.
    #[tokio::test]
    async fn only_columns_stored_as_dictionaries_everywhere_are_read_as_such() {
        let dir = std::env::temp_dir().join(format!("mp-dict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.parquet");
        let rows = 20_000;
        let column =
            |f: &dyn Fn(usize) -> String| Arc::new(StringArray::from_iter_values((0..rows).map(f))) as ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("status", column(&|i| ["a", "b", "c"][i % 3].to_string())),
            ("plain", column(&|i| ["x", "y"][i % 2].to_string())),
            ("id", column(&|i| format!("id-{i:08}"))),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_column_dictionary_enabled(ColumnPath::from("plain"), false)
            .set_dictionary_page_size_limit(4096)
            .set_data_page_row_count_limit(1000)
            .set_write_batch_size(1000)
            .build();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        let ctx = SessionContext::new();
        let url = ListingTableUrl::parse(path.display().to_string()).unwrap();
        let table = Schema::new(vec![
            Field::new("status", DataType::Utf8View, false),
            Field::new("plain", DataType::Utf8View, false),
            Field::new("id", DataType::Utf8View, false),
        ]);
        let found = find(&ctx.state(), &url, &table).await.unwrap().expect("status qualifies");
        let types: Vec<&DataType> = found.table.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(types, [&dictionary_type(), &DataType::Utf8View, &DataType::Utf8View]);
        assert_eq!(found.files.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
